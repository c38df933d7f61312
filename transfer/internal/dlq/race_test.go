package dlq

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/logpipe/logpipe/devstack/stack"
	"github.com/logpipe/logpipe/transfer/internal/metrics"
)

// TestSendUnderConcurrentResets: the partitions share one producer, and a
// failed send retires it while others are sending on it. No send may run
// on a closed producer (sarama panics: "send on closed channel"), and
// every letter reaches the topic. Connections are retired both by a
// goroutine that does what a failed send does, at random moments, and, on
// the embedded broker, by real produce failures it injects.
func TestSendUnderConcurrentResets(t *testing.T) {
	stack.ForBackends(t, func(t *testing.T, kind string) {
		s := stack.New(t, stack.Options{Backends: kind, Without: []string{stack.Etcd, stack.ES}, Topics: []string{"logs.dlq"}})
		topic := s.Topic("logs.dlq")
		p, m := newProducerTo(t, s.KafkaAddrs(), topic)

		var produceFailures atomic.Int64
		if c := s.Kafka(); c != nil {
			// Every fifth produce request fails for good (MESSAGE_TOO_LARGE):
			// sarama does not retry it, so Send retires the connection.
			var n atomic.Int64
			c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
				c.KeepControl()
				if n.Add(1)%5 != 0 {
					return nil, nil, false
				}
				produceFailures.Add(1)
				return failProduce(req.(*kmsg.ProduceRequest), kerr.MessageTooLarge.Code), nil, true
			})
		}

		const senders, sends, perSend = 6, 25, 8
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var wg sync.WaitGroup
		errs := make(chan error, senders)
		for part := range senders {
			wg.Go(func() {
				for i := range sends {
					letters := make([]Letter, perSend)
					for j := range letters {
						msg := &sarama.ConsumerMessage{Topic: "logs", Partition: int32(part), Offset: int64(i*perSend + j), Value: []byte("v")}
						letters[j] = Letter{Msg: msg, Type: "document_parsing_exception", Reason: "r", Status: 400}
					}
					if err := p.Send(ctx, letters); err != nil {
						errs <- fmt.Errorf("partition %d, send %d: %w", part, i, err)
						return
					}
				}
			})
		}
		// What a failed send does, while the others send.
		resets := 0
		stopResets := make(chan struct{})
		resetsDone := make(chan struct{})
		go func() {
			defer close(resetsDone)
			for {
				select {
				case <-stopResets:
					return
				default:
				}
				if c, err := p.acquire(); err == nil {
					p.release(c, true)
					resets++
				}
			}
		}()
		wg.Wait()
		close(stopResets)
		<-resetsDone
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if resets == 0 {
			t.Fatal("no connection was retired while sending")
		}

		seen := map[string]int{}
		for _, msg := range readAll(t, s.KafkaAddrs(), topic, senders*sends*perSend) {
			h := headers(msg)
			seen[h[HeaderPartition]+"/"+h[HeaderOffset]]++
		}
		for part := range senders {
			for off := range sends * perSend {
				if seen[fmt.Sprintf("%d/%d", part, off)] == 0 {
					t.Fatalf("letter of partition %d offset %d is not in %s", part, off, topic)
				}
			}
		}
		t.Logf("%s: %d letters sent by %d partitions; %d connections retired by hand, %d produce requests failed, %d retries",
			kind, senders*sends*perSend, senders, resets, produceFailures.Load(), int(testutil.ToFloat64(m.Retries.WithLabelValues(metrics.RetryDLQ))))

		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		err := p.Send(context.Background(), []Letter{{Msg: &sarama.ConsumerMessage{Value: []byte("v")}, Type: "t"}})
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Send after Close = %v, want ErrClosed", err)
		}
	})
}

// failProduce answers a produce request with code for every partition.
func failProduce(req *kmsg.ProduceRequest, code int16) *kmsg.ProduceResponse {
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	resp.SetVersion(req.GetVersion())
	for _, t := range req.Topics {
		rt := kmsg.NewProduceResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewProduceResponseTopicPartition()
			rp.Partition = p.Partition
			rp.ErrorCode = code
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}
