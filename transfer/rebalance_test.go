package main

import (
	"testing"
	"time"
)

// TestRebalance: a second instance joins the group mid-stream, takes
// partitions and indexes, then leaves; nothing is lost or duplicated, and
// the committed offsets end at the end of every partition.
func TestRebalance(t *testing.T) {
	s := newStack(t)
	p := newProducer(t, s.KafkaAddrs())
	cfg := testConfig(t, s)
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
	waitFor(t, within, "instance a indexing", func() bool { return scrape(t, a.svc.Addr(), "transfer_docs_indexed_total") > 500 })

	b := startService(t, "transfer-b", cfg)
	waitFor(t, within, "instance b indexing", func() bool { return scrape(t, b.svc.Addr(), "transfer_docs_indexed_total") > 300 })
	aBefore := scrape(t, a.svc.Addr(), "transfer_docs_indexed_total")
	b.stop() // leaves the group; a takes every partition again
	waitFor(t, within, "instance a indexing after b left", func() bool {
		return scrape(t, a.svc.Addr(), "transfer_docs_indexed_total") > aBefore+500
	})
	close(stopProducing)
	<-produced

	want := p.sent()
	waitFor(t, within, "every record indexed", func() bool { return s.ES().Count(testIndex) >= len(want) })
	checkExactlyOnce(t, s, want)
	end := endOffsets(t, s.KafkaAddrs())
	waitFor(t, within, "offsets committed to the end", func() bool {
		c := checkCommitted(t, s, cfg.Group, nil)
		for part, off := range end {
			if c[part] != off {
				return false
			}
		}
		return true
	})
	t.Logf("%d records; duplicates skipped with 409: %v", len(want), scrape(t, a.svc.Addr(), "transfer_docs_duplicate_total"))
	a.stop()
}
