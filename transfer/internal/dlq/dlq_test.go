package dlq

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sirupsen/logrus"

	"github.com/logpipe/logpipe/devstack/stack"
	"github.com/logpipe/logpipe/transfer/internal/backoff"
	"github.com/logpipe/logpipe/transfer/internal/metrics"
)

func newProducer(t testing.TB, brokers []string) (*Producer, *metrics.Metrics) {
	t.Helper()
	return newProducerTo(t, brokers, "logs.dlq")
}

func newProducerTo(t testing.TB, brokers []string, topic string) (*Producer, *metrics.Metrics) {
	t.Helper()
	log := logrus.New()
	log.SetOutput(io.Discard)
	m := metrics.New(prometheus.NewRegistry())
	p := New(Config{
		Brokers: brokers, Topic: topic, ClientID: "test",
		Backoff: backoff.Policy{Min: 10 * time.Millisecond, Max: 100 * time.Millisecond},
	}, m, log)
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return p, m
}

// readAll reads n records of topic (one partition at a time, all partitions).
func readAll(t testing.TB, brokers []string, topic string, n int) []*sarama.ConsumerMessage {
	t.Helper()
	c, err := sarama.NewConsumer(brokers, sarama.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	parts, err := c.Partitions(topic)
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan *sarama.ConsumerMessage, n)
	var pcs []sarama.PartitionConsumer
	for _, p := range parts {
		pc, err := c.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatal(err)
		}
		pcs = append(pcs, pc)
		go func() {
			for m := range pc.Messages() {
				out <- m
			}
		}()
	}
	defer func() {
		for _, pc := range pcs {
			pc.Close()
		}
	}()
	var got []*sarama.ConsumerMessage
	timeout := time.After(time.Minute)
	for len(got) < n {
		select {
		case m := <-out:
			got = append(got, m)
		case <-timeout:
			t.Fatalf("read %d of %d records from %s", len(got), n, topic)
		}
	}
	return got
}

func headers(m *sarama.ConsumerMessage) map[string]string {
	h := map[string]string{}
	for _, rh := range m.Headers {
		h[string(rh.Key)] = string(rh.Value)
	}
	return h
}

func TestSendWritesHeaders(t *testing.T) {
	s := stack.New(t, stack.Options{Without: []string{stack.Etcd, stack.ES}})
	p, _ := newProducer(t, s.KafkaAddrs())
	src := &sarama.ConsumerMessage{
		Topic: "logs", Partition: 4, Offset: 77, Key: []byte("web"), Value: []byte(`{"message":"x"}`),
		Headers: []*sarama.RecordHeader{{Key: []byte("trace"), Value: []byte("abc")}},
	}
	invalid := &sarama.ConsumerMessage{Topic: "logs", Partition: 1, Offset: 3, Value: []byte("garbage")}
	err := p.Send(context.Background(), []Letter{
		{Msg: src, Type: "document_parsing_exception", Reason: "failed to parse field [json.n]", Status: 400,
			CausedByType: "illegal_argument_exception", CausedByReason: "For input string"},
		{Msg: invalid, Type: TypeInvalidRecord, Reason: "record: invalid character"},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := readAll(t, s.KafkaAddrs(), "logs.dlq", 2)
	byOffset := map[string]*sarama.ConsumerMessage{}
	for _, m := range got {
		byOffset[headers(m)[HeaderOffset]] = m
	}
	tests := map[string]struct {
		offset string
		key    string
		value  string
		want   map[string]string
	}{
		"rejected": {"77", "web", `{"message":"x"}`, map[string]string{
			"trace": "abc", HeaderErrorType: "document_parsing_exception", HeaderErrorReason: "failed to parse field [json.n]",
			HeaderErrorStatus: "400", HeaderCausedByType: "illegal_argument_exception", HeaderCausedByReason: "For input string",
			HeaderTopic: "logs", HeaderPartition: "4", HeaderOffset: "77",
		}},
		"invalid record": {"3", "", "garbage", map[string]string{
			HeaderErrorType: TypeInvalidRecord, HeaderErrorReason: "record: invalid character",
			HeaderTopic: "logs", HeaderPartition: "1", HeaderOffset: "3",
		}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			m := byOffset[tt.offset]
			if m == nil {
				t.Fatalf("no dead letter for offset %s", tt.offset)
			}
			if string(m.Key) != tt.key || string(m.Value) != tt.value {
				t.Fatalf("key %q value %q, want %q %q", m.Key, m.Value, tt.key, tt.value)
			}
			h := headers(m)
			if len(h) != len(tt.want) {
				t.Errorf("headers %v, want %v", h, tt.want)
			}
			for k, v := range tt.want {
				if h[k] != v {
					t.Errorf("header %s = %q, want %q", k, h[k], v)
				}
			}
		})
	}
}

func TestSendWaitsForKafka(t *testing.T) {
	s := stack.New(t, stack.Options{Without: []string{stack.Etcd, stack.ES}, Topics: []string{"logs.dlq"}})
	if err := s.StopKafka(); err != nil {
		t.Fatal(err)
	}
	p, m := newProducer(t, s.KafkaAddrs())
	done := make(chan error, 1)
	msg := &sarama.ConsumerMessage{Topic: "logs", Offset: 1, Value: []byte("v")}
	go func() { done <- p.Send(context.Background(), []Letter{{Msg: msg, Type: "t", Reason: "r"}}) }()
	deadline := time.Now().Add(time.Minute)
	for testutil.ToFloat64(m.Retries.WithLabelValues(metrics.RetryDLQ)) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no retries while Kafka is down")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.StartKafka(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Send did not finish after Kafka came back")
	}
	readAll(t, s.KafkaAddrs(), "logs.dlq", 1)
}

func TestSendStopsWithContext(t *testing.T) {
	p, _ := newProducer(t, []string{"127.0.0.1:1"})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := p.Send(ctx, []Letter{{Msg: &sarama.ConsumerMessage{Value: []byte("v")}, Type: "t"}})
	if err == nil {
		t.Fatal("Send to nowhere returned nil")
	}
}
