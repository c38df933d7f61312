package main

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/logpipe/logpipe/devstack/stack"
)

// TestJSONOfEveryShape: two jobs log json.status as a number and as a
// word, a third logs 2,000 distinct keys, a fourth a stack trace longer
// than a keyword may be. Every line is indexed, nothing is dead-lettered,
// and each is found by job, by message and by a json.* field, on
// Elasticsearch's flattened (esfake) and OpenSearch's flat_object.
func TestJSONOfEveryShape(t *testing.T) {
	stack.ForBackends(t, func(t *testing.T, kind string) {
		w := newWorld(t, kind)
		r := startService(t, "transfer", w.config())

		var numbers, words, wide [][]byte
		for i := range 200 {
			numbers = append(numbers, logRecord("payments", fmt.Sprintf(`{"status":200,"level":"info","msg":"payment accepted","i":%d}`, i), i))
			words = append(words, logRecord("checkout", fmt.Sprintf(`{"status":"ok","level":"error","msg":"basket refused","i":%d}`, i), i))
		}
		for i := range 2000 {
			wide = append(wide, logRecord("metrics", fmt.Sprintf(`{"k%04d":%d,"msg":"gauge sampled"}`, i, i), i))
		}
		trace := `{"level":"fatal","msg":"worker crashed","trace":"` + strings.Repeat(`at com.example.Worker.run(Worker.java:42)\n`, 1000) + `"}`
		var ids []string
		ids = append(ids, w.produce("payments", numbers...)...)
		ids = append(ids, w.produce("checkout", words...)...)
		ids = append(ids, w.produce("metrics", wide...)...)
		ids = append(ids, w.produce("worker", logRecord("worker", trace, 0))...)
		total := len(ids)

		w.waitCount(within, total)
		end := w.offsets(w.topic)
		waitFor(t, within, "offsets committed to the end", func() bool { return w.committedAt(end) })
		w.checkExactly(ids)
		if n := w.records(w.dlq); n != 0 {
			t.Fatalf("%d records in the dead-letter topic, want none", n)
		}
		if got := scrape(t, r.svc.Addr(), "transfer_docs_dlq_total"); got != 0 {
			t.Errorf("transfer_docs_dlq_total = %v, want 0", got)
		}

		searches := map[string]struct {
			query string
			want  int
		}{
			"by job, numbers":            {`{"term":{"job":"payments"}}`, 200},
			"by job, words":              {`{"term":{"job":"checkout"}}`, 200},
			"by job, wide":               {`{"term":{"job":"metrics"}}`, 2000},
			"by message":                 {`{"match":{"message":"accepted"}}`, 200},
			"by message, other job":      {`{"match":{"message":"refused"}}`, 200},
			"json.status:200":            {`{"term":{"json.status":200}}`, 200},
			"json.status:200 is numbers": {`{"bool":{"filter":[{"term":{"json.status":"200"}},{"term":{"job":"payments"}}]}}`, 200},
			"json.status:ok":             {`{"term":{"json.status":"ok"}}`, 200},
			"json.level:error":           {`{"match":{"json.level":"error"}}`, 200},
			"one of 2,000 keys":          {`{"term":{"json.k1234":1234}}`, 1},
			"json.msg on the wide job":   {`{"term":{"json.msg":"gauge sampled"}}`, 2000},
			"the long trace's line":      {`{"term":{"json.level":"fatal"}}`, 1},
		}
		var counts []string
		for _, name := range slices.Sorted(maps.Keys(searches)) {
			q := searches[name]
			if got := w.es.count(q.query); got != q.want {
				t.Errorf("%s: %s finds %d lines, want %d", name, q.query, got, q.want)
			}
			counts = append(counts, fmt.Sprintf("%s=%d", name, q.want))
		}

		// json is one field, whatever the keys: the mapping did not grow.
		var mapping map[string]struct {
			Mappings struct {
				Properties map[string]struct {
					Type       string         `json:"type"`
					Properties map[string]any `json:"properties"`
				} `json:"properties"`
			} `json:"mappings"`
		}
		if status := w.es.do(http.MethodGet, "/"+w.index+"/_mapping", "", &mapping); status != http.StatusOK || len(mapping) == 0 {
			t.Fatalf("GET _mapping: %d %v", status, mapping)
		}
		for backing, m := range mapping {
			j := m.Mappings.Properties["json"]
			if j.Type != map[string]string{stack.Embedded: "flattened", stack.Real: "flat_object"}[kind] || len(j.Properties) != 0 {
				t.Errorf("%s: json is mapped %+v", backing, j)
			}
		}
		t.Logf("%s: %d lines indexed (200 status:200, 200 status:\"ok\", 2,000 distinct keys, 1 trace of %d bytes), 0 dead-lettered; searches: %s",
			kind, total, len(trace), strings.Join(counts, ", "))
		r.stop()
	})
}
