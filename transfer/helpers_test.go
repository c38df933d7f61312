package main

import (
	"bufio"
	"bytes"
	"context"
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

// testLog writes the service's log lines to the test log, and keeps its
// warnings.
type testLog struct {
	t        testing.TB
	name     string
	mu       sync.Mutex
	done     bool
	warnings []string
}

func (w *testLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	line := strings.TrimRight(string(p), "\n")
	if strings.Contains(line, "level=warning") {
		w.warnings = append(w.warnings, line)
	}
	if !w.done {
		w.t.Log(w.name + ": " + line)
	}
	return len(p), nil
}

// warned returns the warnings logged so far that contain s.
func (w *testLog) warned(s string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, l := range w.warnings {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return out
}

// running is a transfer service started in-process.
type running struct {
	svc  *service
	log  *testLog
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
	r := &running{svc: svc, log: lw}
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

// producer sends test records to one topic and remembers the _id of each.
type producer struct {
	t     testing.TB
	p     sarama.SyncProducer
	topic string
	mu    sync.Mutex
	ids   map[string]bool
	next  int
}

func newProducer(t testing.TB, brokers []string, topic string) *producer {
	t.Helper()
	c := kafka.NewConfig("test-producer", nil)
	c.Producer.Return.Successes = true
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Idempotent = true
	c.Net.MaxOpenRequests = 1
	p, err := sarama.NewSyncProducer(brokers, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return &producer{t: t, p: p, topic: topic, ids: map[string]bool{}}
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
			msgs[i] = &sarama.ProducerMessage{Topic: p.topic, Key: sarama.StringEncoder(fmt.Sprintf("job-%d", (p.next+i)%12)), Value: sarama.ByteEncoder(v)}
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
		p.t.Errorf("producing to %s: %v", p.topic, produceError(err))
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

// sentIDs is the _id of every record sent, sorted.
func (p *producer) sentIDs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Sorted(maps.Keys(p.ids))
}

// produceError is err with the reason of its first failed message.
func produceError(err error) error {
	var pe sarama.ProducerErrors
	if errors.As(err, &pe) && len(pe) > 0 {
		return fmt.Errorf("%w: the first, to partition %d: %w", err, pe[0].Msg.Partition, pe[0].Err)
	}
	return err
}

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

func head(s []string) []string {
	slices.Sort(s)
	return s[:min(len(s), 5)]
}

// committed returns the group's committed offsets of topic.
func committed(t testing.TB, brokers []string, group, topic string) map[int32]int64 {
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
	for p, b := range res.Blocks[topic] {
		if b.Err != sarama.ErrNoError {
			t.Fatalf("committed offset of partition %d: %v", p, b.Err)
		}
		if b.Offset >= 0 {
			out[p] = b.Offset
		}
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
