package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/logpipe/logpipe/common/record"
	"github.com/logpipe/logpipe/devstack/stack"
	"github.com/logpipe/logpipe/transfer/internal/document"
	"github.com/logpipe/logpipe/transfer/internal/kafka"
)

// Helpers for tests that run on both kinds of backends (stack.ForBackends):
// they reach Kafka and the search engine through their APIs only, and use
// the topics, data stream and consumer group that are the test's own on
// the shared real backends.

// world is one test's backends and names.
type world struct {
	t     testing.TB
	s     *stack.Stack
	kind  string
	topic string // the log topic
	dlq   string // the dead-letter topic
	index string // the data stream
	group string
	es    *esAPI
}

func newWorld(t testing.TB, kind string) *world {
	t.Helper()
	s := stack.New(t, stack.Options{Backends: kind, Without: []string{stack.Etcd}})
	w := &world{
		t: t, s: s, kind: kind,
		topic: s.Topic(testTopic),
		dlq:   s.Topic(testDLQ),
		index: s.Index(testIndex),
		group: s.Topic("logpipe-transfer"), // a name of the test's own, not a topic
	}
	w.es = &esAPI{t: t, url: s.ESURL(), index: w.index}
	return w
}

// engine is the search engine of the world, as transfer detects it.
func (w *world) engine() document.Engine {
	if w.kind == stack.Real {
		return document.OpenSearch
	}
	return document.Elasticsearch
}

// config is transfer's test configuration on the world's names.
func (w *world) config() Config {
	w.t.Helper()
	c := testConfig(w.t, w.s)
	c.Topics = []string{w.topic}
	c.DLQTopic = w.dlq
	c.ESIndex = w.index
	c.Group = w.group
	must(w.t, c.Validate())
	return c
}

// produce sends records to the log topic, keyed by job; it returns the
// _id of each, in order.
func (w *world) produce(job string, values ...[]byte) []string {
	w.t.Helper()
	c := kafka.NewConfig("test-producer")
	c.Producer.Return.Successes = true
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.MaxMessageBytes = 1 << 20
	p, err := sarama.NewSyncProducer(w.s.KafkaAddrs(), c)
	if err != nil {
		w.t.Fatal(err)
	}
	defer p.Close()
	var ids []string
	for len(values) > 0 {
		n := min(len(values), 500)
		msgs := make([]*sarama.ProducerMessage, n)
		for i, v := range values[:n] {
			msgs[i] = &sarama.ProducerMessage{Topic: w.topic, Key: sarama.StringEncoder(job), Value: sarama.ByteEncoder(v)}
		}
		if err := p.SendMessages(msgs); err != nil {
			w.t.Fatalf("producing: %v", err)
		}
		for _, m := range msgs {
			ids = append(ids, document.Source{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset}.ID())
		}
		values = values[n:]
	}
	return ids
}

// offsets returns the end offset of each partition of topic.
func (w *world) offsets(topic string) map[int32]int64 {
	w.t.Helper()
	client, err := sarama.NewClient(w.s.KafkaAddrs(), sarama.NewConfig())
	if err != nil {
		w.t.Fatal(err)
	}
	defer client.Close()
	parts, err := client.Partitions(topic)
	if err != nil {
		w.t.Fatal(err)
	}
	out := map[int32]int64{}
	for _, p := range parts {
		if out[p], err = client.GetOffset(topic, p, sarama.OffsetNewest); err != nil {
			w.t.Fatal(err)
		}
	}
	return out
}

// records is how many records topic holds (its topics start empty).
func (w *world) records(topic string) int64 {
	w.t.Helper()
	n := int64(0)
	for _, end := range w.offsets(topic) {
		n += end
	}
	return n
}

// committed returns the group's committed offsets of the log topic, read
// with a Kafka admin client.
func (w *world) committed() map[int32]int64 {
	w.t.Helper()
	admin, err := sarama.NewClusterAdmin(w.s.KafkaAddrs(), sarama.NewConfig())
	if err != nil {
		w.t.Fatal(err)
	}
	defer admin.Close()
	out := map[int32]int64{}
	res, err := admin.ListConsumerGroupOffsets(w.group, nil)
	if errors.Is(err, sarama.ErrGroupIDNotFound) {
		return out // nothing committed yet
	}
	if err != nil {
		w.t.Fatal(err)
	}
	for p, b := range res.Blocks[w.topic] {
		if b.Err != sarama.ErrNoError {
			w.t.Fatalf("committed offset of partition %d: %v", p, b.Err)
		}
		if b.Offset >= 0 {
			out[p] = b.Offset
		}
	}
	return out
}

// committedAt tells whether every partition is committed exactly at end
// (a partition without records needs no commit).
func (w *world) committedAt(end map[int32]int64) bool {
	c := w.committed()
	for p, off := range end {
		if c[p] != off && !(off == 0 && c[p] == 0) {
			return false
		}
	}
	return true
}

// checkExactly checks, by _id, that the data stream holds each of ids
// once and nothing else.
func (w *world) checkExactly(ids []string) {
	w.t.Helper()
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	got := w.es.ids()
	var missing, extra []string
	seen := map[string]int{}
	for _, id := range got {
		seen[id]++
		if !want[id] {
			extra = append(extra, id)
		}
	}
	var dups []string
	for id, n := range seen {
		if n > 1 {
			dups = append(dups, id)
		}
	}
	for id := range want {
		if seen[id] == 0 {
			missing = append(missing, id)
		}
	}
	if len(got) != len(want) || len(missing)+len(extra)+len(dups) > 0 {
		w.t.Fatalf("data stream holds %d documents for %d records: %d missing %v, %d duplicated %v, %d unexpected %v",
			len(got), len(want), len(missing), head(missing), len(dups), head(dups), len(extra), head(extra))
	}
}

// esAPI talks to the search engine over HTTP, as an operator would.
type esAPI struct {
	t     testing.TB
	url   string
	index string
}

// do sends a request and decodes the JSON answer into v (when not nil);
// it returns the status.
func (e *esAPI) do(method, path, body string, v any) int {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			e.t.Fatalf("%s %s: %d %s: %v", method, path, res.StatusCode, b, err)
		}
	}
	return res.StatusCode
}

// must sends a request that has to succeed.
func (e *esAPI) must(method, path, body string) {
	e.t.Helper()
	var ans map[string]any
	if status := e.do(method, path, body, &ans); status != http.StatusOK {
		e.t.Fatalf("%s %s %s: %d %v", method, path, body, status, ans)
	}
}

// count is _count of the data stream for a query ("" for all), after a
// refresh.
func (e *esAPI) count(query string) int {
	e.t.Helper()
	n, status := e.tryCount(query)
	if status != http.StatusOK {
		e.t.Fatalf("_count %s: status %d", query, status)
	}
	return n
}

// tryCount is count that returns the status instead of failing: the data
// stream may not exist yet, or its shards not be ready.
func (e *esAPI) tryCount(query string) (int, int) {
	e.t.Helper()
	if query == "" {
		query = `{"match_all":{}}`
	}
	e.do(http.MethodPost, "/"+e.index+"/_refresh?ignore_unavailable=true", "", nil)
	var ans struct {
		Count int `json:"count"`
	}
	status := e.do(http.MethodPost, "/"+e.index+"/_count?ignore_unavailable=true", `{"query":`+query+`}`, &ans)
	return ans.Count, status
}

// ids lists the _id of every document of the data stream (up to 10,000).
func (e *esAPI) ids() []string {
	e.t.Helper()
	e.do(http.MethodPost, "/"+e.index+"/_refresh", "", nil)
	var ans struct {
		Hits struct {
			Total struct {
				Value int `json:"value"`
			} `json:"total"`
			Hits []struct {
				ID string `json:"_id"`
			} `json:"hits"`
		} `json:"hits"`
	}
	status := e.do(http.MethodPost, "/"+e.index+"/_search", `{"size":10000,"_source":false,"track_total_hits":true,"query":{"match_all":{}}}`, &ans)
	if status != http.StatusOK || ans.Hits.Total.Value > 10000 {
		e.t.Fatalf("_search of every _id: status %d, %d hits", status, ans.Hits.Total.Value)
	}
	out := make([]string, len(ans.Hits.Hits))
	for i, h := range ans.Hits.Hits {
		out[i] = h.ID
	}
	return out
}

// logRecord is line i of job's log file, whose text is msg.
func logRecord(job, msg string, i int) []byte {
	r := record.Record{
		Timestamp: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Millisecond),
		Message:   msg,
		Job:       job,
		Host:      record.Host{Name: "node-a"},
		Agent:     record.Agent{Name: "node-a"},
		Log:       record.Log{File: record.File{Path: "/var/log/" + job + ".log"}, Offset: int64(i) * 100},
	}
	return r.AppendJSON(nil)
}

// waitCount waits until the data stream holds n documents.
func (w *world) waitCount(limit time.Duration, n int) {
	w.t.Helper()
	waitFor(w.t, limit, fmt.Sprintf("%d documents in %s", n, w.index), func() bool {
		got, status := w.es.tryCount("")
		return status == http.StatusOK && got >= n
	})
}
