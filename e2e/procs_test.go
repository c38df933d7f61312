package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binDir holds the binaries TestMain builds once for every test.
var binDir string

// buildBinaries builds agent, transfer, livetail and devstack into dir, the
// way make build does.
func buildBinaries(dir string) error {
	for _, b := range []string{"agent", "transfer", "livetail", "devstack"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, b), "./"+b)
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./%s: %v\n%s", b, err, out)
		}
	}
	return nil
}

// freeAddr returns a loopback address whose port was free a moment ago,
// picked below the ephemeral range so that no outgoing connection takes it
// while a service restarts on it.
func freeAddr(tb testing.TB) string {
	tb.Helper()
	for range 200 {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(20000+rand.IntN(12768)))
		if ln, err := net.Listen("tcp", addr); err == nil {
			ln.Close()
			return addr
		}
	}
	tb.Fatal("no free port below 32768")
	return ""
}

// proc is a service binary run by a test, its output kept for failures.
type proc struct {
	name string
	args []string
	mu   sync.Mutex
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 4<<20 { // keep the test's memory bounded
		return len(p), nil
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startProc starts bin/<name> with args; t.Cleanup kills it if still running
// and prints its output when the test failed.
func startProc(tb testing.TB, name string, args ...string) *proc {
	tb.Helper()
	p := &proc{name: name, args: args, out: &lockedBuffer{}}
	p.start(tb)
	tb.Cleanup(func() {
		p.kill(tb)
		if tb.Failed() {
			tail := p.out.String()
			if len(tail) > 8000 {
				tail = "..." + tail[len(tail)-8000:]
			}
			tb.Logf("%s output:\n%s", name, tail)
		}
	})
	return p
}

func (p *proc) start(tb testing.TB) {
	tb.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	cmd := exec.Command(filepath.Join(binDir, p.name), p.args...)
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		tb.Fatalf("starting %s: %v", p.name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	p.cmd, p.done = cmd, done
}

// kill ends the process with SIGKILL, as a crash would, and waits for it.
func (p *proc) kill(tb testing.TB) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// restart is kill and start again with the same arguments.
func (p *proc) restart(tb testing.TB) {
	tb.Helper()
	p.kill(tb)
	fmt.Fprintf(p.out, "---- %s restarted by the test ----\n", p.name)
	p.start(tb)
}

// stop sends SIGTERM and returns the exit code.
func (p *proc) stop(tb testing.TB, within time.Duration) int {
	tb.Helper()
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(within):
		tb.Fatalf("%s did not stop within %v of SIGTERM", p.name, within)
	}
	return cmd.ProcessState.ExitCode()
}

// waitReady polls http://addr/readyz until it answers 200.
func waitReady(tb testing.TB, name, addr string, within time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(within)
	var last string
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = resp.Status + " " + string(b)
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	tb.Fatalf("%s not ready at %s within %v: %s", name, addr, within, last)
}

// eventually polls cond until it returns nil or within passes.
func eventually(tb testing.TB, within time.Duration, what string, cond func() error) {
	tb.Helper()
	deadline := time.Now().Add(within)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	tb.Fatalf("%s: not within %v: %v", what, within, err)
}

// appendLines appends lines to path, one write per line, as a logger would.
func appendLines(tb testing.TB, path string, lines []string) {
	tb.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	for _, l := range lines {
		w.WriteString(l + "\n")
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
}

// etcdctl runs Debian's etcdctl, a client nobody here wrote.
func etcdctl(tb testing.TB, endpoints string, args ...string) string {
	tb.Helper()
	path, err := exec.LookPath("etcdctl")
	if err != nil {
		tb.Fatal("etcdctl not found: `make test` installs it (Debian package etcd-client)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, append([]string{"--endpoints=" + endpoints}, args...)...)
	cmd.Env = append(os.Environ(), "ETCDCTL_API=3")
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("etcdctl %v: %v: %s", args, err, out)
	}
	return string(out)
}

// esRefresh makes every document of index searchable (the real engine does
// it once a second by itself, esfake at once).
func esRefresh(esURL, index string) error {
	var body struct{}
	return esPost(esURL+"/"+index+"/_refresh", "", &body)
}

// esCount is GET <index>/_count with an optional query.
func esCount(esURL, index, query string) (int, error) {
	var body struct {
		Count int `json:"count"`
	}
	if err := esPost(esURL+"/"+index+"/_count", query, &body); err != nil {
		return 0, err
	}
	return body.Count, nil
}

// esMessages returns the message of every document of job, in log.offset order.
func esMessages(esURL, index, job string) ([]string, error) {
	q := `{"query":{"term":{"job":"` + job + `"}},"size":10000,"sort":[{"log.offset":"asc"}]}`
	var body struct {
		Hits struct {
			Hits []struct {
				ID     string `json:"_id"`
				Source struct {
					Message string `json:"message"`
				} `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := esPost(esURL+"/"+index+"/_search", q, &body); err != nil {
		return nil, err
	}
	out := make([]string, len(body.Hits.Hits))
	for i, h := range body.Hits.Hits {
		out[i] = h.Source.Message
	}
	return out, nil
}

func esPost(url, body string, into any) error {
	if body == "" {
		body = "{}"
	}
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status + ": " + string(b))
	}
	return json.Unmarshal(b, into)
}
