package main

import (
	"net/http"
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

// startProc starts the binary on the world's topics, data stream and
// group, with static membership (--group-instance-id).
func startProc(t testing.TB, bin string, w *world) *proc.Process {
	t.Helper()
	return startBinary(t, bin, w,
		"--group-instance-id", "transfer-0",
		"--batch-docs", "200",
		"--batch-wait", "50ms",
		"--backoff-min", "10ms",
		"--backoff-max", "200ms",
	)
}

// startBinary starts the binary on the world's backends, topics, data
// stream and group, with more flags, until it is killed or the test ends.
func startBinary(t testing.TB, bin string, w *world, flags ...string) *proc.Process {
	t.Helper()
	return proc.Start(t, bin, append([]string{
		"--kafka-brokers", strings.Join(w.s.KafkaAddrs(), ","),
		"--kafka-topics", w.topic,
		"--dlq-topic", w.dlq,
		"--es-addresses", w.s.ESURL(),
		"--es-index", w.index,
		"--group", w.group,
		"--metrics-addr", "127.0.0.1:0",
	}, flags...)...)
}

// TestExactlyOnceAcrossSIGKILL runs the real binary, kills it with SIGKILL
// several times while records stream in, restarts it each time, and checks
// that every record is indexed exactly once and that the committed offsets
// never passed an unindexed record. Its premise, that instances read again
// records a killed one had indexed and not committed, is checked too: the
// instances together counted some documents as already indexed (409).
func TestExactlyOnceAcrossSIGKILL(t *testing.T) {
	bin := transferBinary(t)
	stack.ForBackends(t, func(t *testing.T, kind string) {
		w := newWorld(t, kind)
		p := w.newProducer()

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
		dups := 0.0 // documents the instances found already indexed
		for k := 0; k < kills; k++ {
			running := startProc(t, bin, w)
			before := w.es.count("")
			waitFor(t, within, "progress before the kill", func() bool {
				n, status := w.es.tryCount("")
				return status == http.StatusOK && n >= before+300
			})
			dups += scrape(t, running.Addr(t, "metrics"), "transfer_docs_duplicate_total")
			running.Kill()
			w.checkCommitted(nil)
			t.Logf("kill %d: %d documents indexed so far", k+1, w.es.count(""))
		}
		<-produced
		running := startProc(t, bin, w)

		const n = rounds * perRound
		w.waitCount(within, n)
		w.checkExactly(p.sentIDs())
		end := w.offsets(w.topic)
		waitFor(t, within, "offsets committed to the end", func() bool { return w.committedAt(end) })
		w.checkCommitted(nil)
		dups += scrape(t, running.Addr(t, "metrics"), "transfer_docs_duplicate_total")
		if dups == 0 {
			t.Errorf("no instance read again a record indexed before a kill: the kills tested nothing")
		}
		t.Logf("%s: %d records, each indexed once; %v found already indexed after %d kills", kind, n, dups, kills)

		// A graceful stop exits 0.
		if code := running.Stop(t); code != 0 {
			t.Fatalf("transfer exited %d after SIGTERM, want 0", code)
		}
	})
}
