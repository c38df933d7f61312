package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/logpipe/logpipe/common/record"
	"github.com/logpipe/logpipe/devstack/esfake"
	"github.com/logpipe/logpipe/devstack/proc"
	"github.com/logpipe/logpipe/devstack/stack"
)

// BenchmarkTransfer measures the transfer binary from Kafka to acknowledged
// bulk responses: b.N records with 200-byte log lines are produced first,
// then a transfer process consumes them into esfake in discard mode (it
// parses every bulk body and acknowledges without storing). The figures are
// the process's own, read from its /metrics: documents per second, CPU time
// per document, and heap allocations and bytes per document.
//
//	go test -run '^$' -bench BenchmarkTransfer -benchtime 300000x .
func BenchmarkTransfer(b *testing.B) {
	s := stack.New(b, stack.Options{Without: []string{stack.Etcd, stack.ES}})
	es := httptest.NewServer(esfake.New(esfake.WithDiscard()))
	b.Cleanup(es.Close)

	topic := fmt.Sprintf("bench-%d-%d", b.N, time.Now().UnixNano())
	createTopic(b, s.KafkaAddrs(), topic, stack.DefaultPartitions)
	produceLines(b, s.KafkaAddrs(), topic, b.N)

	transfer := proc.Start(b, transferBinary(b),
		"--kafka-brokers", strings.Join(s.KafkaAddrs(), ","),
		"--kafka-topics", topic,
		"--group", topic,
		"--es-addresses", es.URL,
		"--metrics-addr", "127.0.0.1:0",
	)
	addr := transfer.Addr(b, "metrics")
	waitFor(b, within, "transfer ready", func() bool {
		res, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
	b.ResetTimer()
	start, t0 := snapshot(b, addr), time.Now()
	var end processStats
	waitFor(b, 10*time.Minute, fmt.Sprintf("%d documents acknowledged", b.N), func() bool {
		end = snapshot(b, addr)
		return end.docs >= float64(b.N)
	})
	elapsed := time.Since(t0)
	b.StopTimer()

	docs := end.docs - start.docs
	if docs <= 0 {
		b.Fatalf("no documents indexed in the measured window (%v before it)", start.docs)
	}
	b.ReportMetric(docs/elapsed.Seconds(), "docs/s")
	b.ReportMetric((end.cpu-start.cpu)*1e9/docs, "cpu-ns/doc")
	b.ReportMetric((end.mallocs-start.mallocs)/docs, "allocs/doc")
	b.ReportMetric((end.bytes-start.bytes)/docs, "B/doc")
}

// processStats are the counters BenchmarkTransfer reads from /metrics.
type processStats struct{ docs, cpu, mallocs, bytes float64 }

func snapshot(tb testing.TB, addr string) processStats {
	return processStats{
		docs:    scrape(tb, addr, "transfer_docs_indexed_total"),
		cpu:     scrape(tb, addr, "process_cpu_seconds_total"),
		mallocs: scrape(tb, addr, "go_memstats_mallocs_total"),
		bytes:   scrape(tb, addr, "go_memstats_alloc_bytes_total"),
	}
}

func createTopic(tb testing.TB, brokers []string, topic string, partitions int32) {
	tb.Helper()
	admin, err := sarama.NewClusterAdmin(brokers, sarama.NewConfig())
	if err != nil {
		tb.Fatal(err)
	}
	defer admin.Close()
	if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: 1}, false); err != nil {
		tb.Fatal(err)
	}
}

// produceLines produces n records whose messages are 200-byte log lines.
func produceLines(tb testing.TB, brokers []string, topic string, n int) {
	tb.Helper()
	c := sarama.NewConfig()
	c.Producer.Return.Successes = true
	c.Producer.Flush.Messages = 1000
	c.Producer.Flush.Frequency = 5 * time.Millisecond
	p, err := sarama.NewAsyncProducer(brokers, c)
	if err != nil {
		tb.Fatal(err)
	}
	defer p.Close()
	done := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			select {
			case <-p.Successes():
			case err := <-p.Errors():
				done <- err
				return
			}
		}
		done <- nil
	}()
	ts := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	for i := 0; i < n; i++ {
		line := fmt.Sprintf(`10.0.%d.%d - - [21/Nov/2026:10:00:00 +0000] "GET /api/v1/items/%08d HTTP/1.1" 200 5120 "-" "Mozilla/5.0 (X11; Linux x86_64)" rt=0.%03d`, i%256, i%200, i, i%1000)
		line += strings.Repeat(" ", max(0, 200-len(line)))
		r := record.Record{
			Timestamp: ts.Add(time.Duration(i) * time.Microsecond),
			Message:   line[:200],
			Job:       fmt.Sprintf("web-%d", i%24),
			Host:      record.Host{Name: "node-a"},
			Agent:     record.Agent{Name: "node-a"},
			Log:       record.Log{File: record.File{Path: "/var/log/nginx/access.log"}, Offset: int64(i) * 201},
			Labels:    map[string]string{"env": "bench"},
		}
		p.Input() <- &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(r.Job), Value: sarama.ByteEncoder(r.AppendJSON(nil))}
	}
	if err := <-done; err != nil {
		tb.Fatal(err)
	}
}
