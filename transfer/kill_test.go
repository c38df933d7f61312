package main

import (
	"strings"
	"testing"
	"time"

	"github.com/logpipe/logpipe/devstack/proc"
	"github.com/logpipe/logpipe/devstack/stack"
)

// transferBinary builds the transfer binary once for the package's tests.
func transferBinary(tb testing.TB) string {
	tb.Helper()
	return proc.Build(tb, "github.com/logpipe/logpipe/transfer")
}

// startProc runs the transfer binary against s until it is killed or the
// test ends.
func startProc(t testing.TB, bin string, s *stack.Stack) *proc.Process {
	t.Helper()
	return proc.Start(t, bin,
		"--kafka-brokers", strings.Join(s.KafkaAddrs(), ","),
		"--es-addresses", s.ESURL(),
		"--metrics-addr", "127.0.0.1:0",
		"--group-instance-id", "transfer-0",
		"--batch-docs", "200",
		"--batch-wait", "50ms",
		"--backoff-min", "10ms",
		"--backoff-max", "200ms",
	)
}

// TestExactlyOnceAcrossSIGKILL runs the real binary, kills it with SIGKILL
// several times while records stream in, restarts it each time, and checks
// that every record is indexed exactly once and that the committed offsets
// never passed an unindexed record.
func TestExactlyOnceAcrossSIGKILL(t *testing.T) {
	bin := transferBinary(t)
	s := newStack(t)
	p := newProducer(t, s.KafkaAddrs())

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
		running := startProc(t, bin, s)
		before := s.ES().Count(testIndex)
		waitFor(t, within, "progress before the kill", func() bool { return s.ES().Count(testIndex) >= before+300 })
		running.Kill()
		checkCommitted(t, s, "logpipe-transfer", nil)
		t.Logf("kill %d: %d documents indexed so far", k+1, s.ES().Count(testIndex))
	}
	<-produced
	running := startProc(t, bin, s)

	const n = rounds * perRound
	waitFor(t, within, "every record indexed", func() bool { return s.ES().Count(testIndex) >= n })
	checkExactlyOnce(t, s, p.sent())
	end := endOffsets(t, s.KafkaAddrs())
	waitFor(t, within, "offsets committed to the end", func() bool {
		c := checkCommitted(t, s, "logpipe-transfer", nil)
		for part, off := range end {
			if c[part] != off {
				return false
			}
		}
		return true
	})

	// A graceful stop exits 0.
	if code := running.Stop(t); code != 0 {
		t.Fatalf("transfer exited %d after SIGTERM, want 0", code)
	}
}
