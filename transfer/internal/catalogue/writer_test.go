package catalogue

import (
	"context"
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sirupsen/logrus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/logpipe/logpipe/devstack/stack"
	"github.com/logpipe/logpipe/transfer/internal/backoff"
)

// TestWriter runs a Writer against Kafka, embedded and real: it creates the
// topic compacted with a week's retention, and the entries of the
// partitions it owns reach the topic, keyed by topic, partition and job.
func TestWriter(t *testing.T) {
	stack.ForBackends(t, func(t *testing.T, kind string) {
		s := stack.New(t, stack.Options{Backends: kind, Without: []string{stack.Etcd, stack.ES}})
		topic := s.Topic("logs.jobs")
		cl, err := kgo.NewClient(kgo.SeedBrokers(s.KafkaAddrs()...))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if s.Shared() { // stack deletes only the topics it created
				req := kmsg.NewPtrDeleteTopicsRequest()
				req.TopicNames = []string{topic}
				_, _ = req.RequestWith(context.Background(), cl)
			}
			cl.Close()
		})

		log := logrus.New()
		log.SetOutput(io.Discard)
		m := NewMetrics(prometheus.NewRegistry())
		counts := NewCounts()
		w := NewWriter(Config{
			Brokers: s.KafkaAddrs(), Topic: topic, Interval: 200 * time.Millisecond, ClientID: "test",
			Backoff: backoff.Policy{Min: 50 * time.Millisecond, Max: time.Second},
		}, counts, m, log)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- w.Run(ctx) }()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		}()

		release := counts.Claimed("logs", 2)
		defer release()
		ts := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
		for range 7 {
			counts.Seen("logs", 2, []byte("web"), "web", ts)
		}
		counts.Seen("logs", 5, []byte("other"), "other", ts) // not owned

		got := readEntries(t, cl, topic, func(m map[string]Entry) bool { return m["logs:2:web"].Lines == 7 })
		e := got["logs:2:web"]
		if e.Job != "web" || e.Topic != "logs" || e.Partition != 2 || !e.LastSeen.Equal(ts) || e.LinesPerMin <= 0 {
			t.Fatalf("entry %+v", e)
		}
		if _, ok := got["logs:5:other"]; ok {
			t.Fatal("an entry of a partition not owned was written")
		}
		// The writer counts a write once Kafka acknowledged it, which may be
		// after the entry can be read.
		for deadline := time.Now().Add(10 * time.Second); testutil.ToFloat64(m.Writes.WithLabelValues(ResultOK)) < 1; {
			if time.Now().After(deadline) {
				t.Fatalf("writes ok = %v after the entry was read", testutil.ToFloat64(m.Writes.WithLabelValues(ResultOK)))
			}
			time.Sleep(10 * time.Millisecond)
		}

		configs := stack.TopicConfigs(t, cl, topic)
		for k, v := range TopicConfigs {
			if configs[k] != v {
				t.Errorf("topic %s: %s = %q, want %q", topic, k, configs[k], v)
			}
		}
		t.Logf("%s: cleanup.policy=%s retention.ms=%s", topic, configs["cleanup.policy"], configs["retention.ms"])
	})
}

// readEntries reads the catalogue topic from its start, keeping the
// latest entry of each key, until done says the entries are complete.
func readEntries(t *testing.T, cl *kgo.Client, topic string, done func(map[string]Entry) bool) map[string]Entry {
	t.Helper()
	cl.AddConsumeTopics(topic)
	got := map[string]Entry{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for !done(got) {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("catalogue %s within a minute: %+v", topic, got)
		}
		fs.EachRecord(func(r *kgo.Record) {
			var e Entry
			if err := json.Unmarshal(r.Value, &e); err != nil {
				t.Errorf("value %q: %v", r.Value, err)
			}
			if string(r.Key) != e.Key() {
				t.Errorf("key %q of entry %+v", r.Key, e)
			}
			got[string(r.Key)] = e
		})
	}
	return got
}

// TestWriterOutage: while Kafka is away, writes fail, are counted and
// retried, and Seen goes on at once; once Kafka is back the entries kept
// meanwhile are written. On the embedded broker, which a test can take off
// the network.
func TestWriterOutage(t *testing.T) {
	s := stack.New(t, stack.Options{Without: []string{stack.Etcd, stack.ES}})
	topic := "logs.jobs"
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.KafkaAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	log := logrus.New()
	log.SetOutput(io.Discard)
	m := NewMetrics(prometheus.NewRegistry())
	counts := NewCounts()
	w := NewWriter(Config{
		Brokers: s.KafkaAddrs(), Topic: topic, Interval: 200 * time.Millisecond, ClientID: "test",
		Backoff: backoff.Policy{Min: 50 * time.Millisecond, Max: 200 * time.Millisecond},
	}, counts, m, log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	defer counts.Claimed("logs", 0)()
	counts.Seen("logs", 0, []byte("a"), "a", time.Now())
	readEntries(t, cl, topic, func(m map[string]Entry) bool { return m["logs:0:a"].Lines == 1 })

	if err := s.StopKafka(); err != nil {
		t.Fatal(err)
	}
	counts.Seen("logs", 0, []byte("b"), "b", time.Now())
	waitFor(t, "a failed write counted", func() bool { return testutil.ToFloat64(m.Writes.WithLabelValues(ResultError)) > 0 })
	counts.Seen("logs", 0, []byte("b"), "b", time.Now()) // not held up by the failing writes
	if err := s.StartKafka(); err != nil {
		t.Fatal(err)
	}
	readEntries(t, cl, topic, func(m map[string]Entry) bool { return m["logs:0:b"].Lines == 2 })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within a minute", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
