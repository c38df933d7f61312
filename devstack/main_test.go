package main

import (
	"bufio"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "devstack-test-bin-")
	if err != nil {
		panic(err)
	}
	binDir = dir
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		os.RemoveAll(dir)
		os.Exit(code)
	}))
}

var (
	buildOnce sync.Once
	buildErr  error
)

// devstackBinary builds the devstack binary once per test run and returns
// its path.
func devstackBinary(tb testing.TB) string {
	tb.Helper()
	bin := filepath.Join(binDir, "devstack")
	buildOnce.Do(func() {
		// Without symbol tables the link takes half the time.
		out, err := exec.Command("go", "build", "-ldflags=-s -w", "-o", bin, ".").CombinedOutput()
		if err != nil {
			buildErr = errors.New(string(out) + err.Error())
		}
	})
	if buildErr != nil {
		tb.Fatalf("go build: %v", buildErr)
	}
	return bin
}

// freeAddr returns a loopback address whose port is free now, below the
// ephemeral range.
func freeAddr(tb testing.TB) string {
	tb.Helper()
	for range 100 {
		addr := "127.0.0.1:" + strconv.Itoa(20000+rand.IntN(12768))
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			ln.Close()
			return addr
		}
	}
	tb.Fatal("no free port")
	return ""
}

// needTool fails the test when a Debian tool the test drives is missing.
func needTool(tb testing.TB, name, pkg string) string {
	tb.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		tb.Fatalf("%s not found: `make test` installs it (Debian package %s)", name, pkg)
	}
	return path
}

// result is how a devstack process ended.
type result struct {
	code   int
	stderr string
}

// runBinary runs the binary to its end.
func runBinary(tb testing.TB, env []string, args ...string) (stdout string, r result) {
	tb.Helper()
	cmd := exec.Command(devstackBinary(tb), args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		tb.Fatalf("devstack %v: %v", args, err)
	}
	return out.String(), result{code: cmd.ProcessState.ExitCode(), stderr: errOut.String()}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	stdout, r := runBinary(t, nil, "--help")
	if r.code != 0 {
		t.Fatalf("--help: exit %d, stderr %q", r.code, r.stderr)
	}
	help := stdout + r.stderr
	for _, flag := range []string{"backends", "fetch", "etcd-addr", "kafka-addr", "es-addr", "data-dir", "partitions", "all", "viewer-addr", "agent-metrics-addr", "transfer-metrics-addr", "livetail-metrics-addr", "sample-interval", "log-level", "log-format", "config"} {
		if !strings.Contains(help, "--"+flag) {
			t.Errorf("--help does not list --%s:\n%s", flag, help)
		}
	}
	for _, def := range []string{"127.0.0.1:2379", "127.0.0.1:9092", "127.0.0.1:9200", `"6"`} {
		if !strings.Contains(help, def) {
			t.Errorf("--help does not show the default %s", def)
		}
	}
}

func TestBadValues(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		env  []string
		args []string
		want string // in the one line on stderr
	}{
		"partitions not a number": {args: []string{"--partitions", "abc"}, want: "abc"},
		"no partitions":           {args: []string{"--partitions", "0"}, want: "--partitions 0"},
		"address without port":    {args: []string{"--etcd-addr", "localhost"}, want: "localhost"},
		"log level":               {args: []string{"--log-level", "loud"}, want: "loud"},
		"unknown flag":            {args: []string{"--kafka-brokers", "x:1"}, want: "kafka-brokers"},
		"environment":             {env: []string{"LOGPIPE_PARTITIONS=many"}, want: "LOGPIPE_PARTITIONS"},
		"sample interval":         {args: []string{"--all", "--sample-interval", "0s"}, want: "--sample-interval"},
		"backends":                {args: []string{"--backends", "docker"}, want: "docker"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			stdout, r := runBinary(t, c.env, c.args...)
			if r.code != 2 {
				t.Errorf("exit %d, want 2", r.code)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "devstack: ") || !strings.Contains(lines[0], c.want) {
				t.Errorf("stderr %q: want one line naming %q", r.stderr, c.want)
			}
		})
	}
}

func TestPortInUse(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", freeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	busy := ln.Addr().String()
	stdout, r := runBinary(t, nil, "--etcd-addr", freeAddr(t), "--kafka-addr", freeAddr(t), "--es-addr", busy)
	if r.code != 1 {
		t.Errorf("exit %d, want 1", r.code)
	}
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], busy) || !strings.Contains(lines[0], "in use") {
		t.Errorf("stderr %q: want one line saying that %s is in use", r.stderr, busy)
	}
	if strings.Contains(stdout, "ready") {
		t.Errorf("stdout %q says ready", stdout)
	}
}

// devstackProcess is a running devstack binary.
type devstackProcess struct {
	cmd             *exec.Cmd
	etcd, kafka, es string
	lines           []string // stdout up to "ready"
	stderr          *strings.Builder
	done            chan struct{}
}

// startBinary starts devstack on free ports and waits for "ready".
func startBinary(tb testing.TB, args ...string) *devstackProcess {
	tb.Helper()
	p := &devstackProcess{etcd: freeAddr(tb), kafka: freeAddr(tb), es: freeAddr(tb), stderr: &strings.Builder{}, done: make(chan struct{})}
	args = append([]string{"--etcd-addr", p.etcd, "--kafka-addr", p.kafka, "--es-addr", p.es}, args...)
	p.cmd = exec.Command(devstackBinary(tb), args...)
	p.cmd.Stderr = p.stderr
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	lines := make(chan string)
	go func() {
		defer close(p.done)
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		io.Copy(io.Discard, stdout)
		p.cmd.Wait()
	}()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				tb.Fatalf("devstack ended before ready: stdout %q, stderr %q", p.lines, p.stderr)
			}
			if line == "ready" {
				go func() {
					for range lines {
					}
				}()
				return p
			}
			p.lines = append(p.lines, line)
		case <-timeout:
			tb.Fatalf("devstack not ready after 30s: stdout %q", p.lines)
		}
	}
}

// stop sends SIGTERM and returns the exit code.
func (p *devstackProcess) stop(tb testing.TB) int {
	tb.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		tb.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		tb.Fatal("devstack did not stop within 15s of SIGTERM")
	}
	return p.cmd.ProcessState.ExitCode()
}

var endpointLines = []*regexp.Regexp{
	regexp.MustCompile(`^etcd {6}http://(\S+)$`),
	regexp.MustCompile(`^kafka {5}(\S+) \(topics logs, logs\.dlq; 6 partitions\)$`),
	regexp.MustCompile(`^esfake \(development stand-in for Elasticsearch, not Elasticsearch\) listening on http://(\S+)$`),
}

func TestOutput(t *testing.T) {
	t.Parallel()
	p := startBinary(t)
	if len(p.lines) != len(endpointLines) {
		t.Fatalf("stdout before ready: %q, want %d lines", p.lines, len(endpointLines))
	}
	for i, want := range []string{p.etcd, p.kafka, p.es} {
		m := endpointLines[i].FindStringSubmatch(p.lines[i])
		if m == nil || m[1] != want {
			t.Errorf("line %d: %q, want %v with address %s", i+1, p.lines[i], endpointLines[i], want)
		}
	}
	if code := p.stop(t); code != 0 {
		t.Errorf("exit %d after SIGTERM, want 0; stderr %q", code, p.stderr)
	}
}
