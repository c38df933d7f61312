package main

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/logpipe/logpipe/common/record"
	"github.com/logpipe/logpipe/devstack/stack"
	"github.com/logpipe/logpipe/transfer/internal/document"
)

// TestExactlyOnce: records produced before and while transfer runs are all
// indexed, each once, with the document contract's fields; offsets are
// committed up to the end.
func TestExactlyOnce(t *testing.T) {
	stack.ForBackends(t, func(t *testing.T, kind string) {
		w := newWorld(t, kind)
		p := w.newProducer()
		p.send(2000)
		r := startService(t, "transfer", w.config())
		waitFor(t, within, "/readyz", func() bool {
			res, err := http.Get("http://" + r.svc.Addr() + "/readyz")
			if err != nil {
				return false
			}
			res.Body.Close()
			return res.StatusCode == http.StatusOK
		})
		p.send(2000)
		w.waitCount(within, 4000)
		w.checkExactly(p.sentIDs())

		end := w.offsets(w.topic)
		waitFor(t, within, "offsets committed to the end", func() bool { return w.committedAt(end) })
		w.checkCommitted(nil)
		if got := scrape(t, r.svc.Addr(), "transfer_docs_indexed_total"); got != 4000 {
			t.Errorf("transfer_docs_indexed_total = %v, want 4000", got)
		}
		if got := scrape(t, r.svc.Addr(), "transfer_bulk_seconds_count"); got < 1 {
			t.Errorf("transfer_bulk_seconds_count = %v", got)
		}
		if got := scrape(t, r.svc.Addr(), "transfer_consumer_lag"); got != 0 {
			t.Errorf("transfer_consumer_lag sums to %v, want 0", got)
		}

		// The document of record 0, found by its log.offset: the record,
		// kafka.*, event.ingested and json.*.
		var ans struct {
			Hits struct {
				Hits []struct {
					ID     string          `json:"_id"`
					Source json.RawMessage `json:"_source"`
				} `json:"hits"`
			} `json:"hits"`
		}
		if status := w.es.do(http.MethodPost, "/"+w.index+"/_search", `{"size":10,"query":{"term":{"log.offset":0}}}`, &ans); status != http.StatusOK {
			t.Fatalf("_search of record 0: status %d", status)
		}
		if len(ans.Hits.Hits) != 1 {
			t.Fatalf("%d documents with log.offset 0, want the one of record 0", len(ans.Hits.Hits))
		}
		hit := ans.Hits.Hits[0]
		var doc map[string]any
		must(t, json.Unmarshal(hit.Source, &doc))
		if k, ok := doc["kafka"].(map[string]any); !ok || hit.ID != (document.Source{Topic: k["topic"].(string), Partition: int32(k["partition"].(float64)), Offset: int64(k["offset"].(float64))}).ID() {
			t.Errorf("document %s has kafka fields %v", hit.ID, doc["kafka"])
		}
		want, _ := record.Decode(testRecord(0))
		switch {
		case doc["message"] != want.Message || doc["job"] != want.Job || doc["@timestamp"] != "2026-11-21T10:00:00.000000Z":
			t.Errorf("document of record 0 = %v", doc)
		case doc["json"].(map[string]any)["status"] != float64(200):
			t.Errorf("json.* of record 0 = %v", doc["json"])
		case doc["event"].(map[string]any)["ingested"] == nil:
			t.Errorf("no event.ingested in %v", doc)
		}
		r.stop()
	})
}
