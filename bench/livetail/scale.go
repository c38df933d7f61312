package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/coder/websocket"

	"github.com/logpipe/logpipe/common/record"
	"github.com/logpipe/logpipe/devstack/backends"
	"github.com/logpipe/logpipe/devstack/proc"
)

// The scale case: two replicas of livetail read one topic while producers
// write busy jobs to it. Replica A has one client watching one job,
// replica B has none. It is run in mode all (every replica reads every
// partition, as before --consume) and in mode watched, and reports what
// each replica read from Kafka and the CPU it spent.
//
// transfer does not run here (it would share the two cores with the
// replicas): the case writes the jobs catalogue that transfer would, one
// entry per job on the partition its lines go to, before the replicas
// start, so that a session is placed by the catalogue as in production.

// scaleResult is one replica's cost over the measuring time.
type scaleResult struct {
	mode, replica   string
	clients         int
	records, bytes  float64 // read from Kafka (live and history)
	cpu             float64 // seconds
	consumed        float64 // partitions consumed at the end
	received        int64   // lines the client got
	producedRecords int64
	producedBytes   int64
	watchedBytes    int64 // produced to the watched job's partition
	elapsed         float64
}

// scaleCase runs the scale case in each mode.
func scaleCase(ctx context.Context, bin string, s *backends.Stack, jobs, rate int, measure time.Duration, lineBytes int) ([]scaleResult, error) {
	if err := writeCatalogue(s.KafkaAddrs(), jobs, int32(s.Partitions())); err != nil {
		return nil, fmt.Errorf("jobs catalogue: %w", err)
	}
	var out []scaleResult
	for _, mode := range []string{"all", "watched"} {
		res, err := scaleRun(ctx, bin, s, mode, jobs, rate, measure, lineBytes)
		if err != nil {
			return nil, fmt.Errorf("mode %s: %w", mode, err)
		}
		out = append(out, res...)
	}
	return out, nil
}

func scaleRun(ctx context.Context, bin string, s *backends.Stack, mode string, jobs, rate int, measure time.Duration, lineBytes int) ([]scaleResult, error) {
	a, err := startLivetail(bin, s, "--consume", mode)
	if err != nil {
		return nil, err
	}
	defer a.stop()
	b, err := startLivetail(bin, s, "--consume", mode)
	if err != nil {
		return nil, err
	}
	defer b.stop()

	// One client on A, watching job-0 live, once A has read where the
	// catalogue places it.
	if err := waitPlaced(ctx, a.addr, "job-0"); err != nil {
		return nil, err
	}
	c, _, err := websocket.Dial(ctx, "ws://"+a.addr+"/api/v1/tail?job=job-0", nil)
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(16 << 20)
	_, hello, err := c.Read(ctx)
	if err != nil {
		return nil, err
	}
	progress("scale, mode %s: %s", mode, hello)
	var received atomic.Int64
	var cwg sync.WaitGroup
	defer func() {
		c.CloseNow()
		cwg.Wait()
	}()
	cwg.Go(func() {
		for {
			_, data, err := c.Read(context.Background())
			if err != nil {
				return
			}
			received.Add(int64(strings.Count(string(data), `"line":"`)))
		}
	})

	cfg := sarama.NewConfig()
	cfg.Producer.RequiredAcks = sarama.WaitForLocal
	cfg.Producer.Flush.Frequency = 2 * time.Millisecond
	cfg.Producer.Flush.Messages = 200
	prod, err := sarama.NewAsyncProducer(s.KafkaAddrs(), cfg)
	if err != nil {
		return nil, err
	}
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for range prod.Errors() {
		}
	}()
	var producedRecords, producedBytes, watchedBytes atomic.Int64
	hash := sarama.NewHashPartitioner("logs")
	partitionOf := func(job string) int32 {
		p, _ := hash.Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(job)}, int32(s.Partitions()))
		return p
	}
	watched := partitionOf("job-0")
	onWatched := make([]bool, jobs) // by job: on the watched job's partition
	for i := range onWatched {
		onWatched[i] = partitionOf("job-"+strconv.Itoa(i)) == watched
	}
	pctx, stopProducing := context.WithCancel(ctx)
	var pwg sync.WaitGroup
	pwg.Go(func() {
		pad := strings.Repeat("x", max(0, lineBytes-20))
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		n := 0
		for {
			select {
			case <-pctx.Done():
				return
			case <-tick.C:
			}
			for range rate / 100 {
				job := "job-" + strconv.Itoa(n%jobs)
				n++
				rec := record.Record{
					Timestamp: time.Now(), Job: job, Message: strconv.FormatInt(time.Now().UnixNano(), 10) + " " + pad,
					Host: record.Host{Name: "bench"}, Agent: record.Agent{Name: "bench"},
					Log: record.Log{File: record.File{Path: "/var/log/bench.log"}, Offset: int64(n)},
				}
				value := rec.AppendJSON(nil)
				prod.Input() <- &sarama.ProducerMessage{Topic: "logs", Key: sarama.StringEncoder(job), Value: sarama.ByteEncoder(value)}
				producedRecords.Add(1)
				producedBytes.Add(int64(len(job) + len(value)))
				if onWatched[(n-1)%jobs] {
					watchedBytes.Add(int64(len(job) + len(value)))
				}
			}
		}
	})
	progress("scale, mode %s: measuring for %v", mode, measure)
	read := func(l *livetail) (records, bytes float64) {
		names := []string{}
		for _, p := range []string{"live", "history"} {
			names = append(names, `livetail_kafka_read_records_total{purpose="`+p+`"}`, `livetail_kafka_read_bytes_total{purpose="`+p+`"}`)
		}
		vs := proc.Metrics(l.metrics, names...) // labelled ones as the exposition writes them
		for _, p := range []string{"live", "history"} {
			records += vs[`livetail_kafka_read_records_total{purpose="`+p+`"}`]
			bytes += vs[`livetail_kafka_read_bytes_total{purpose="`+p+`"}`]
		}
		return records, bytes
	}
	ra0, ba0 := read(a)
	rb0, bb0 := read(b)
	ca0, cb0 := a.cpuSeconds(), b.cpuSeconds()
	pr0, pb0, wb0, recv0 := producedRecords.Load(), producedBytes.Load(), watchedBytes.Load(), received.Load()
	start := time.Now()
	time.Sleep(measure)
	elapsed := time.Since(start).Seconds()
	ra1, ba1 := read(a)
	rb1, bb1 := read(b)
	ca1, cb1 := a.cpuSeconds(), b.cpuSeconds()
	pr, pb, wb, recv := producedRecords.Load()-pr0, producedBytes.Load()-pb0, watchedBytes.Load()-wb0, received.Load()-recv0
	stopProducing()
	pwg.Wait()
	prod.AsyncClose()
	<-drained

	common := scaleResult{mode: mode, producedRecords: pr, producedBytes: pb, watchedBytes: wb, elapsed: elapsed}
	ra, rb := common, common
	ra.replica, ra.clients, ra.records, ra.bytes, ra.cpu, ra.received = "A", 1, ra1-ra0, ba1-ba0, ca1-ca0, recv
	ra.consumed = a.metric("livetail_partitions_consumed")
	rb.replica, rb.records, rb.bytes, rb.cpu = "B", rb1-rb0, bb1-bb0, cb1-cb0
	rb.consumed = b.metric("livetail_partitions_consumed")
	return []scaleResult{ra, rb}, nil
}

// jobsTopic is livetail's default --jobs-topic.
const jobsTopic = "logs.jobs"

// writeCatalogue writes the jobs catalogue entries transfer would write for
// jobs job-0 to job-<jobs-1>: each on the partition sarama's default
// partitioner, which the producers use, gives it.
func writeCatalogue(brokers []string, jobs int, partitions int32) error {
	admin, err := sarama.NewClusterAdmin(brokers, sarama.NewConfig())
	if err != nil {
		return err
	}
	defer admin.Close()
	compact := "compact,delete"
	err = admin.CreateTopic(jobsTopic, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1,
		ConfigEntries: map[string]*string{"cleanup.policy": &compact}}, false)
	if err != nil && !errors.Is(err, sarama.ErrTopicAlreadyExists) {
		return err
	}
	cfg := sarama.NewConfig()
	cfg.Producer.Return.Successes = true
	prod, err := sarama.NewSyncProducer(brokers, cfg)
	if err != nil {
		return err
	}
	defer prod.Close()
	hash := sarama.NewHashPartitioner("logs")
	now := time.Now().UTC()
	msgs := make([]*sarama.ProducerMessage, 0, jobs)
	for i := range jobs {
		job := "job-" + strconv.Itoa(i)
		p, err := hash.Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(job)}, partitions)
		if err != nil {
			return err
		}
		value, err := json.Marshal(map[string]any{"job": job, "topic": "logs", "partition": p,
			"last_seen": now, "lines_per_min": 0, "lines": 0})
		if err != nil {
			return err
		}
		key := fmt.Sprintf("logs:%d:%s", p, job)
		msgs = append(msgs, &sarama.ProducerMessage{Topic: jobsTopic, Key: sarama.StringEncoder(key), Value: sarama.ByteEncoder(value)})
	}
	return prod.SendMessages(msgs)
}

// waitPlaced waits until livetail at addr lists job on some partition in
// /api/v1/jobs (read from the catalogue: nothing is consumed yet).
func waitPlaced(ctx context.Context, addr, job string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		resp, err := http.Get("http://" + addr + "/api/v1/jobs")
		if err == nil {
			var jobs []struct {
				Job        string  `json:"job"`
				Partitions []int32 `json:"partitions"`
			}
			err = json.NewDecoder(resp.Body).Decode(&jobs)
			resp.Body.Close()
			for _, j := range jobs {
				if err == nil && j.Job == job && len(j.Partitions) > 0 {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("livetail at %s does not list %s from the catalogue: %w", addr, job, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// printScale prints the scale case's table.
func printScale(rs []scaleResult, partitions, jobs, rate int) {
	if len(rs) == 0 {
		return
	}
	fmt.Printf("\nScale: two replicas, %d partitions, %d jobs, %d lines/s; A has one client on one job, B none.\n\n", partitions, jobs, rate)
	fmt.Printf("| --consume | replica | clients | records read | bytes read (of produced) | CPU (cores) | partitions consumed | lines to the client |\n|---|---|---|---|---|---|---|---|\n")
	for _, r := range rs {
		share := 0.0
		if r.producedBytes > 0 {
			share = r.bytes / float64(r.producedBytes) * 100
		}
		fmt.Printf("| %s | %s | %d | %.0f of %d | %.1f MB (%.1f%%) | %.3f | %.0f | %d |\n",
			r.mode, r.replica, r.clients, r.records, r.producedRecords, r.bytes/1e6, share, r.cpu/r.elapsed, r.consumed, r.received)
	}
	fmt.Println()
	for _, r := range rs {
		if r.replica == "A" && r.producedBytes > 0 {
			fmt.Printf("--consume %s: the watched job's partition got %.1f%% of the bytes produced.\n", r.mode, float64(r.watchedBytes)/float64(r.producedBytes)*100)
		}
	}
}
