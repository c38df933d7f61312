package main

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/IBM/sarama"

	"github.com/logpipe/logpipe/devstack/stack"
)

// BenchmarkContextFromKafka: the context of a line 20,000 records into a
// partition, without an index: livetail reads the window before it and
// the lines after it until it has 50 of them. On kfake and Apache Kafka.
func BenchmarkContextFromKafka(b *testing.B) {
	for _, kind := range stack.Backends {
		b.Run(kind, func(b *testing.B) {
			s := stack.New(b, stack.Options{Backends: kind, Without: []string{stack.Etcd, stack.ES}, Partitions: 3})
			pl := newPlaced(b, s)
			msgs := make([]*sarama.ProducerMessage, 0, 1000)
			var at int64
			for i := 0; i < 21_000; i++ {
				v := fileLine("web", "00000000000000a1", i)
				msgs = append(msgs, &sarama.ProducerMessage{Topic: pl.topic, Partition: 0, Key: sarama.StringEncoder("web"), Value: sarama.ByteEncoder(v.AppendJSON(nil))})
				if len(msgs) == cap(msgs) {
					if err := pl.p.SendMessages(msgs); err != nil {
						b.Fatal(err)
					}
					at = msgs[len(msgs)-1].Offset // of line i

					msgs = msgs[:0]
				}
			}
			at -= 900 // line 20,099: 20,099 records before it
			base := "http://" + startServer(b, testConfig(s)).Addr()
			q := fmt.Sprintf("job=web&partition=0&offset=%d", at)
			for b.Loop() {
				if code, a := getContext(b, base, q, ""); code != http.StatusOK || len(a.Before) != 50 || len(a.After) != 50 {
					b.Fatalf("%d %d %d %s", code, len(a.Before), len(a.After), a.Error)
				}
			}
		})
	}
}
