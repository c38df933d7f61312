package producer

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/logpipe/logpipe/devstack/stack"
)

// countOwner counts the acknowledged messages and closes all once the
// want-th is acknowledged.
type countOwner struct {
	n    atomic.Int64
	want int64
	all  chan struct{}
}

func (o *countOwner) Sent(*Message) {}

func (o *countOwner) Done(m *Message, err error) {
	m.Release()
	if err != nil {
		return // not counted: all never closes, and the benchmark fails
	}
	if o.n.Add(1) == o.want {
		close(o.all)
	}
}

// BenchmarkProduce measures records sent through the Producer until Kafka
// acknowledged the last of them: one key, 420-byte values, the broker in
// this process. The timer runs until the last acknowledgement, so ns/op
// and records/s are the rate at which Kafka acknowledges, not the rate at
// which Send hands records to sarama.
func BenchmarkProduce(b *testing.B) {
	s := stack.New(b, stack.Options{Without: []string{stack.Etcd, stack.ES}})
	cfg := DefaultConfig()
	cfg.Brokers = s.KafkaAddrs()
	p, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close(10 * time.Second)
	val := strings.Repeat("v", 420)
	o := &countOwner{want: int64(b.N), all: make(chan struct{})}
	ctx := context.Background()
	b.SetBytes(int64(len(val)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		m, err := p.Acquire(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := p.Send(ctx, m, o, "logs", []byte("bench"), append(m.Buffer(len(val)), val...)); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-o.all:
	case <-time.After(time.Minute):
		b.Fatalf("%d of %d records acknowledged after a minute", o.n.Load(), b.N)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
