package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/elastic/go-elasticsearch/v8"

	"github.com/logpipe/logpipe/common/record"
	"github.com/logpipe/logpipe/devstack/stack"
	"github.com/logpipe/logpipe/transfer/internal/document"
	"github.com/logpipe/logpipe/transfer/internal/kafka"
)

const (
	testIndex = "logs-logpipe-default"
	testTopic = "logs"
	testDLQ   = "logs.dlq"
)

// newStack starts Kafka and esfake for one test.
func newStack(t testing.TB) *stack.Stack {
	t.Helper()
	return stack.New(t, stack.Options{Without: []string{stack.Etcd}})
}

// testConfig is the default configuration pointed at s, with short waits.
func testConfig(t testing.TB, s *stack.Stack) Config {
	t.Helper()
	c := DefaultConfig()
	must(t, c.Common.KafkaBrokers.Set(strings.Join(s.KafkaAddrs(), ",")))
	if s.ESURL() != "" {
		must(t, c.ESAddresses.Set(s.ESURL()))
	}
	c.Common.MetricsAddr = "127.0.0.1:0"
	c.Common.LogLevel.Value = "debug"
	c.BatchDocs = 500
	c.BatchWait = 50 * time.Millisecond
	c.BackoffMin = 10 * time.Millisecond
	c.BackoffMax = 200 * time.Millisecond
	c.DrainTimeout = 5 * time.Second
	must(t, c.Validate())
	return c
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// testLog writes the service's log lines to the test log.
type testLog struct {
	t    testing.TB
	name string
	mu   sync.Mutex
	done bool
}

func (w *testLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(w.name + ": " + strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// running is a transfer service started in-process.
type running struct {
	svc  *service
	stop func()
}

// startService runs transfer in-process until stop or the end of the test.
func startService(t testing.TB, name string, cfg Config) *running {
	t.Helper()
	lw := &testLog{t: t, name: name}
	svc, err := newService(cfg, lw)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	var once sync.Once
	r := &running{svc: svc}
	r.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("%s: Run = %v", name, err)
				}
			case <-time.After(within):
				t.Errorf("%s: Run did not return within %v of cancel", name, within)
			}
			lw.mu.Lock()
			lw.done = true
			lw.mu.Unlock()
		})
	}
	t.Cleanup(r.stop)
	return r
}

// producer sends test records and remembers the _id of each.
type producer struct {
	t    testing.TB
	p    sarama.SyncProducer
	mu   sync.Mutex
	ids  map[string]bool
	next int
}

func newProducer(t testing.TB, brokers []string) *producer {
	t.Helper()
	c := kafka.NewConfig("test-producer")
	c.Producer.Return.Successes = true
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Idempotent = true
	c.Net.MaxOpenRequests = 1
	p, err := sarama.NewSyncProducer(brokers, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return &producer{t: t, p: p, ids: map[string]bool{}}
}

// testRecord is record i of the tests: a text line, and every seventh a JSON object.
func testRecord(i int) []byte {
	msg := fmt.Sprintf("line %d GET /api/items/%d 200", i, i)
	if i%7 == 0 {
		msg = fmt.Sprintf(`{"line":%d,"status":200,"path":"/api"}`, i)
	}
	r := record.Record{
		Timestamp: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Millisecond),
		Message:   msg,
		Job:       fmt.Sprintf("job-%d", i%12),
		Host:      record.Host{Name: "node-a"},
		Agent:     record.Agent{Name: "node-a"},
		Log:       record.Log{File: record.File{Path: "/var/log/app.log"}, Offset: int64(i) * 100},
	}
	return r.AppendJSON(nil)
}

// send produces n more test records, in batches of at most 500.
func (p *producer) send(n int) {
	p.t.Helper()
	for n > 0 {
		k := min(n, 500)
		p.mu.Lock()
		msgs := make([]*sarama.ProducerMessage, k)
		for i := range msgs {
			v := testRecord(p.next + i)
			msgs[i] = &sarama.ProducerMessage{Topic: testTopic, Key: sarama.StringEncoder(fmt.Sprintf("job-%d", (p.next+i)%12)), Value: sarama.ByteEncoder(v)}
		}
		p.next += k
		p.mu.Unlock()
		p.sendRaw(msgs...)
		n -= k
	}
}

// sendRaw produces the given messages and records their ids.
func (p *producer) sendRaw(msgs ...*sarama.ProducerMessage) {
	p.t.Helper()
	if err := p.p.SendMessages(msgs); err != nil {
		p.t.Errorf("producing: %v", err)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range msgs {
		p.ids[document.Source{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset}.ID()] = true
	}
}

func (p *producer) sent() map[string]bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.ids)
}

// within bounds the waits for transfer to do something: far more than it
// takes on an idle machine, so that a loaded one does not fail a test. No
// test measures speed with it.
const within = 2 * time.Minute

// waitFor polls cond until it holds or limit passes.
func waitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkExactlyOnce checks that the index holds exactly the produced records
// (plus extra, those expected besides), each once, through esfake's view and
// through the Elasticsearch API (_count, _search).
func checkExactlyOnce(t testing.TB, s *stack.Stack, want map[string]bool) {
	t.Helper()
	docs := s.ES().Docs(testIndex)
	seen := make(map[string]int, len(docs))
	for _, d := range docs {
		seen[d.ID]++
	}
	var missing, dup, extra []string
	for id := range want {
		if seen[id] == 0 {
			missing = append(missing, id)
		}
	}
	for id, n := range seen {
		if n > 1 {
			dup = append(dup, id)
		}
		if !want[id] {
			extra = append(extra, id)
		}
	}
	if len(missing)+len(dup)+len(extra) > 0 {
		t.Fatalf("index has %d documents for %d records: %d missing (%v), %d duplicated (%v), %d unexpected (%v)",
			len(docs), len(want), len(missing), head(missing), len(dup), head(dup), len(extra), head(extra))
	}

	es := esClient(t, s)
	if got := esCount(t, es, `{"query":{"match_all":{}}}`); got != len(want) {
		t.Fatalf("_count = %d, want %d", got, len(want))
	}
	// Per partition through _search, so that the query path agrees too.
	perPartition := map[int32]int{}
	for id := range want {
		var p int32
		var off int64
		fmt.Sscanf(strings.TrimPrefix(id, testTopic+"-"), "%d-%d", &p, &off)
		perPartition[p]++
	}
	for p, n := range perPartition {
		q := fmt.Sprintf(`{"size":0,"track_total_hits":true,"query":{"bool":{"filter":[{"term":{"kafka.partition":%d}},{"term":{"kafka.topic":%q}}]}}}`, p, testTopic)
		if got := esSearchTotal(t, es, q); got != n {
			t.Fatalf("_search partition %d: %d hits, want %d", p, got, n)
		}
	}
}

func head(s []string) []string {
	slices.Sort(s)
	return s[:min(len(s), 5)]
}

func esClient(t testing.TB, s *stack.Stack) *elasticsearch.Client {
	t.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	es, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{s.ESURL()}, Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func esCount(t testing.TB, es *elasticsearch.Client, query string) int {
	t.Helper()
	res, err := es.Count(es.Count.WithIndex(testIndex), es.Count.WithBody(strings.NewReader(query)))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body struct {
		Count int `json:"count"`
	}
	decodeOK(t, res.StatusCode, res.Body, &body)
	return body.Count
}

func esSearchTotal(t testing.TB, es *elasticsearch.Client, query string) int {
	t.Helper()
	res, err := es.Search(es.Search.WithIndex(testIndex), es.Search.WithBody(strings.NewReader(query)))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body struct {
		Hits struct {
			Total struct {
				Value int `json:"value"`
			} `json:"total"`
		} `json:"hits"`
	}
	decodeOK(t, res.StatusCode, res.Body, &body)
	return body.Hits.Total.Value
}

func decodeOK(t testing.TB, status int, r io.Reader, v any) {
	t.Helper()
	b, _ := io.ReadAll(r)
	if status != http.StatusOK {
		t.Fatalf("elasticsearch answered %d: %s", status, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
}

// committed returns the group's committed offsets of the test topic.
func committed(t testing.TB, brokers []string, group string) map[int32]int64 {
	t.Helper()
	admin, err := sarama.NewClusterAdmin(brokers, sarama.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	out := map[int32]int64{}
	res, err := admin.ListConsumerGroupOffsets(group, nil)
	if errors.Is(err, sarama.ErrGroupIDNotFound) {
		return out // nothing committed yet
	}
	if err != nil {
		t.Fatal(err)
	}
	for p, b := range res.Blocks[testTopic] {
		if b.Err != sarama.ErrNoError {
			t.Fatalf("committed offset of partition %d: %v", p, b.Err)
		}
		if b.Offset >= 0 {
			out[p] = b.Offset
		}
	}
	return out
}

// checkCommitted checks that no committed offset passes a record that is
// neither in the index nor in deadLettered.
func checkCommitted(t testing.TB, s *stack.Stack, group string, deadLettered map[string]bool) map[int32]int64 {
	t.Helper()
	offsets := committed(t, s.KafkaAddrs(), group)
	indexed := map[string]bool{}
	for _, d := range s.ES().Docs(testIndex) {
		indexed[d.ID] = true
	}
	for p, c := range offsets {
		for off := int64(0); off < c; off++ {
			id := document.Source{Topic: testTopic, Partition: p, Offset: off}.ID()
			if !indexed[id] && !deadLettered[id] {
				t.Fatalf("partition %d committed at %d, but record %s is neither indexed nor dead-lettered", p, c, id)
			}
		}
	}
	return offsets
}

// endOffsets returns each partition's high watermark.
func endOffsets(t testing.TB, brokers []string) map[int32]int64 {
	t.Helper()
	client, err := sarama.NewClient(brokers, sarama.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	parts, err := client.Partitions(testTopic)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	for _, p := range parts {
		off, err := client.GetOffset(testTopic, p, sarama.OffsetNewest)
		if err != nil {
			t.Fatal(err)
		}
		out[p] = off
	}
	return out
}

// scrape returns the value of an unlabelled metric from a /metrics page.
func scrape(t testing.TB, addr, name string) float64 {
	t.Helper()
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	sc := bufio.NewScanner(bytes.NewReader(b))
	sum, found := 0.0, false
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, name+" ") || strings.HasPrefix(line, name+"{") {
			var v float64
			fields := strings.Fields(line)
			fmt.Sscan(fields[len(fields)-1], &v)
			sum += v
			found = true
		}
	}
	if !found {
		t.Fatalf("metric %s not found on %s/metrics", name, addr)
	}
	return sum
}
