package producer

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/logpipe/logpipe/devstack/stack"
)

type countOwner struct{ n atomic.Int64 }

func (o *countOwner) Sent(*Message)              {}
func (o *countOwner) Done(m *Message, err error) { o.n.Add(1); m.Release() }

// BenchmarkProduce measures records to Kafka-acknowledged through the
// Producer, one key, 420-byte values, the broker in this process.
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
	o := &countOwner{}
	ctx := context.Background()
	b.SetBytes(int64(len(val)))
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		m, _ := p.Acquire(ctx)
		_ = p.Send(ctx, m, o, "logs", []byte("bench"), append(m.Buffer(len(val)), val...))
		n++
	}
	for o.n.Load() < int64(n) {
		time.Sleep(time.Millisecond)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
}
