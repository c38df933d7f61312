package main

import (
	"bytes"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/logpipe/logpipe/devstack/stack"
)

// buildBinary builds the transfer binary for a test.
func buildBinary(t testing.TB) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build the transfer binary: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "transfer")
	cmd := exec.Command(goBin, "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// proc is a transfer process with its output kept.
type proc struct {
	cmd *exec.Cmd
	out *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startProc starts the binary on the world's topics, data stream and
// group, with static membership (--group-instance-id).
func startProc(t testing.TB, bin string, w *world, out *syncBuffer) *proc {
	t.Helper()
	return startBinary(t, bin, w, out,
		"--group-instance-id", "transfer-0",
		"--batch-docs", "200",
		"--batch-wait", "50ms",
		"--backoff-min", "10ms",
		"--backoff-max", "200ms",
	)
}

// startBinary starts the binary on the world's backends, topics, data
// stream and group, with more flags; it is killed at the end of the test
// if it still runs.
func startBinary(t testing.TB, bin string, w *world, out *syncBuffer, flags ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, append([]string{
		"--kafka-brokers", strings.Join(w.s.KafkaAddrs(), ","),
		"--kafka-topics", w.topic,
		"--dlq-topic", w.dlq,
		"--es-addresses", w.s.ESURL(),
		"--es-index", w.index,
		"--group", w.group,
		"--metrics-addr", "127.0.0.1:0",
	}, flags...)...)
	cmd.Env = os.Environ()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, out: out}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
	})
	return p
}

// TestExactlyOnceAcrossSIGKILL runs the real binary, kills it with SIGKILL
// several times while records stream in, restarts it each time, and checks
// that every record is indexed exactly once and that the committed offsets
// never passed an unindexed record.
func TestExactlyOnceAcrossSIGKILL(t *testing.T) {
	bin := buildBinary(t)
	stack.ForBackends(t, func(t *testing.T, kind string) {
		w := newWorld(t, kind)
		p := w.newProducer()
		out := &syncBuffer{}
		defer func() {
			if t.Failed() {
				t.Logf("transfer output:\n%s", out.String())
			}
		}()

		const rounds, perRound = 60, 200
		produced := make(chan struct{})
		go func() {
			defer close(produced)
			for i := 0; i < rounds; i++ {
				p.send(perRound)
				time.Sleep(25 * time.Millisecond)
			}
		}()
		defer func() { <-produced }() // also when the test fails early

		const kills = 4
		for k := 0; k < kills; k++ {
			proc := startProc(t, bin, w, out)
			before := w.es.count("")
			waitFor(t, 60*time.Second, "progress before the kill", func() bool {
				n, status := w.es.tryCount("")
				return status == http.StatusOK && n >= before+300
			})
			if err := proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			_ = proc.cmd.Wait()
			w.checkCommitted(nil)
			t.Logf("kill %d: %d documents indexed so far", k+1, w.es.count(""))
		}
		<-produced
		proc := startProc(t, bin, w, out)

		const n = rounds * perRound
		w.waitCount(90*time.Second, n)
		w.checkExactly(p.sentIDs())
		end := w.offsets(w.topic)
		waitFor(t, 20*time.Second, "offsets committed to the end", func() bool { return w.committedAt(end) })
		w.checkCommitted(nil)

		// A graceful stop exits 0.
		if err := proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := proc.cmd.Wait(); err != nil {
			t.Fatalf("transfer after SIGTERM: %v", err)
		}
	})
}
