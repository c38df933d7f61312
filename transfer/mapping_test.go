package main

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/logpipe/logpipe/common/record"
	"github.com/logpipe/logpipe/devstack/stack"
	"github.com/logpipe/logpipe/transfer/internal/document"
	"github.com/logpipe/logpipe/transfer/internal/kafka"
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

		searches := map[string]search{
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
		counts := checkSearches(t, w, searches)

		// json is one field, whatever the keys: the mapping did not grow.
		checkOneField(t, w, kind, "json")
		t.Logf("%s: %d lines indexed (200 status:200, 200 status:\"ok\", 2,000 distinct keys, 1 trace of %d bytes), 0 dead-lettered; searches: %s",
			kind, total, len(trace), strings.Join(counts, ", "))
		r.stop()
	})
}

// TestLabelsOfEveryJob: 200 jobs each label their lines with 10 keys of
// their own, 2,000 distinct label keys in all, twice the default limit
// of fields in a mapping. Every line is indexed, nothing is
// dead-lettered, labels stays one field, and a term query on a label
// value finds exactly its lines, on Elasticsearch's flattened (esfake)
// and OpenSearch's flat_object.
func TestLabelsOfEveryJob(t *testing.T) {
	stack.ForBackends(t, func(t *testing.T, kind string) {
		w := newWorld(t, kind)
		r := startService(t, "transfer", w.config())

		const jobs, keys, lines = 200, 10, 3
		c := kafka.NewConfig("test-producer", nil)
		c.Producer.Return.Successes = true
		c.Producer.RequiredAcks = sarama.WaitForAll
		p, err := sarama.NewSyncProducer(w.s.KafkaAddrs(), c)
		must(t, err)
		defer p.Close()
		var msgs []*sarama.ProducerMessage
		prod := 0
		for j := range jobs {
			job := fmt.Sprintf("job-%03d", j)
			labels := map[string]string{"env": "dev"}
			if j%8 == 0 {
				labels["env"] = "prod"
			}
			for k := range keys {
				labels[fmt.Sprintf("%s-key-%d", job, k)] = fmt.Sprintf("v%d", k)
			}
			for i := range lines {
				rec := record.Record{
					Timestamp: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Millisecond),
					Message:   fmt.Sprintf("%s line %d", job, i),
					Job:       job,
					Host:      record.Host{Name: "node-a"},
					Agent:     record.Agent{Name: "node-a"},
					Log:       record.Log{File: record.File{Path: "/var/log/" + job + ".log"}, Offset: int64(i) * 100},
					Labels:    labels,
				}
				msgs = append(msgs, &sarama.ProducerMessage{Topic: w.topic, Key: sarama.StringEncoder(job), Value: sarama.ByteEncoder(rec.AppendJSON(nil))})
				if labels["env"] == "prod" {
					prod++
				}
			}
		}
		if err := p.SendMessages(msgs); err != nil {
			t.Fatalf("producing to %s: %v", w.topic, produceError(err))
		}
		var ids []string
		for _, m := range msgs {
			ids = append(ids, document.Source{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset}.ID())
		}

		// A dead-lettered line would never be indexed: stop waiting at the first.
		waitFor(t, within, fmt.Sprintf("%d documents in %s, or a dead letter", len(ids), w.index), func() bool {
			got, status := w.es.tryCount("")
			return status == http.StatusOK && got >= len(ids) || w.records(w.dlq) > 0
		})
		end := w.offsets(w.topic)
		waitFor(t, within, "offsets committed to the end", func() bool { return w.committedAt(end) })
		if n := w.records(w.dlq); n != 0 {
			t.Fatalf("%d records in the dead-letter topic, want none; %d of %d lines indexed", n, w.es.count(""), len(ids))
		}
		w.checkExactly(ids)
		if got := scrape(t, r.svc.Addr(), "transfer_docs_dlq_total"); got != 0 {
			t.Errorf("transfer_docs_dlq_total = %v, want 0", got)
		}

		searches := map[string]search{
			"labels.env:prod":            {`{"term":{"labels.env":"prod"}}`, prod},
			"labels.env:dev":             {`{"term":{"labels.env":"dev"}}`, len(ids) - prod},
			"one job's own label":        {`{"term":{"labels.job-123-key-7":"v7"}}`, lines},
			"its value under other keys": {`{"term":{"labels.job-123-key-6":"v7"}}`, 0},
			"the last job's own label":   {`{"term":{"labels.job-199-key-9":"v9"}}`, lines},
		}
		counts := checkSearches(t, w, searches)

		// labels is one field, whatever the keys: the mapping did not grow.
		checkOneField(t, w, kind, "labels")
		t.Logf("%s: %d lines of %d jobs with %d distinct label keys indexed, each once; 0 dead-lettered; searches: %s",
			kind, len(ids), jobs, jobs*keys+1, strings.Join(counts, ", "))
		r.stop()
	})
}

// search is a query and the number of lines it must find.
type search struct {
	query string
	want  int
}

// checkSearches runs each search, in name order, and returns name=count
// for the test's log.
func checkSearches(t *testing.T, w *world, searches map[string]search) []string {
	t.Helper()
	var counts []string
	for _, name := range slices.Sorted(maps.Keys(searches)) {
		q := searches[name]
		if got := w.es.count(q.query); got != q.want {
			t.Errorf("%s: %s finds %d lines, want %d", name, q.query, got, q.want)
		}
		counts = append(counts, fmt.Sprintf("%s=%d", name, q.want))
	}
	return counts
}

// checkOneField checks that every backing index maps field as one
// flattened field (flat_object on OpenSearch), with no sub-fields.
func checkOneField(t *testing.T, w *world, kind, field string) {
	t.Helper()
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
		f := m.Mappings.Properties[field]
		if f.Type != map[string]string{stack.Embedded: "flattened", stack.Real: "flat_object"}[kind] || len(f.Properties) != 0 {
			t.Errorf("%s: %s is mapped %+v", backing, field, f)
		}
	}
}
