package main

import (
	"sync"
	"testing"
	"time"

	"github.com/logpipe/logpipe/devstack/stack"
)

// TestRebalance: a second instance joins the group mid-stream, takes
// partitions and indexes, then leaves; nothing is lost or duplicated, and
// the committed offsets end at the end of every partition.
func TestRebalance(t *testing.T) {
	stack.ForBackends(t, func(t *testing.T, kind string) {
		w := newWorld(t, kind)
		p := w.newProducer()
		cfg := w.config()
		a := startService(t, "transfer-a", cfg)

		stopProducing := make(chan struct{})
		produced := make(chan struct{})
		go func() {
			defer close(produced)
			for {
				select {
				case <-stopProducing:
					return
				default:
				}
				p.send(100)
				time.Sleep(20 * time.Millisecond)
			}
		}()
		stop := sync.OnceFunc(func() {
			close(stopProducing)
			<-produced
		})
		defer stop() // also when the test fails early
		waitFor(t, within, "instance a indexing", func() bool { return scrape(t, a.svc.Addr(), "transfer_docs_indexed_total") > 500 })

		b := startService(t, "transfer-b", cfg)
		waitFor(t, within, "instance b indexing", func() bool { return scrape(t, b.svc.Addr(), "transfer_docs_indexed_total") > 300 })
		aBefore := scrape(t, a.svc.Addr(), "transfer_docs_indexed_total")
		b.stop() // leaves the group; a takes every partition again
		waitFor(t, within, "instance a indexing after b left", func() bool {
			return scrape(t, a.svc.Addr(), "transfer_docs_indexed_total") > aBefore+500
		})
		stop()

		want := p.sentIDs()
		w.waitCount(within, len(want))
		w.checkExactly(want)
		end := w.offsets(w.topic)
		waitFor(t, within, "offsets committed to the end", func() bool { return w.committedAt(end) })
		w.checkCommitted(nil)
		t.Logf("%s: %d records; duplicates skipped with 409: %v", kind, len(want), scrape(t, a.svc.Addr(), "transfer_docs_duplicate_total"))
		a.stop()
	})
}
