// Command transfer measures the transfer binary from Kafka to acknowledged
// bulk responses, and prints a table. It produces -records records with
// 200-byte log lines to devstack's Kafka, started in this process, then
// runs a transfer process that consumes them into esfake in discard mode
// (it parses every bulk body and acknowledges without storing). The figures
// are the process's own, read from its /metrics: documents per second, CPU
// time per document, and heap allocations and bytes per document.
//
// "agent" records are what the agent writes: each carries its full source
// position (agent.name, log.file.device_id, inode, fingerprint, and the
// file generation), so transfer derives each _id by hashing it.
// "no-position" records are what another producer writes, whose _id is
// the cheaper <topic>-<partition>-<offset>.
//
//	go run ./bench/transfer                  # 300,000 records of each kind
//	go run ./bench/transfer -records 10000
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/IBM/sarama"

	"github.com/logpipe/logpipe/common/record"
	"github.com/logpipe/logpipe/devstack/backends"
	"github.com/logpipe/logpipe/devstack/esfake"
	"github.com/logpipe/logpipe/devstack/proc"
)

func main() {
	records := flag.Int("records", 300000, "records of each kind to index")
	flag.Parse()
	if err := run(max(*records, 1)); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// result is what one kind of records measured.
type result struct {
	docsPerSec, cpuNs, allocs, bytes float64
}

func run(n int) error {
	work, err := os.MkdirTemp("", "transfer-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	bin, err := proc.BuildCommand(work, "transfer")
	if err != nil {
		return err
	}
	s, err := backends.Start(context.Background(), backends.Options{Without: []string{backends.Etcd, backends.ES}})
	if err != nil {
		return err
	}
	defer s.Close()
	es := httptest.NewServer(esfake.New(esfake.WithDiscard()))
	defer es.Close()

	kinds := []struct {
		name     string
		position bool
	}{{"agent", true}, {"no-position", false}}
	results := make([]result, len(kinds))
	for i, k := range kinds {
		fmt.Fprintf(os.Stderr, "%s: producing %d records...\n", k.name, n)
		if results[i], err = measure(bin, s.KafkaAddrs(), es.URL, n, k.position); err != nil {
			return fmt.Errorf("%s: %w", k.name, err)
		}
	}
	fmt.Printf("transfer: %d records of 200-byte lines each, Kafka %s (kfake, in the harness process), esfake discarding; %d partitions\n\n",
		n, s.KafkaAddrs()[0], s.Partitions())
	fmt.Println("| records     |    docs/s | CPU ns/doc | allocs/doc | B/doc |")
	fmt.Println("|-------------|-----------|------------|------------|-------|")
	for i, k := range kinds {
		r := results[i]
		fmt.Printf("| %-11s | %9.0f | %10.0f | %10.1f | %5.0f |\n", k.name, r.docsPerSec, r.cpuNs, r.allocs, r.bytes)
	}
	return nil
}

// measure produces n records to a topic of their own, runs transfer on it
// until it has indexed them all, and reads its counters.
func measure(bin string, brokers []string, esURL string, n int, position bool) (result, error) {
	topic := fmt.Sprintf("bench-%d-%d", n, time.Now().UnixNano())
	if err := createTopic(brokers, topic, backends.DefaultPartitions); err != nil {
		return result{}, err
	}
	if err := produceLines(brokers, topic, n, position); err != nil {
		return result{}, err
	}
	p, err := proc.Launch("transfer", exec.Command(bin,
		"--kafka-brokers", strings.Join(brokers, ","),
		"--kafka-topics", topic,
		"--group", topic,
		"--es-addresses", esURL,
		"--metrics-addr", "127.0.0.1:0",
	))
	if err != nil {
		return result{}, err
	}
	defer p.Terminate(30 * time.Second)
	addr, err := p.Address("metrics", time.Minute)
	if err == nil {
		err = proc.WaitReady(addr)
	}
	if err != nil {
		return result{}, fmt.Errorf("transfer: %w\n%s", err, p.Output())
	}
	start, t0 := snapshot(addr), time.Now()
	var end processStats
	for deadline := t0.Add(10 * time.Minute); ; time.Sleep(20 * time.Millisecond) {
		if end = snapshot(addr); end.docs >= float64(n) {
			break
		}
		if time.Now().After(deadline) {
			return result{}, fmt.Errorf("%v of %d documents acknowledged in 10 minutes\n%s", end.docs, n, p.Output())
		}
	}
	elapsed := time.Since(t0)
	docs := end.docs - start.docs
	if docs <= 0 {
		return result{}, fmt.Errorf("no documents indexed in the measured window (%v before it)", start.docs)
	}
	return result{
		docsPerSec: docs / elapsed.Seconds(),
		cpuNs:      (end.cpu - start.cpu) * 1e9 / docs,
		allocs:     (end.mallocs - start.mallocs) / docs,
		bytes:      (end.bytes - start.bytes) / docs,
	}, nil
}

// processStats are the counters measure reads from /metrics.
type processStats struct{ docs, cpu, mallocs, bytes float64 }

// snapshot reads them in one scrape.
func snapshot(addr string) processStats {
	const docs, cpu, mallocs, bytes = "transfer_docs_indexed_total", "process_cpu_seconds_total",
		"go_memstats_mallocs_total", "go_memstats_alloc_bytes_total"
	vs := proc.Metrics(addr, docs, cpu, mallocs, bytes)
	return processStats{docs: vs[docs], cpu: vs[cpu], mallocs: vs[mallocs], bytes: vs[bytes]}
}

func createTopic(brokers []string, topic string, partitions int32) error {
	admin, err := sarama.NewClusterAdmin(brokers, sarama.NewConfig())
	if err != nil {
		return err
	}
	defer admin.Close()
	return admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: 1}, false)
}

// produceLines produces n records whose messages are 200-byte log lines of
// 24 jobs, one file each. With position, each record carries its source
// position as the agent writes it (see agentRecord).
func produceLines(brokers []string, topic string, n int, position bool) error {
	c := sarama.NewConfig()
	c.Producer.Return.Successes = true
	c.Producer.Flush.Messages = 1000
	c.Producer.Flush.Frequency = 5 * time.Millisecond
	p, err := sarama.NewAsyncProducer(brokers, c)
	if err != nil {
		return err
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
			if value, err = agentRecord(r, f); err != nil {
				return err
			}
			if i < files { // what transfer decodes carries the position
				if d, err := record.Decode(value); err != nil || !d.HasPosition() {
					return fmt.Errorf("%s: decoded %+v, %v: no source position", value, d, err)
				}
			}
		}
		p.Input() <- &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(r.Job), Value: sarama.ByteEncoder(value)}
	}
	return <-done
}

// agentRecord is r as the agent writes it for a line of file f: with the
// file's device, inode and fingerprint, and its log.file.generation (16 hex
// digits) right after log.file.fingerprint. The generation is put into the
// encoding here, where the agent's encoder puts it, so that these are the
// agent's bytes whether or not record.File has the field.
func agentRecord(r record.Record, f int) ([]byte, error) {
	r.Log.File.DeviceID = "2049"
	r.Log.File.Inode = strconv.Itoa(1835017 + f)
	// A line past the first KiB: the hash of the file's first 1,024 bytes.
	r.Log.File.Fingerprint = fmt.Sprintf("%016x", 0x9f2c41d07a5b3e88^uint64(f))
	if !r.HasPosition() {
		return nil, fmt.Errorf("record has no source position: %+v", r)
	}
	v := r.AppendJSON(nil)
	fp := []byte(`"fingerprint":"` + r.Log.File.Fingerprint + `"`)
	at := bytes.Index(v, fp)
	if at < 0 {
		return nil, fmt.Errorf("no log.file.fingerprint in %s", v)
	}
	at += len(fp)
	gen := fmt.Sprintf(`,"generation":"%016x"`, 0x5a17e0c3d2b19f46+uint64(f))
	return slices.Concat(v[:at], []byte(gen), v[at:]), nil
}
