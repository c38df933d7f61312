package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
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
// "agent" records are what the agent writes: each carries its full source
// position (agent.name, log.file.device_id, inode, fingerprint, and the
// file generation), so transfer derives each _id by hashing it.
// "no-position" records are what another producer writes, whose _id is
// the cheaper <topic>-<partition>-<offset>.
//
//	go test -run '^$' -bench BenchmarkTransfer -benchtime 300000x .
func BenchmarkTransfer(b *testing.B) {
	b.Run("agent", func(b *testing.B) { benchTransfer(b, true) })
	b.Run("no-position", func(b *testing.B) { benchTransfer(b, false) })
}

func benchTransfer(b *testing.B, position bool) {
	s := stack.New(b, stack.Options{Without: []string{stack.Etcd, stack.ES}})
	es := httptest.NewServer(esfake.New(esfake.WithDiscard()))
	b.Cleanup(es.Close)

	topic := fmt.Sprintf("bench-%d-%d", b.N, time.Now().UnixNano())
	createTopic(b, s.KafkaAddrs(), topic, stack.DefaultPartitions)
	produceLines(b, s.KafkaAddrs(), topic, b.N, position)

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

// produceLines produces n records whose messages are 200-byte log lines of
// 24 jobs, one file each. With position, each record carries its source
// position as the agent writes it (see agentRecord).
func produceLines(tb testing.TB, brokers []string, topic string, n int, position bool) {
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
	const files = 24
	ts := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	for i := 0; i < n; i++ {
		line := fmt.Sprintf(`10.0.%d.%d - - [21/Nov/2026:10:00:00 +0000] "GET /api/v1/items/%08d HTTP/1.1" 200 5120 "-" "Mozilla/5.0 (X11; Linux x86_64)" rt=0.%03d`, i%256, i%200, i, i%1000)
		line += strings.Repeat(" ", max(0, 200-len(line)))
		f := i % files
		r := record.Record{
			Timestamp: ts.Add(time.Duration(i) * time.Microsecond),
			Message:   line[:200],
			Job:       fmt.Sprintf("web-%d", f),
			Host:      record.Host{Name: "node-a"},
			Agent:     record.Agent{Name: "node-a"},
			Log:       record.Log{File: record.File{Path: fmt.Sprintf("/var/log/nginx/web-%d.log", f)}, Offset: int64(i/files) * 201},
			Labels:    map[string]string{"env": "bench"},
		}
		value := r.AppendJSON(nil)
		if position {
			value = agentRecord(tb, r, f)
			if i < files { // what transfer decodes carries the position
				if d, err := record.Decode(value); err != nil || !d.HasPosition() {
					tb.Fatalf("%s: decoded %+v, %v: no source position", value, d, err)
				}
			}
		}
		p.Input() <- &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(r.Job), Value: sarama.ByteEncoder(value)}
	}
	if err := <-done; err != nil {
		tb.Fatal(err)
	}
}

// agentRecord is r as the agent writes it for a line of file f: with the
// file's device, inode and fingerprint, and its log.file.generation (16 hex
// digits) right after log.file.fingerprint. The generation is put into the
// encoding here, where the agent's encoder puts it, so that these are the
// agent's bytes whether or not record.File has the field.
func agentRecord(tb testing.TB, r record.Record, f int) []byte {
	r.Log.File.DeviceID = "2049"
	r.Log.File.Inode = strconv.Itoa(1835017 + f)
	// A line past the first KiB: the hash of the file's first 1,024 bytes.
	r.Log.File.Fingerprint = fmt.Sprintf("%016x", 0x9f2c41d07a5b3e88^uint64(f))
	if !r.HasPosition() {
		tb.Fatalf("record has no source position: %+v", r)
	}
	v := r.AppendJSON(nil)
	fp := []byte(`"fingerprint":"` + r.Log.File.Fingerprint + `"`)
	at := bytes.Index(v, fp)
	if at < 0 {
		tb.Fatalf("no log.file.fingerprint in %s", v)
	}
	at += len(fp)
	gen := fmt.Sprintf(`,"generation":"%016x"`, 0x5a17e0c3d2b19f46+uint64(f))
	return slices.Concat(v[:at], []byte(gen), v[at:])
}
