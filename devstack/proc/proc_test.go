package proc_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/logpipe/logpipe/devstack/proc"
)

func TestMain(m *testing.M) { proc.Main(m) }

// wait bounds waits for what a child does at once; it is generous, for a
// loaded machine, and no test's speed is measured by it.
const wait = time.Minute

// child is the test program in testdata/child, built once.
func child(t testing.TB) string {
	t.Helper()
	return proc.Build(t, "github.com/logpipe/logpipe/devstack/proc/testdata/child")
}

func TestBuildOnce(t *testing.T) {
	first := child(t)
	fi, err := os.Stat(first)
	if err != nil {
		t.Fatalf("Build returned %s: %v", first, err)
	}
	if filepath.Base(first) != "child" {
		t.Errorf("binary %s, want it named child", first)
	}
	again := child(t)
	fi2, err := os.Stat(again)
	if err != nil || again != first || !fi2.ModTime().Equal(fi.ModTime()) {
		t.Errorf("second Build: %s (%v), want the first binary %s unchanged", again, err, first)
	}
}

// TestBuildSideBySide checks that binaries land in one directory (as
// devstack --all wants its services beside it), and that a second package
// with the same base name does not overwrite the first.
func TestBuildSideBySide(t *testing.T) {
	first := child(t)
	other := proc.Build(t, "github.com/logpipe/logpipe/devstack/proc/testdata/other")
	same := proc.Build(t, "github.com/logpipe/logpipe/devstack/proc/testdata/other/child")
	if filepath.Dir(other) != filepath.Dir(first) {
		t.Errorf("binaries in %s and %s, want one directory", filepath.Dir(first), filepath.Dir(other))
	}
	if same == first || filepath.Base(same) != "child" {
		t.Errorf("second package named child built at %s, first at %s; want both, apart", same, first)
	}
	p := proc.Start(t, same)
	if p.Wait(t, wait); p.Stdout() != "the other child\n" {
		t.Errorf("%s printed %q, want the other child's line", same, p.Stdout())
	}
}

func TestBuildError(t *testing.T) {
	tb := &fakeTB{TB: t}
	func() {
		defer tb.recoverFatal()
		proc.Build(tb, "github.com/logpipe/logpipe/devstack/proc/testdata/nosuchpackage")
	}()
	if !tb.fatal || !strings.Contains(tb.logs(), "nosuchpackage") {
		t.Errorf("Build of a missing package: fatal %v, log %q; want a fatal error naming the package", tb.fatal, tb.logs())
	}
}

func TestOutputPrefixedAndSplit(t *testing.T) {
	p := proc.Start(t, child(t), "--stdout", "one|two", "--stderr", "err one")
	// stdout and stderr are two pipes: their lines come in either order.
	p.WaitFor(t, "waiting", wait)
	p.WaitFor(t, "err one", wait)
	out := p.Output()
	for _, want := range []string{"child | one\n", "child | two\n", "child | err one\n", "child | waiting\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("Output() %q lacks %q", out, want)
		}
	}
	if got := p.Stdout(); got != "one\ntwo\nwaiting\n" {
		t.Errorf("Stdout() = %q, want the stdout lines alone", got)
	}
	if code := p.Stop(t); code != 0 {
		t.Errorf("exit %d after SIGTERM, want 0", code)
	}
	p.WaitFor(t, "stopping", wait) // printed before the exit, still there after it
}

func TestAwait(t *testing.T) {
	p := proc.Start(t, child(t), "--stdout", "alpha 1|beta 22")
	tests := map[string]struct {
		pattern any
		want    string
	}{
		"substring":            {"beta", "beta 22"},
		"regexp":               {regexp.MustCompile(`^alpha \d$`), "alpha 1"},
		"line printed earlier": {"alpha", "alpha 1"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := p.Await(tc.pattern, wait)
			if err != nil || got != tc.want {
				t.Errorf("Await(%v) = %q, %v; want %q", tc.pattern, got, err, tc.want)
			}
		})
	}
	if _, err := p.Await("never printed", 50*time.Millisecond); err == nil || !strings.Contains(err.Error(), `"never printed"`) {
		t.Errorf("Await of a line never printed = %v, want an error naming it", err)
	}
}

func TestAwaitExited(t *testing.T) {
	p := proc.Start(t, child(t), "--stdout", "bye", "--exit", "3")
	_, err := p.Await("ready", wait)
	if !errors.Is(err, proc.ErrExited) || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("Await on a process that exits = %v, want ErrExited with its status", err)
	}
	if code := p.Wait(t, wait); code != 3 {
		t.Errorf("exit code %d, want 3", code)
	}
	if _, err := p.Address("metrics", wait); !errors.Is(err, proc.ErrExited) {
		t.Errorf("Address on an exited process = %v, want ErrExited", err)
	}
}

func TestAddr(t *testing.T) {
	bin := child(t)
	tests := map[string]struct {
		args []string
		name string
	}{
		"text log":      {[]string{"--listen", "metrics"}, "metrics"},
		"json log":      {[]string{"--listen", "http", "--log-format", "json"}, "http"},
		"endpoint line": {[]string{"--endpoint", "etcd"}, "etcd"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p := proc.Start(t, bin, tc.args...)
			addr := p.Addr(t, tc.name)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatalf("Addr = %s, which does not accept connections: %v\n%s", addr, err, p.Output())
			}
			c.Close()
			if _, err := p.Address("other", 100*time.Millisecond); err == nil {
				t.Errorf("Address of a listener never printed = nil error")
			}
		})
	}
}

func TestAddrIn(t *testing.T) {
	tests := map[string]struct {
		line, name, want string
	}{
		"devstack etcd":      {"etcd      http://127.0.0.1:2379", "etcd", "127.0.0.1:2379"},
		"devstack kafka":     {"kafka     127.0.0.1:9092 (topics logs, logs.dlq; 6 partitions)", "kafka", "127.0.0.1:9092"},
		"devstack esfake":    {"esfake (development stand-in for Elasticsearch, not Elasticsearch) listening on http://127.0.0.1:9200", "esfake", "127.0.0.1:9200"},
		"url with path":      {"  viewer      http://127.0.0.1:8080/?job=web&tail=100", "viewer", "127.0.0.1:8080"},
		"two endpoints":      {"etcd      http://127.0.0.1:2379,http://127.0.0.1:2380", "etcd", "127.0.0.1:2379"},
		"ipv6":               {"kafka [::1]:9092", "kafka", "[::1]:9092"},
		"listening line":     {`level=info msg=listening addr="127.0.0.1:41000" listener=metrics`, "metrics", "127.0.0.1:41000"},
		"other listener":     {`level=info msg=listening addr="127.0.0.1:41000" listener=http`, "metrics", ""},
		"other first word":   {"kafka     127.0.0.1:9092", "etcd", ""},
		"no address":         {"etcd is starting", "etcd", ""},
		"port out of range":  {"etcd 127.0.0.1:99999", "etcd", ""},
		"name inside a word": {"etcdctl http://127.0.0.1:2379", "etcd", ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, ok := proc.AddrIn(tc.line, tc.name)
			if got != tc.want || ok != (tc.want != "") {
				t.Errorf("addrIn(%q, %q) = %q, %v; want %q", tc.line, tc.name, got, ok, tc.want)
			}
		})
	}
}

func TestPartialLastLine(t *testing.T) {
	p := proc.Start(t, child(t), "--partial", "no newline")
	p.Wait(t, wait)
	if got := p.Stdout(); got != "no newline\n" {
		t.Errorf("Stdout() = %q, want the last line without a newline kept", got)
	}
}

func TestLongOutputKeepsBothEnds(t *testing.T) {
	// 100,000 lines of 100 bytes: more than the 8 MiB kept.
	p := proc.Start(t, child(t), "--stdout", "first line", "--flood", "100000")
	p.WaitFor(t, "flood done", wait) // matched as it arrives, though not all is kept
	out := p.Output()
	for _, want := range []string{"child | first line\n", "lines left out]\n", "child | flood 00099999 ", "child | flood done\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("Output() lacks %q", want)
		}
	}
	if len(out) > 9<<20 {
		t.Errorf("Output() is %d bytes, want at most about 8 MiB kept", len(out))
	}
}

func TestStopAndKill(t *testing.T) {
	bin := child(t)
	t.Run("SIGTERM", func(t *testing.T) {
		p := proc.Start(t, bin)
		p.WaitFor(t, "waiting", wait)
		if !p.Terminate(wait) {
			t.Fatal("Terminate: the child did not exit on SIGTERM")
		}
		if p.ExitCode() != 0 || !strings.Contains(p.Stdout(), "stopping") {
			t.Errorf("exit %d, stdout %q; want 0 after printing stopping", p.ExitCode(), p.Stdout())
		}
	})
	t.Run("SIGKILL after the grace", func(t *testing.T) {
		p := proc.Start(t, bin, "--ignore-term")
		p.WaitFor(t, "waiting", wait)
		if p.Terminate(100 * time.Millisecond) {
			t.Fatal("Terminate = true for a process that ignores SIGTERM")
		}
		if !p.Exited() || p.ExitCode() != -1 {
			t.Errorf("after Terminate: exited %v, code %d; want killed", p.Exited(), p.ExitCode())
		}
	})
	t.Run("Kill", func(t *testing.T) {
		p := proc.Start(t, bin)
		p.WaitFor(t, "waiting", wait)
		p.Kill()
		if !p.Exited() || p.ExitCode() != -1 || strings.Contains(p.Stdout(), "stopping") {
			t.Errorf("after Kill: exited %v, code %d, stdout %q; want killed without stopping", p.Exited(), p.ExitCode(), p.Stdout())
		}
		p.Kill() // a second time does nothing
		if err := p.Signal(os.Interrupt); err != nil {
			t.Errorf("Signal after exit = %v, want nil", err)
		}
	})
}

// TestCleanup checks what happens when a test ends: the process is
// stopped, and its output goes to the log only when the test failed.
func TestCleanup(t *testing.T) {
	bin := child(t)
	for _, failed := range []bool{false, true} {
		t.Run(fmt.Sprint("failed ", failed), func(t *testing.T) {
			t.Setenv("LOGPIPE_ARTIFACTS", t.TempDir())
			tb := &fakeTB{TB: t}
			p := proc.Start(tb, bin, "--stdout", "a line to show")
			p.WaitFor(t, "waiting", wait)
			tb.failed = failed
			tb.runCleanups()
			if !p.Exited() || p.ExitCode() != 0 {
				t.Errorf("after cleanup: exited %v, code %d; want stopped by SIGTERM", p.Exited(), p.ExitCode())
			}
			shown := strings.Contains(tb.logs(), "child | a line to show")
			if shown != failed {
				t.Errorf("output in the log: %v, want %v; log %q", shown, failed, tb.logs())
			}
			files, _ := filepath.Glob(filepath.Join(os.Getenv("LOGPIPE_ARTIFACTS"), "*", "child-*.log"))
			if (len(files) == 1) != failed {
				t.Errorf("output files %v, want one only when the test failed", files)
			}
		})
	}
}

func TestRelay(t *testing.T) {
	a, b := echoServer(t, "a"), echoServer(t, "b")
	r := proc.NewRelay(t)

	// No target: refused, as where nothing listens, and the port is kept.
	refused(t, r.Addr())
	r.To(a)
	held := dialRelay(t, r.Addr())
	if got := roundTrip(t, held); got != "a:ping" {
		t.Errorf("to a: %q, want a:ping", got)
	}
	r.To("") // the process behind it stops
	refused(t, r.Addr())
	if got := roundTrip(t, held); got != "a:ping" {
		t.Errorf("a connection relayed before To(\"\"): %q, want it kept", got)
	}
	r.Cut()
	if got := roundTrip(t, held); got != "" {
		t.Errorf("a connection relayed before Cut still answers %q", got)
	}
	r.To(b) // and comes back elsewhere; the address stays
	if got := roundTrip(t, dialRelay(t, r.Addr())); got != "b:ping" {
		t.Errorf("to b: %q, want b:ping", got)
	}
	held = dialRelay(t, r.Addr())
	r.Close()
	if got := roundTrip(t, held); got != "" {
		t.Errorf("a relayed connection still answers %q after Close", got)
	}
	if c, err := net.Dial("tcp", r.Addr()); err == nil {
		c.Close()
		t.Error("the relay still accepts connections after Close")
	}
}

// refused fails unless connections to addr are refused while the port
// stays bound.
func refused(t *testing.T, addr string) {
	t.Helper()
	if c, err := net.Dial("tcp", addr); !errors.Is(err, syscall.ECONNREFUSED) {
		if err == nil {
			c.Close()
		}
		t.Errorf("dial %s: %v, want connection refused", addr, err)
	}
	if ln, err := net.Listen("tcp", addr); !errors.Is(err, syscall.EADDRINUSE) {
		if err == nil {
			ln.Close()
		}
		t.Errorf("listen on %s: %v, want the port kept (address in use)", addr, err)
	}
}

func TestBuffer(t *testing.T) {
	var b proc.Buffer
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 100 {
				fmt.Fprint(&b, "x")
				_ = b.String()
			}
		})
	}
	wg.Wait()
	if got := b.String(); got != strings.Repeat("x", 400) {
		t.Errorf("String() has %d bytes, want 400", len(got))
	}
}

// echoServer answers each line with "<name>:<line>" until the test ends.
func echoServer(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				buf := make([]byte, 64)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					fmt.Fprintf(c, "%s:%s", name, buf[:n])
				}
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func dialRelay(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip sends "ping" on c and returns the answer, "" when the
// connection is closed instead.
func roundTrip(t *testing.T, c net.Conn) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(wait))
	if _, err := c.Write([]byte("ping")); err != nil {
		return ""
	}
	b, err := io.ReadAll(io.LimitReader(c, 6))
	if err != nil && len(b) == 0 {
		return ""
	}
	return string(b)
}

// fakeTB is a testing.TB whose failure state, log and cleanups the test
// controls.
type fakeTB struct {
	testing.TB
	mu       sync.Mutex
	log      []string
	cleanups []func()
	failed   bool
	fatal    bool
}

type fatalPanic struct{}

func (f *fakeTB) Helper()                 {}
func (f *fakeTB) Cleanup(fn func())       { f.cleanups = append(f.cleanups, fn) }
func (f *fakeTB) Failed() bool            { return f.failed }
func (f *fakeTB) Logf(s string, a ...any) { f.add(fmt.Sprintf(s, a...)) }
func (f *fakeTB) Errorf(s string, a ...any) {
	f.failed = true
	f.add(fmt.Sprintf(s, a...))
}
func (f *fakeTB) Fatal(a ...any) {
	f.failed, f.fatal = true, true
	f.add(fmt.Sprint(a...))
	panic(fatalPanic{})
}
func (f *fakeTB) Fatalf(s string, a ...any) { f.Fatal(fmt.Sprintf(s, a...)) }

func (f *fakeTB) add(s string) {
	f.mu.Lock()
	f.log = append(f.log, s)
	f.mu.Unlock()
}

func (f *fakeTB) logs() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.log, "\n")
}

func (f *fakeTB) runCleanups() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

func (f *fakeTB) recoverFatal() {
	if r := recover(); r != nil {
		if _, ok := r.(fatalPanic); !ok {
			panic(r)
		}
	}
}

func TestRSSOfThisProcess(t *testing.T) {
	cur, peak := proc.RSS(os.Getpid())
	if cur <= 0 || peak < cur {
		t.Fatalf("RSS = %d, peak %d: want 0 < cur <= peak", cur, peak)
	}
	if cur, peak := proc.RSS(-1); cur != 0 || peak != 0 {
		t.Fatalf("RSS of no process = %d, %d", cur, peak)
	}
	if cpu := proc.CPUSeconds(-1); cpu != 0 {
		t.Fatalf("CPUSeconds of no process = %v", cpu)
	}
}
