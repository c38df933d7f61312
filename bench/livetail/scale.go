package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"slices"
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

// The scale case: -scale-replicas replicas of livetail read one topic
// while producers write -scale-jobs busy jobs to it at -scale-rate lines/s.
// Replica 1 has no client, replica 2 one client watching job-0, replica 3
// one client on every job (and so on, round the three, with more
// replicas). It runs in mode all (every replica reads every partition, as
// before --consume), then in mode watched, and then in mode watched at
// -scale-low-rate lines/s for the latency at a low rate. For each replica
// it reports what it read from Kafka by purpose (from its metrics), its
// CPU, the partitions it consumed, the append → client latency of its
// clients and the lines they missed.
//
// transfer does not run here (it would share the cores with the
// replicas): the case writes the jobs catalogue that transfer would, one
// entry per job on the partition its lines go to, before the replicas
// start and again every 10 s while lines come, so that a session is placed
// by the catalogue as in production and reading the catalogue costs what
// it costs there. The producers start once every client has joined, so
// that each line of a client's job reaches it unless livetail drops it.
//
// With -backends real the case runs on an Apache Kafka of its own (a JVM,
// started for the run) instead of the harness's kfake.

// scaleOpts holds the scale case's flags that main does not define.
var scaleOpts = struct {
	backends   string
	replicas   int
	lowRate    int
	lowMeasure time.Duration
	warmup     time.Duration
}{backends: backends.Embedded, replicas: 3, lowRate: 200}

func init() {
	flag.Func("backends", "Kafka to run the fan-out, scale and idle cases on: embedded (kfake, in this process) or real (Apache Kafka in a JVM of its own, needs Java and the jars of make test)", func(v string) error {
		if v != backends.Embedded && v != backends.Real {
			fmt.Fprintf(os.Stderr, "bench: -backends %q: want %s or %s\n", v, backends.Embedded, backends.Real)
			os.Exit(2)
		}
		scaleOpts.backends = v
		return nil
	})
	flag.Func("scale-replicas", "scale: livetail replicas, watching no job, one job, every job, and round again (default 3)", intAtLeast("scale-replicas", 1, &scaleOpts.replicas))
	flag.Func("scale-low-rate", "scale: lines per second of the low-rate run, 0 to skip it (default 200)", intAtLeast("scale-low-rate", 0, &scaleOpts.lowRate))
	flag.DurationVar(&scaleOpts.lowMeasure, "scale-low-measure", 10*time.Second, "scale: measuring time of the low-rate run")
	flag.DurationVar(&scaleOpts.warmup, "scale-warmup", 2*time.Second, "scale: producing time before measuring, in each run")
}

// intAtLeast parses a flag's integer into dst; a value that is not one, or
// below least, exits 2 with one line.
func intAtLeast(name string, least int, dst *int) func(string) error {
	return func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < least {
			fmt.Fprintf(os.Stderr, "bench: -%s %q: want an integer of at least %d\n", name, v, least)
			os.Exit(2)
		}
		*dst = n
		return nil
	}
}

// Targets of the scale case (the README's "Benchmark").
const (
	idleShareTarget = 0.02 // of the topic's bytes, read by a replica without clients
	idleCPUTarget   = 0.02 // cores, spent by a replica without clients
	oneJobSlack     = 1.10 // × its partition's share, read by a replica watching one job
	lowRateP99      = 10 * time.Millisecond
)

// purposes are the values of livetail_kafka_read_*_total's purpose label.
var purposes = []string{"live", "history", "catalogue"}

// scaleResult is one replica's cost over the measuring time of one run.
type scaleResult struct {
	kafka    string // kfake or Apache Kafka
	mode     string
	rate     int  // lines/s asked
	low      bool // the low-rate run
	replica  int  // from 1
	watches  int  // jobs its clients watch, one client each
	records  map[string]float64
	bytes    map[string]float64 // read from Kafka, by purpose
	cpu      float64            // cores
	consumed float64            // partitions consumed at the end of the measuring time
	p50, p99 time.Duration      // append → client, while measuring
	samples  int                // latencies measured
	wanted   int64              // lines of its clients' jobs produced while they were connected
	received int64              // lines its clients got of them
	dropped  float64            // livetail_entries_dropped_total

	producedRecords, producedBytes int64
	watchedBytes                   int64 // produced to job-0's partition
	elapsed                        float64
}

// readBytes is what r read of the log topic (live and history).
func (r scaleResult) readBytes() float64 { return r.bytes["live"] + r.bytes["history"] }

func (r scaleResult) share() float64 {
	if r.producedBytes == 0 {
		return 0
	}
	return r.readBytes() / float64(r.producedBytes)
}

// totalShare is everything r read from Kafka (the catalogue too) over what
// was produced to the log topic: what the targets bound.
func (r scaleResult) totalShare() float64 {
	if r.producedBytes == 0 {
		return 0
	}
	return (r.readBytes() + r.bytes["catalogue"]) / float64(r.producedBytes)
}

func (r scaleResult) watchedShare() float64 {
	if r.producedBytes == 0 {
		return 0
	}
	return float64(r.watchedBytes) / float64(r.producedBytes)
}

// scaleRunSpec is one run of the scale case.
type scaleRunSpec struct {
	mode    string
	rate    int
	measure time.Duration
	low     bool // the low-rate run
}

// scaleCase runs the scale case: modes all and watched at rate, then
// watched at the low rate.
func scaleCase(ctx context.Context, bin string, s *backends.Stack, jobs, rate int, measure time.Duration, lineBytes int) ([]scaleResult, error) {
	if jobs < 1 || rate < 1 {
		return nil, fmt.Errorf("-scale-jobs %d, -scale-rate %d: want at least 1 each", jobs, rate)
	}
	kafka := kafkaName()
	if err := writeCatalogue(s.KafkaAddrs(), jobs, int32(s.Partitions())); err != nil {
		return nil, fmt.Errorf("jobs catalogue: %w", err)
	}
	runs := []scaleRunSpec{{"all", rate, measure, false}, {"watched", rate, measure, false}}
	if scaleOpts.lowRate > 0 {
		runs = append(runs, scaleRunSpec{"watched", scaleOpts.lowRate, scaleOpts.lowMeasure, true})
	}
	var out []scaleResult
	for _, run := range runs {
		res, err := scaleRun(ctx, bin, s, run, jobs, lineBytes)
		if err != nil {
			return nil, fmt.Errorf("mode %s at %d lines/s: %w", run.mode, run.rate, err)
		}
		for i := range res {
			res[i].kafka = kafka
		}
		out = append(out, res...)
	}
	return out, nil
}

// replicaWatches is how many jobs replica i (from 0) has clients on:
// none, one, all, and round again.
func replicaWatches(i, jobs int) int {
	return []int{0, 1, jobs}[i%3]
}

func jobName(i int) string { return "job-" + strconv.Itoa(i) }

func scaleRun(ctx context.Context, bin string, s *backends.Stack, run scaleRunSpec, jobs, lineBytes int) ([]scaleResult, error) {
	reps := make([]*livetail, scaleOpts.replicas)
	defer func() {
		for _, l := range reps {
			if l != nil {
				l.stop()
			}
		}
	}()
	for i := range reps {
		l, err := startLivetail(bin, s, "--consume", run.mode)
		if err != nil {
			return nil, err
		}
		reps[i] = l
	}

	// Clients, once each replica lists their jobs from the catalogue.
	var clients []*scaleClient
	defer func() {
		for _, c := range clients {
			c.close()
		}
	}()
	for i, l := range reps {
		n := replicaWatches(i, jobs)
		if n == 0 {
			continue
		}
		for _, job := range []string{jobName(0), jobName(n - 1)} {
			if err := waitPlaced(ctx, l.addr, job); err != nil {
				return nil, err
			}
		}
		for j := range n {
			c, err := dialScaleClient(ctx, l.addr, i, j)
			if err != nil {
				return nil, fmt.Errorf("replica %d, client of %s: %w", i+1, jobName(j), err)
			}
			clients = append(clients, c)
		}
	}
	progress("scale, mode %s at %d lines/s: %d replicas, %d clients joined", run.mode, run.rate, len(reps), len(clients))

	p, err := startScaleProducer(s, jobs, run.rate, lineBytes)
	if err != nil {
		return nil, err
	}
	defer p.stop()
	time.Sleep(scaleOpts.warmup)

	progress("scale, mode %s at %d lines/s: measuring for %v", run.mode, run.rate, run.measure)
	before := make([]replicaSample, len(reps))
	for i, l := range reps {
		before[i] = sampleReplica(l)
	}
	pr0, pb0, wb0 := p.records.Load(), p.bytes.Load(), p.watchedBytes.Load()
	for _, c := range clients {
		c.measuring.Store(true)
	}
	start := time.Now()
	time.Sleep(run.measure)
	elapsed := time.Since(start).Seconds()
	for _, c := range clients {
		c.measuring.Store(false)
	}
	after := make([]replicaSample, len(reps))
	consumed := make([]float64, len(reps))
	for i, l := range reps {
		after[i] = sampleReplica(l)
		consumed[i] = l.metric("livetail_partitions_consumed")
	}
	pr, pb, wb := p.records.Load()-pr0, p.bytes.Load()-pb0, p.watchedBytes.Load()-wb0
	p.stop()

	// Every line of a client's job produced while it was connected reaches
	// it, unless livetail dropped it.
	deadline := time.Now().Add(15 * time.Second)
	for _, c := range clients {
		for c.lines.Load() < p.perJob[c.job].Load() && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
	}
	for _, c := range clients {
		c.close()
	}

	out := make([]scaleResult, len(reps))
	for i, l := range reps {
		r := scaleResult{mode: run.mode, rate: run.rate, low: run.low, replica: i + 1, watches: replicaWatches(i, jobs),
			records: map[string]float64{}, bytes: map[string]float64{},
			producedRecords: pr, producedBytes: pb, watchedBytes: wb, elapsed: elapsed}
		for _, purpose := range purposes {
			r.records[purpose] = after[i].records[purpose] - before[i].records[purpose]
			r.bytes[purpose] = after[i].bytes[purpose] - before[i].bytes[purpose]
		}
		r.cpu = (after[i].cpu - before[i].cpu) / elapsed
		r.consumed = consumed[i]
		r.dropped = l.metric("livetail_entries_dropped_total")
		var lat []time.Duration
		for _, c := range clients {
			if c.replica == i {
				lat = append(lat, c.latencies...)
				r.wanted += p.perJob[c.job].Load()
				r.received += c.lines.Load()
			}
		}
		if len(lat) > 0 {
			slices.Sort(lat)
			r.samples = len(lat)
			r.p50 = lat[len(lat)/2].Round(100 * time.Microsecond)
			r.p99 = lat[len(lat)*99/100].Round(100 * time.Microsecond)
		}
		out[i] = r
	}
	return out, nil
}

// replicaSample is a replica's counters at one moment.
type replicaSample struct {
	records, bytes map[string]float64 // by purpose
	cpu            float64            // seconds
}

func sampleReplica(l *livetail) replicaSample {
	var names []string
	for _, p := range purposes {
		names = append(names, `livetail_kafka_read_records_total{purpose="`+p+`"}`, `livetail_kafka_read_bytes_total{purpose="`+p+`"}`)
	}
	vs := proc.Metrics(l.metrics, names...) // labelled ones as the exposition writes them
	s := replicaSample{records: map[string]float64{}, bytes: map[string]float64{}, cpu: l.cpuSeconds()}
	for _, p := range purposes {
		s.records[p] = vs[`livetail_kafka_read_records_total{purpose="`+p+`"}`]
		s.bytes[p] = vs[`livetail_kafka_read_bytes_total{purpose="`+p+`"}`]
	}
	return s
}

// scaleClient is a live tail client of one job on one replica. Its reader
// owns latencies until close returns.
type scaleClient struct {
	replica   int
	job       int
	conn      *websocket.Conn
	measuring atomic.Bool
	lines     atomic.Int64 // lines received since it joined
	latencies []time.Duration
	done      chan struct{}
	closeOnce sync.Once
}

// dialScaleClient opens a live tail of job j on replica i and returns once
// it has joined (caught_up), so that every line produced after reaches it.
func dialScaleClient(ctx context.Context, addr string, i, j int) (*scaleClient, error) {
	conn, err := dialTail(ctx, addr, jobName(j))
	if err != nil {
		return nil, err
	}
	c := &scaleClient{replica: i, job: j, conn: conn, done: make(chan struct{})}
	go c.read()
	return c, nil
}

// read counts the lines of each frame and, while measuring, the latency of
// each from the append time its line starts with.
func (c *scaleClient) read() {
	defer close(c.done)
	for {
		_, data, err := c.conn.Read(context.Background())
		if err != nil {
			return
		}
		now := time.Now().UnixNano()
		n := 0
		for rest := string(data); ; n++ {
			i := strings.Index(rest, `"line":"`)
			if i < 0 {
				break
			}
			rest = rest[i+len(`"line":"`):]
			if !c.measuring.Load() {
				continue
			}
			if j := strings.IndexByte(rest, ' '); j > 0 {
				if ts, err := strconv.ParseInt(rest[:j], 10, 64); err == nil {
					c.latencies = append(c.latencies, time.Duration(now-ts))
				}
			}
		}
		c.lines.Add(int64(n))
	}
}

// close closes the connection and waits for the reader.
func (c *scaleClient) close() {
	c.closeOnce.Do(func() {
		c.conn.CloseNow()
		<-c.done
	})
}

// dialTail opens a live tail of job on livetail at addr and reads up to
// its caught_up frame.
func dialTail(ctx context.Context, addr, job string) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+addr+"/api/v1/tail?job="+job, nil)
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(16 << 20)
	for {
		_, data, err := c.Read(ctx)
		if err != nil {
			c.CloseNow()
			return nil, err
		}
		if strings.Contains(string(data), `"type":"caught_up"`) {
			return c, nil
		}
	}
}

// scaleProducer writes rate lines/s round the jobs, in 10 ms rounds; each
// line starts with its append time in nanoseconds. It also writes the jobs
// catalogue again every catalogueInterval, as transfer would.
type scaleProducer struct {
	prod          sarama.AsyncProducer
	records       atomic.Int64
	bytes         atomic.Int64
	watchedBytes  atomic.Int64   // to job-0's partition
	perJob        []atomic.Int64 // lines of each job acknowledged or in flight
	cancel        context.CancelFunc
	wg            sync.WaitGroup
	stopOnce      sync.Once
	errorsDrained chan struct{}
}

func startScaleProducer(s *backends.Stack, jobs, rate, lineBytes int) (*scaleProducer, error) {
	cfg := sarama.NewConfig()
	cfg.Producer.RequiredAcks = sarama.WaitForLocal
	cfg.Producer.Flush.Frequency = 2 * time.Millisecond
	cfg.Producer.Flush.Messages = 200
	prod, err := sarama.NewAsyncProducer(s.KafkaAddrs(), cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &scaleProducer{prod: prod, perJob: make([]atomic.Int64, jobs), errorsDrained: make(chan struct{}), cancel: cancel}
	hash := sarama.NewHashPartitioner("logs")
	partitionOf := func(job string) int32 {
		part, _ := hash.Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(job)}, int32(s.Partitions()))
		return part
	}
	watched := partitionOf(jobName(0))
	onWatched := make([]bool, jobs)
	for i := range onWatched {
		onWatched[i] = partitionOf(jobName(i)) == watched
	}
	// The catalogue moves as transfer keeps it: every job written again
	// every interval while its lines come.
	p.wg.Go(func() {
		tick := time.NewTicker(catalogueInterval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if err := writeCatalogue(s.KafkaAddrs(), jobs, int32(s.Partitions())); err != nil {
				progress("scale: writing the jobs catalogue: %v", err)
			}
		}
	})
	go func() {
		defer close(p.errorsDrained)
		for e := range prod.Errors() {
			if j, ok := e.Msg.Metadata.(int); ok {
				p.perJob[j].Add(-1) // not written: nobody can get it
			}
		}
	}()
	p.wg.Go(func() {
		pad := strings.Repeat("x", max(0, lineBytes-20))
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		n, owed := 0, 0.0
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			owed += float64(rate) / 100
			for ; owed >= 1; owed-- {
				j := n % jobs
				job := jobName(j)
				n++
				rec := record.Record{
					Timestamp: time.Now(), Job: job, Message: strconv.FormatInt(time.Now().UnixNano(), 10) + " " + pad,
					Host: record.Host{Name: "bench"}, Agent: record.Agent{Name: "bench"},
					Log: record.Log{File: record.File{Path: "/var/log/bench.log"}, Offset: int64(n)},
				}
				value := rec.AppendJSON(nil)
				p.perJob[j].Add(1)
				prod.Input() <- &sarama.ProducerMessage{Topic: "logs", Key: sarama.StringEncoder(job), Value: sarama.ByteEncoder(value), Metadata: j}
				size := int64(len(job) + len(value))
				p.records.Add(1)
				p.bytes.Add(size)
				if onWatched[j] {
					p.watchedBytes.Add(size)
				}
			}
		}
	})
	return p, nil
}

// stop stops producing and returns once every line is acknowledged or failed.
func (p *scaleProducer) stop() {
	p.stopOnce.Do(func() {
		p.cancel()
		p.wg.Wait()
		p.prod.AsyncClose()
		<-p.errorsDrained
	})
}

const (
	// jobsTopic is livetail's default --jobs-topic.
	jobsTopic = "logs.jobs"
	// catalogueInterval is transfer's default --jobs-interval.
	catalogueInterval = 10 * time.Second
)

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
		job := jobName(i)
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
