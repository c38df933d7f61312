package main

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/logpipe/logpipe/common/record"
	"github.com/logpipe/logpipe/transfer/internal/document"
)

// TestExactlyOnce: records produced before and while transfer runs are all
// indexed, each once, with the document contract's fields; offsets are
// committed up to the end.
func TestExactlyOnce(t *testing.T) {
	s := newStack(t)
	p := newProducer(t, s.KafkaAddrs())
	p.send(2000)
	cfg := testConfig(t, s)
	r := startService(t, "transfer", cfg)
	waitFor(t, within, "/readyz", func() bool {
		res, err := http.Get("http://" + r.svc.Addr() + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
	p.send(2000)
	waitFor(t, within, "4000 documents", func() bool { return s.ES().Count(testIndex) >= 4000 })
	checkExactlyOnce(t, s, p.sent())

	end := endOffsets(t, s.KafkaAddrs())
	waitFor(t, within, "offsets committed to the end", func() bool {
		c := committed(t, s.KafkaAddrs(), cfg.Group)
		for part, off := range end {
			if c[part] != off {
				return false
			}
		}
		return true
	})
	checkCommitted(t, s, cfg.Group, nil)
	if got := scrape(t, r.svc.Addr(), "transfer_docs_indexed_total"); got != 4000 {
		t.Errorf("transfer_docs_indexed_total = %v, want 4000", got)
	}
	if got := scrape(t, r.svc.Addr(), "transfer_bulk_seconds_count"); got < 1 {
		t.Errorf("transfer_bulk_seconds_count = %v", got)
	}
	if got := scrape(t, r.svc.Addr(), "transfer_consumer_lag"); got != 0 {
		t.Errorf("transfer_consumer_lag sums to %v, want 0", got)
	}

	// The document of record 0: the record, kafka.*, event.ingested and json.*.
	var doc map[string]any
	for _, d := range s.ES().Docs(testIndex) {
		var m map[string]any
		must(t, json.Unmarshal(d.Source, &m))
		if m["log"].(map[string]any)["offset"] == float64(0) {
			doc = m
			if k := m["kafka"].(map[string]any); d.ID != (document.Source{Topic: k["topic"].(string), Partition: int32(k["partition"].(float64)), Offset: int64(k["offset"].(float64))}).ID() {
				t.Errorf("document %s has kafka fields %v", d.ID, k)
			}
		}
	}
	want, _ := record.Decode(testRecord(0))
	switch {
	case doc == nil:
		t.Fatal("no document for record 0")
	case doc["message"] != want.Message || doc["job"] != want.Job || doc["@timestamp"] != "2026-11-21T10:00:00.000000Z":
		t.Errorf("document of record 0 = %v", doc)
	case doc["json"].(map[string]any)["status"] != float64(200):
		t.Errorf("json.* of record 0 = %v", doc["json"])
	case doc["event"].(map[string]any)["ingested"] == nil:
		t.Errorf("no event.ingested in %v", doc)
	}
	r.stop()
}
