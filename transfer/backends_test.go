package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
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

// realEngineOnly runs f on the real backends alone, for a behaviour of the
// search engine that esfake does not model (why names it), so that the
// test guards it where it exists. Without real backends the test is
// skipped with a message that says so, or fails under make test
// (stack.EnvRequireReal), as stack.New decides.
func realEngineOnly(t *testing.T, why string, f func(t *testing.T, kind string)) {
	t.Helper()
	t.Run(stack.Real, func(t *testing.T) {
		if os.Getenv(stack.EnvBackendsFile) == "" && os.Getenv(stack.EnvRequireReal) != "1" {
			t.Skipf("%s: tested on the real search engine only, and there are no real backends: run with make test, or set %s (see README, Tests)", why, stack.EnvBackendsFile)
		}
		f(t, stack.Real)
	})
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
	w.waitLeaders(w.topic, w.dlq)
	return w
}

// waitLeaders waits until every partition of topics has a leader that
// answers for it. On the shared Kafka, New creates the topics just before:
// the broker can still answer a produce request NOT_LEADER_OR_FOLLOWER
// then, which the producer retries only a few times within a few hundred
// milliseconds. A ListOffsets request is served by the partition's leader
// too, and adds no record.
func (w *world) waitLeaders(topics ...string) {
	w.t.Helper()
	client, err := sarama.NewClient(w.s.KafkaAddrs(), sarama.NewConfig())
	if err != nil {
		w.t.Fatal(err)
	}
	defer client.Close()
	for _, topic := range topics {
		waitFor(w.t, 30*time.Second, "a leader for every partition of "+topic, func() bool {
			if client.RefreshMetadata(topic) != nil {
				return false
			}
			for p := range int32(w.s.Partitions()) {
				if _, err := client.GetOffset(topic, p, sarama.OffsetNewest); err != nil {
					return false
				}
			}
			return true
		})
	}
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
	c := kafka.NewConfig("test-producer", nil)
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
			w.t.Fatalf("producing to %s: %v", w.topic, produceError(err))
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

// newProducer is a producer of test records to the log topic.
func (w *world) newProducer() *producer {
	w.t.Helper()
	return newProducer(w.t, w.s.KafkaAddrs(), w.topic)
}

// committed returns the group's committed offsets of the log topic, read
// with a Kafka admin client.
func (w *world) committed() map[int32]int64 {
	w.t.Helper()
	return committed(w.t, w.s.KafkaAddrs(), w.group, w.topic)
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
// once and nothing else: _count is the number of records, an ids query
// for each record finds its document once, a query for every other _id
// finds nothing, and each partition's documents carry its kafka.topic and
// kafka.partition.
func (w *world) checkExactly(ids []string) {
	w.t.Helper()
	ids = slices.Sorted(slices.Values(ids))
	if len(slices.Compact(slices.Clone(ids))) != len(ids) {
		w.t.Fatalf("checkExactly: the %d ids asked for are not distinct", len(ids))
	}
	total := w.es.count("")

	const chunk = 1000
	found := map[string]int{}
	for i := 0; i < len(ids); i += chunk {
		for _, id := range w.es.search(idsQuery(ids[i:min(i+chunk, len(ids))]), chunk+1) { // one more: a duplicate would show
			found[id]++
		}
	}
	var missing, dups []string
	for _, id := range ids {
		switch found[id] {
		case 0:
			missing = append(missing, id)
		case 1:
		default:
			dups = append(dups, id)
		}
	}
	extra := w.es.search(`{"bool":{"must_not":`+idsQuery(ids)+`}}`, 5)
	if total != len(ids) || len(missing)+len(dups)+len(extra) > 0 {
		w.t.Fatalf("data stream holds %d documents for %d records: %d missing %v, %d duplicated %v, unexpected ones such as %v",
			total, len(ids), len(missing), head(missing), len(dups), head(dups), extra)
	}

	// Per partition, through the kafka.* fields of the documents.
	perPartition := map[int32]int{}
	for _, id := range ids {
		perPartition[w.partitionOf(id)]++
	}
	for p, n := range perPartition {
		if got := w.es.count(fmt.Sprintf(`{"bool":{"filter":[{"term":{"kafka.topic":%q}},{"term":{"kafka.partition":%d}}]}}`, w.topic, p)); got != n {
			w.t.Fatalf("partition %d: %d documents with its kafka.topic and kafka.partition, want %d", p, got, n)
		}
	}
}

// checkCommitted checks that no committed offset of the log topic passes
// a record that is neither indexed nor in deadLettered (by _id), and
// returns the committed offsets. It counts, per partition, the documents
// below the committed offset: transfer creates each document with its
// record's _id, and the data stream has one backing index, where an _id is
// unique, so that count is the number of distinct records indexed.
func (w *world) checkCommitted(deadLettered map[string]bool) map[int32]int64 {
	w.t.Helper()
	offsets := w.committed() // before counting: what was committed was indexed before
	for p, c := range offsets {
		want := c
		for id := range deadLettered {
			if w.partitionOf(id) == p && offsetOf(id) < c {
				want--
			}
		}
		q := fmt.Sprintf(`{"bool":{"filter":[{"term":{"kafka.topic":%q}},{"term":{"kafka.partition":%d}},{"range":{"kafka.offset":{"lt":%d}}}]}}`, w.topic, p, c)
		if got := w.es.count(q); int64(got) != want {
			w.t.Fatalf("partition %d committed at %d: %d documents below it, want %d (every record below it indexed once, or dead-lettered)", p, c, got, want)
		}
	}
	return offsets
}

// partitionOf is the partition of a record of the log topic, by its _id
// (<topic>-<partition>-<offset>).
func (w *world) partitionOf(id string) int32 {
	w.t.Helper()
	rest, ok := strings.CutPrefix(id, w.topic+"-")
	p, _, ok2 := strings.Cut(rest, "-")
	n, err := strconv.ParseInt(p, 10, 32)
	if !ok || !ok2 || err != nil {
		w.t.Fatalf("_id %q is not a record of %s", id, w.topic)
	}
	return int32(n)
}

// offsetOf is the offset of a record, by its _id.
func offsetOf(id string) int64 {
	n, _ := strconv.ParseInt(id[strings.LastIndexByte(id, '-')+1:], 10, 64)
	return n
}

// idsQuery is a query for the documents of ids (a terms query on _id).
func idsQuery(ids []string) string {
	b, _ := json.Marshal(map[string]any{"terms": map[string]any{"_id": ids}})
	return string(b)
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

// search returns the _id of the first size documents that match query.
func (e *esAPI) search(query string, size int) []string {
	e.t.Helper()
	var ans struct {
		Hits struct {
			Hits []struct {
				ID string `json:"_id"`
			} `json:"hits"`
		} `json:"hits"`
	}
	body := fmt.Sprintf(`{"size":%d,"_source":false,"query":%s}`, size, query)
	if status := e.do(http.MethodPost, "/"+e.index+"/_search", body, &ans); status != http.StatusOK {
		e.t.Fatalf("_search %.200s: status %d", query, status)
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
