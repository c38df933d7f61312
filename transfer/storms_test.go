package main

import (
	"hash/fnv"
	"net/http"
	"sync"
	"testing"
	"time"
)

// TestStormsAndLatency: whole-request 429 and 503 storms, item-level 429
// and 503, and added latency lose and duplicate nothing, and the committed
// offsets never pass a record that is not in the index.
func TestStormsAndLatency(t *testing.T) {
	s := newStack(t)
	es := s.ES()
	p := newProducer(t, s.KafkaAddrs())
	cfg := testConfig(t, s)
	cfg.BatchDocs = 200
	r := startService(t, "transfer", cfg)

	// Items fail with 429 or 503 the first time they are seen (one in four).
	var mu sync.Mutex
	refused := map[string]bool{}
	es.RejectItems(func(_, id string, _ []byte) (int, string, string, bool) {
		h := fnv.New32a()
		h.Write([]byte(id))
		if h.Sum32()%4 != 0 {
			return 0, "", "", false
		}
		mu.Lock()
		defer mu.Unlock()
		if refused[id] {
			return 0, "", "", false
		}
		refused[id] = true
		if h.Sum32()%8 == 0 {
			return http.StatusTooManyRequests, "es_rejected_execution_exception", "rejected execution", true
		}
		return http.StatusServiceUnavailable, "unavailable_shards_exception", "primary shard is not active", true
	})

	const rounds, perRound = 12, 300
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		for i := 0; i < rounds; i++ {
			p.send(perRound)
			time.Sleep(30 * time.Millisecond)
		}
	}()
	faults := []func(){
		func() { es.FailBulk(8, http.StatusTooManyRequests) },
		func() { es.SetLatency(40 * time.Millisecond) },
		func() { es.FailBulk(8, http.StatusServiceUnavailable) },
		func() { es.SetLatency(0) },
		func() { es.FailBulk(4, http.StatusTooManyRequests) },
	}
	checks := 0
	for i := 0; ; i++ {
		if i < len(faults) {
			faults[i]()
		}
		time.Sleep(150 * time.Millisecond)
		checkCommitted(t, s, cfg.Group, nil)
		checks++
		select {
		case <-produced:
		default:
			continue
		}
		break
	}
	es.SetLatency(0)
	const n = rounds * perRound
	waitFor(t, within, "every record indexed", func() bool { return es.Count(testIndex) >= n })
	checkExactlyOnce(t, s, p.sent())
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
	if got := scrape(t, r.svc.Addr(), "transfer_bulk_retries_total"); got < 3 {
		t.Errorf("transfer_bulk_retries_total = %v, want retries", got)
	}
	if got := scrape(t, r.svc.Addr(), "transfer_docs_retried_total"); got < 1 {
		t.Errorf("transfer_docs_retried_total = %v, want item retries", got)
	}
	if got := scrape(t, r.svc.Addr(), "transfer_docs_indexed_total"); got < n {
		t.Errorf("transfer_docs_indexed_total = %v, want at least %d", got, n)
	}
	t.Logf("%d commit checks during the storms", checks)
	r.stop()
}
