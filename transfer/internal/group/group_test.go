package group

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/sirupsen/logrus"

	"github.com/logpipe/logpipe/common/essec"
	"github.com/logpipe/logpipe/common/record"
	"github.com/logpipe/logpipe/devstack/stack"
	"github.com/logpipe/logpipe/transfer/internal/backoff"
	"github.com/logpipe/logpipe/transfer/internal/dlq"
	"github.com/logpipe/logpipe/transfer/internal/document"
	"github.com/logpipe/logpipe/transfer/internal/esbulk"
	"github.com/logpipe/logpipe/transfer/internal/metrics"
	"github.com/logpipe/logpipe/transfer/internal/sink"
)

func TestDrainContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		parent, cancel := context.WithCancel(context.Background())
		ctx, stop := drainContext(parent, 10*time.Second)
		defer stop()

		time.Sleep(time.Hour)
		if ctx.Err() != nil {
			t.Fatal("drain context ended while its parent runs")
		}
		cancel()
		time.Sleep(9 * time.Second)
		if ctx.Err() != nil {
			t.Fatal("drain context ended before the grace period")
		}
		time.Sleep(2 * time.Second)
		if !errors.Is(ctx.Err(), context.Canceled) {
			t.Fatalf("drain context after the grace period: %v", ctx.Err())
		}
	})
}

func TestDrainContextStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		parent, cancel := context.WithCancel(context.Background())
		ctx, stop := drainContext(parent, time.Minute)
		cancel()
		synctest.Wait()
		stop() // stops the grace timer: nothing left running in the bubble
		if ctx.Err() == nil {
			t.Fatal("stop did not end the context")
		}
	})
}

func TestConfigValidate(t *testing.T) {
	good := Config{
		Brokers: []string{"k:9092"}, Topics: []string{"logs"}, Group: "g",
		BatchDocs: 1, BatchBytes: 1, BatchWait: time.Millisecond,
		Backoff: backoff.Policy{Min: time.Millisecond, Max: time.Second},
	}
	tests := map[string]struct {
		change func(*Config)
		want   string
	}{
		"ok":             {func(*Config) {}, ""},
		"no brokers":     {func(c *Config) { c.Brokers = nil }, "broker"},
		"no topics":      {func(c *Config) { c.Topics = nil }, "topic"},
		"no group":       {func(c *Config) { c.Group = "" }, "group"},
		"zero docs":      {func(c *Config) { c.BatchDocs = 0 }, "batch docs 0"},
		"zero bytes":     {func(c *Config) { c.BatchBytes = 0 }, "batch bytes 0"},
		"zero wait":      {func(c *Config) { c.BatchWait = 0 }, "batch wait"},
		"negative drain": {func(c *Config) { c.DrainTimeout = -1 }, "drain"},
		"bad backoff":    {func(c *Config) { c.Backoff.Min = 0 }, "backoff"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			c := good
			tt.change(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want an error about %q", err, tt.want)
			}
		})
	}
}

// TestBatchBounds runs a Group and checks that batches respect the count
// bound and that a lone record is flushed by the time bound.
func TestBatchBounds(t *testing.T) {
	const index = "logs-logpipe-default"
	s := stack.New(t, stack.Options{Without: []string{stack.Etcd}})
	log := logrus.New()
	log.SetOutput(io.Discard)
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	es, err := esbulk.New(essec.Config{ESAddresses: []string{s.ESURL()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(es.Close)
	if err := es.PutTemplate(context.Background(), index, document.Template(index, document.Elasticsearch)); err != nil {
		t.Fatal(err)
	}
	bo := backoff.Policy{Min: 10 * time.Millisecond, Max: 100 * time.Millisecond}
	dl := dlq.New(dlq.Config{Brokers: s.KafkaAddrs(), Topic: "logs.dlq", Backoff: bo}, m, log)
	t.Cleanup(func() { _ = dl.Close() })
	cfg := Config{
		Brokers: s.KafkaAddrs(), Topics: []string{"logs"}, Group: "g", ClientID: "test",
		BatchDocs: 7, BatchBytes: 1 << 20, BatchWait: 100 * time.Millisecond, DrainTimeout: time.Second, Backoff: bo,
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	g := New(cfg, sink.New(es, dl, bo, m, log), func() *sink.Batch { return sink.NewBatch(index, document.Builder{}) }, m, log)
	if g.Ready() == nil {
		t.Fatal("Ready before joining")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- g.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	pc := sarama.NewConfig()
	pc.Producer.Return.Successes = true
	prod, err := sarama.NewSyncProducer(s.KafkaAddrs(), pc)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	send := func(n int) {
		var msgs []*sarama.ProducerMessage
		for i := 0; i < n; i++ {
			r := record.Record{Timestamp: time.Now(), Message: fmt.Sprint(i), Job: "one"}
			msgs = append(msgs, &sarama.ProducerMessage{Topic: "logs", Key: sarama.StringEncoder("one"), Value: sarama.ByteEncoder(r.AppendJSON(nil))})
		}
		if err := prod.SendMessages(msgs); err != nil {
			t.Fatal(err)
		}
	}
	send(50)
	waitCount(t, s, index, 50)
	send(1) // alone: only the time bound flushes it
	waitCount(t, s, index, 51)
	if g.Ready() != nil {
		t.Fatalf("Ready = %v while consuming", g.Ready())
	}

	var hist dto.Metric
	if err := m.BatchDocs.Write(&hist); err != nil {
		t.Fatal(err)
	}
	if got := hist.GetHistogram().GetSampleSum(); got != 51 {
		t.Fatalf("batches held %v records, want 51", got)
	}
	// 50 records in batches of at most 7 take 8 batches at least; the lone one is a 9th.
	if hist.GetHistogram().GetSampleCount() < 9 {
		t.Fatalf("%d batches for 51 records with at most 7 each", hist.GetHistogram().GetSampleCount())
	}
}

func waitCount(t testing.TB, s *stack.Stack, index string, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for s.ES().Count(index) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d documents, want %d", s.ES().Count(index), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
