package main

import (
	"bytes"
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

func startProc(t testing.TB, bin string, s *stack.Stack, out *syncBuffer) *proc {
	t.Helper()
	cmd := exec.Command(bin,
		"--kafka-brokers", strings.Join(s.KafkaAddrs(), ","),
		"--es-addresses", s.ESURL(),
		"--metrics-addr", "127.0.0.1:0",
		"--group-instance-id", "transfer-0",
		"--batch-docs", "200",
		"--batch-wait", "50ms",
		"--backoff-min", "10ms",
		"--backoff-max", "200ms",
	)
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
	s := newStack(t)
	p := newProducer(t, s.KafkaAddrs())
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

	const kills = 4
	for k := 0; k < kills; k++ {
		proc := startProc(t, bin, s, out)
		before := s.ES().Count(testIndex)
		waitFor(t, 60*time.Second, "progress before the kill", func() bool { return s.ES().Count(testIndex) >= before+300 })
		if err := proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = proc.cmd.Wait()
		checkCommitted(t, s, "logpipe-transfer", nil)
		t.Logf("kill %d: %d documents indexed so far", k+1, s.ES().Count(testIndex))
	}
	<-produced
	proc := startProc(t, bin, s, out)

	const n = rounds * perRound
	waitFor(t, 90*time.Second, "every record indexed", func() bool { return s.ES().Count(testIndex) >= n })
	checkExactlyOnce(t, s, p.sent())
	end := endOffsets(t, s.KafkaAddrs())
	waitFor(t, 20*time.Second, "offsets committed to the end", func() bool {
		c := checkCommitted(t, s, "logpipe-transfer", nil)
		for part, off := range end {
			if c[part] != off {
				return false
			}
		}
		return true
	})

	// A graceful stop exits 0.
	if err := proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := proc.cmd.Wait(); err != nil {
		t.Fatalf("transfer after SIGTERM: %v", err)
	}
}
