// Command bench measures livetail's fan-out and the memory of idle
// connections, and prints a table. It starts devstack's Kafka in-process,
// builds livetail and runs it as a child process (so that its CPU time and
// resident memory are its own), and runs the producers and WebSocket clients
// itself.
//
//	go run ./bench/livetail
//
// Fan-out: -clients clients spread over -jobs jobs while producers write
// lines at each of -rates lines/s in total, one livetail per rate; latency
// is from the producer's timestamp in the line to the client's receipt.
// Beside it, a consumer with livetail's fetch settings reads the same
// records from Kafka: the Kafka hop, the floor of livetail's latency. Each
// rate reports how much pacing engaged (frames held back, sessions paced),
// and the table is followed by the load at which pacing started. With
// -backends real, the fan-out runs on an Apache Kafka of its own.
// Idle: -idle connections on quiet jobs, held for -idle-hold: livetail's
// resident memory, heap, stacks and goroutines per connection at the start
// of the hold and after each minute, and its CPU (idle.go). -full runs the
// full set: rates from 1,000 to 80,000 lines/s and a 3-minute hold.
//
// Scale: -scale-replicas replicas (one with no client, one watching one
// job, one watching every job, and round again) read the topic at
// -scale-rate lines/s, then at -scale-low-rate, in modes --consume all and
// watched; -backends real runs it on an Apache Kafka of its own. It reports
// what each read from Kafka, its CPU and its clients' latency (scale.go).
// -cases picks the cases to run.
//
// With -profile DIR, livetail runs with --pprof and the harness saves its
// CPU profile of each rate's measuring time (fanout-RATE-cpu.pprof) and its
// heap and goroutine profiles with the idle connections open
// (idle-heap.pprof, idle-goroutine.pprof) into DIR, for `go tool pprof`,
// and its own CPU profile of each rate (harness-RATE-cpu.pprof).
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/coder/websocket"
	"github.com/rcrowley/go-metrics"

	"github.com/logpipe/logpipe/common/record"
	"github.com/logpipe/logpipe/devstack/backends"
	"github.com/logpipe/logpipe/devstack/proc"
)

func main() {
	clients := flag.Int("clients", 1000, "fan-out clients")
	jobs := flag.Int("jobs", 100, "jobs the clients and lines are spread over")
	rates := flag.String("rates", "2000,10000,20000", "comma-separated lines per second produced in total, one fan-out run each")
	warmup := flag.Duration("warmup", 5*time.Second, "fan-out time before measuring")
	measure := flag.Duration("measure", 10*time.Second, "fan-out measuring time per rate")
	idle := flag.Int("idle", 10000, "idle connections")
	idleHold := flag.Duration("idle-hold", 30*time.Second, "how long the idle connections are held")
	full := flag.Bool("full", false, "the full run: rates 1000 to 80000 lines/s, 20s each, and a 3-minute idle hold")
	lineBytes := flag.Int("line-bytes", 120, "bytes of each produced line")
	flag.IntVar(&scale.jobs, "scale-jobs", 100, "scale: busy jobs")
	flag.IntVar(&scale.rate, "scale-rate", 4000, "scale: lines per second produced in total")
	flag.DurationVar(&scale.measure, "scale-measure", 15*time.Second, "scale: measuring time per mode")
	cases := flag.String("cases", "fanout,idle,scale", "comma-separated cases to run: fanout, idle, scale")
	flag.Func("livetail-flags", "more flags for livetail, space-separated (e.g. \"--batch-wait 5ms\")", func(v string) error {
		livetailFlags = strings.Fields(v)
		return nil
	})
	flag.StringVar(&profileDir, "profile", "", "directory to save livetail's CPU profile of the fan-out and heap and goroutine profiles of the idle connections into")
	flag.Parse()
	if *full {
		*rates, *measure, *idleHold = "1000,2000,5000,10000,20000,40000,80000", 20*time.Second, 3*time.Minute
	}
	var rateList []int
	for _, r := range strings.Split(*rates, ",") {
		n, err := strconv.Atoi(r)
		if err != nil || n < 100 {
			fmt.Fprintf(os.Stderr, "bench: -rates: %q is not a rate of 100 lines/s or more\n", r)
			os.Exit(2)
		}
		rateList = append(rateList, n)
	}
	metrics.UseNilMetrics = true
	debug.SetGCPercent(400) // the harness shares the machine with livetail: spend less of it collecting
	if err := raiseFileLimit(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
	}
	for _, c := range strings.Split(*cases, ",") {
		if c != "fanout" && c != "idle" && c != "scale" {
			fmt.Fprintf(os.Stderr, "bench: -cases: unknown case %q (want fanout, idle, scale)\n", c)
			os.Exit(2)
		}
		run[c] = true
	}
	if err := runCases(*clients, *jobs, rateList, *warmup, *measure, *idle, *idleHold, *lineBytes); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

var (
	// profileDir is -profile: where to save livetail's profiles ("" for none).
	profileDir string
	// livetailFlags are -livetail-flags.
	livetailFlags []string
	// run holds the cases -cases names.
	run = map[string]bool{}
	// scale holds the scale case's flags.
	scale struct {
		jobs, rate int
		measure    time.Duration
	}
)

func runCases(clients, jobs int, rates []int, warmup, measure time.Duration, idle int, idleHold time.Duration, lineBytes int) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := backends.Start(ctx, backends.Options{Without: []string{backends.Etcd, backends.ES}})
	if err != nil {
		return err
	}
	defer s.Close()
	dir, err := os.MkdirTemp("", "livetail-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if profileDir != "" {
		if err := os.MkdirAll(profileDir, 0o755); err != nil {
			return err
		}
	}
	bin, err := proc.BuildCommand(dir, "livetail")
	if err != nil {
		return err
	}

	fmt.Printf("livetail benchmark: %d cores, Kafka %s (kfake, in the harness process), %d partitions\n\n",
		numCPU(), s.KafkaAddrs()[0], s.Partitions())
	busy, busyName := s, "kfake" // the Kafka of the fan-out, idle and scale cases
	if scaleOpts.backends == backends.Real && (run["fanout"] || run["idle"] || run["scale"]) {
		progress("starting Apache Kafka for the fan-out, idle and scale cases")
		rs, err := backends.Start(ctx, backends.Options{Backends: backends.Real, Without: []string{backends.Etcd, backends.ES}})
		if err != nil {
			return fmt.Errorf("real backends: %w", err)
		}
		defer rs.Close()
		busy, busyName = rs, "Apache Kafka"
		fmt.Printf("fan-out, idle and scale on Apache Kafka %s, %d partitions\n\n", rs.KafkaAddrs()[0], rs.Partitions())
	}

	var fans []fanResult
	var idleRes idleResult
	var scaled []scaleResult
	if run["fanout"] {
		for _, rate := range rates {
			fan, err := fanOut(ctx, bin, busy, clients, jobs, rate, warmup, measure, lineBytes)
			if err != nil {
				return fmt.Errorf("fan-out at %d lines/s: %w", rate, err)
			}
			fans = append(fans, fan)
		}
	}
	if run["idle"] {
		if idleRes, err = idleConns(ctx, bin, busy, busyName, idle, idleHold); err != nil {
			return fmt.Errorf("idle: %w", err)
		}
	}
	if run["scale"] {
		if scaled, err = scaleCase(ctx, bin, busy, scale.jobs, scale.rate, scale.measure, lineBytes); err != nil {
			return fmt.Errorf("scale: %w", err)
		}
	}
	printFanOut(clients, jobs, fans)
	printIdle(idleRes)
	printScale(scaled, busy.Partitions(), scale.jobs, scale.rate)
	return nil
}

// printFanOut prints the fan-out case's table, a row per rate.
func printFanOut(clients, jobs int, fans []fanResult) {
	if !run["fanout"] {
		return
	}
	fmt.Printf("fan-out: %d clients, %d jobs of %d clients each, on %s\n\n", clients, jobs, clients/jobs, kafkaName())
	fmt.Println("| lines/s (target) | entries/s | Kafka hop p50 / p99 | livetail p50 / p99 / max | frames/s (entries per frame) | frames held by pacing | sessions paced (most) | gap at the end | dropped | livetail CPU | harness / other CPU | load average |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, f := range fans {
		fmt.Printf("| %.0f (%d) | %.0f | %v / %v | %v / %v / %v | %.0f (%.1f) | %.0f/s (%.2f%%) | %d | %v | %d | %.0f%% | %.0f%% / %.0f%% | %s |\n",
			f.produced, f.rate, f.delivered, f.hop50, f.hop99, f.p50, f.p99, f.max,
			f.frames, f.delivered/max(1, f.frames), f.held, 100*f.held/max(1, f.frames), f.pacedMax,
			f.gap.Round(100*time.Microsecond), f.dropped, f.cpu*100, f.harnessCPU*100, max(0, f.otherCPU)*100, f.load)
	}
	fmt.Printf("\npacing threshold: %s\n\n", paceThreshold(fans))
}

// paceThreshold says at which load pacing started: between the highest
// rate below the first one that held frames back or paced a session, and
// that rate.
func paceThreshold(fans []fanResult) string {
	sorted := slices.Clone(fans)
	slices.SortFunc(sorted, func(a, b fanResult) int { return a.rate - b.rate })
	for i, f := range sorted {
		if f.held == 0 && f.pacedMax == 0 {
			continue
		}
		at := fmt.Sprintf("%d lines/s (%.0f frames held/s, %d sessions paced at most)", f.rate, f.held, f.pacedMax)
		if i == 0 {
			return "paced from the lowest rate measured, " + at
		}
		return fmt.Sprintf("not paced up to %d lines/s; paced from %s", sorted[i-1].rate, at)
	}
	if len(sorted) == 0 {
		return "no rate measured"
	}
	return fmt.Sprintf("not paced at any rate measured, up to %d lines/s", sorted[len(sorted)-1].rate)
}

// kafkaName names the Kafka of the fan-out and scale cases.
func kafkaName() string {
	if scaleOpts.backends == backends.Real {
		return "Apache Kafka"
	}
	return "kfake"
}

// livetail is the child process.
type livetail struct {
	p       *proc.Process
	addr    string
	metrics string // --metrics-addr
}

// startLivetail runs livetail on ports the kernel picks and waits until it
// is ready.
func startLivetail(bin string, s *backends.Stack, extra ...string) (*livetail, error) {
	args := append([]string{
		"--max-conns", "20000", "--max-conns-per-user", "20000", "--jobs-scan", "0",
	}, extra...)
	args = append(args, livetailFlags...)
	if profileDir != "" {
		args = append(args, "--pprof")
	}
	p, addr, metrics, err := proc.StartLivetail(bin, s.KafkaAddrs()[0], args...)
	if err != nil {
		return nil, err
	}
	return &livetail{p: p, addr: addr, metrics: metrics}, nil
}

func (l *livetail) stop() { l.p.Terminate(30 * time.Second) }

// profile saves livetail's profile named by path (under /debug/pprof/, with
// its query) as file in the -profile directory; it does nothing without
// -profile. A CPU profile takes as long as its seconds parameter says.
func (l *livetail) profile(path, file string) error {
	if profileDir == "" {
		return nil
	}
	return proc.SaveProfile(l.metrics, path, filepath.Join(profileDir, file))
}

// cpuSeconds is the process's user + system CPU time.
func (l *livetail) cpuSeconds() float64 { return proc.CPUSeconds(l.p.Pid()) }

// memory returns VmRSS and VmHWM in bytes.
func (l *livetail) memory() (rss, peak int64) { return proc.RSS(l.p.Pid()) }

// metric is the value of a metric without labels; -1 when livetail does
// not report it.
func (l *livetail) metric(name string) float64 {
	if v, ok := proc.Metric(l.metrics, name); ok {
		return v
	}
	return -1
}

type fanResult struct {
	rate                int // target lines/s
	produced, delivered float64
	frames              float64 // entries frames received per second
	p50, p99, max       time.Duration
	cpu                 float64
	rss, peak           int64
	dropped             int64
	harnessCPU          float64
	otherCPU            float64 // the machine's other processes
	gap                 time.Duration
	load                string
	hop50, hop99        time.Duration // the Kafka hop alone
	held                float64       // entries frames held back by pacing per second
	pacedMax            int           // the most sessions paced at once, sampled
}

func fanOut(ctx context.Context, bin string, s *backends.Stack, clients, jobs, rate int, warmup, measure time.Duration, lineBytes int) (fanResult, error) {
	res := fanResult{rate: rate}
	l, err := startLivetail(bin, s)
	if err != nil {
		return res, err
	}
	defer l.stop()

	// Clients: clients/jobs per job.
	var measuring atomic.Bool
	var delivered, frames atomic.Int64
	lat := make([][]time.Duration, clients)
	conns := make([]*websocket.Conn, clients)
	var wg sync.WaitGroup
	// The clients read without a context (a cancellable one costs the
	// WebSocket library a timer registration per message, which would
	// count against the machine livetail runs on); closing their
	// connections stops them.
	stopClients := func() {
		for _, c := range conns {
			if c != nil {
				c.CloseNow()
			}
		}
	}
	defer stopClients()
	for k := range clients {
		c, _, err := websocket.Dial(ctx, "ws://"+l.addr+"/api/v1/tail?job=job-"+strconv.Itoa(k%jobs), nil)
		if err != nil {
			return res, err
		}
		c.SetReadLimit(16 << 20)
		conns[k] = c
		wg.Go(func() {
			defer c.CloseNow()
			var buf bytes.Buffer
			for {
				_, r, err := c.Reader(context.Background())
				if err != nil {
					return
				}
				buf.Reset()
				if _, err := buf.ReadFrom(r); err != nil {
					return
				}
				b := buf.Bytes()
				now := time.Now().UnixNano()
				if !measuring.Load() {
					continue
				}
				n := 0
				for rest := b; ; {
					i := bytes.Index(rest, []byte(`"line":"`))
					if i < 0 {
						break
					}
					rest = rest[i+8:]
					j := bytes.IndexByte(rest, ' ')
					if ts, err := strconv.ParseInt(string(rest[:j]), 10, 64); j > 0 && err == nil {
						lat[k] = append(lat[k], time.Duration(now-ts))
					}
					n++
				}
				delivered.Add(int64(n))
				if n > 0 {
					frames.Add(1)
				}
			}
		})
	}

	progress("fan-out: %d clients connected", clients)
	stopHop, err := kafkaHop(s, &measuring)
	if err != nil {
		return res, err
	}
	defer stopHop()
	// Producers: rate lines/s in 10 ms rounds, jobs round-robin.
	cfg := sarama.NewConfig()
	cfg.Producer.Return.Successes = false
	cfg.Producer.RequiredAcks = sarama.WaitForLocal
	cfg.Producer.Flush.Frequency = 2 * time.Millisecond
	cfg.Producer.Flush.Messages = 200
	prod, err := sarama.NewAsyncProducer(s.KafkaAddrs(), cfg)
	if err != nil {
		return res, err
	}
	var produced atomic.Int64
	pctx, stopProducing := context.WithCancel(ctx)
	var pwg sync.WaitGroup
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for range prod.Errors() {
		}
	}()
	pwg.Go(func() {
		pad := strings.Repeat("x", max(0, lineBytes-20))
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		perTick := rate / 100
		n := 0
		for {
			select {
			case <-pctx.Done():
				return
			case <-tick.C:
			}
			for range perTick {
				job := "job-" + strconv.Itoa(n%jobs)
				n++
				rec := record.Record{
					Timestamp: time.Now(), Job: job,
					Message: strconv.FormatInt(time.Now().UnixNano(), 10) + " " + pad,
					Host:    record.Host{Name: "bench"}, Agent: record.Agent{Name: "bench"},
					Log: record.Log{File: record.File{Path: "/var/log/bench.log"}, Offset: int64(n)},
				}
				prod.Input() <- &sarama.ProducerMessage{Topic: "logs", Key: sarama.StringEncoder(job), Value: sarama.ByteEncoder(rec.AppendJSON(nil))}
				produced.Add(1)
			}
		}
	})

	time.Sleep(warmup)
	progress("fan-out: measuring for %v", measure)
	measuring.Store(true)
	self0, busy0 := selfCPU(), machineBusy()
	cpu0, prod0, del0, frames0, drop0 := l.cpuSeconds(), produced.Load(), delivered.Load(), frames.Load(), l.metric("livetail_entries_dropped_total")
	held0 := l.metric("livetail_frames_held_total")
	start := time.Now()
	profiled := make(chan error, 1)
	go func() {
		profiled <- l.profile(fmt.Sprintf("profile?seconds=%d", int(measure.Seconds())), fmt.Sprintf("fanout-%d-cpu.pprof", rate))
	}()
	stopSelfProfile := profileSelf(fmt.Sprintf("harness-%d-cpu.pprof", rate))
	var rssMax int64
	for time.Since(start) < measure {
		time.Sleep(500 * time.Millisecond)
		rss, _ := l.memory()
		rssMax = max(rssMax, rss)
		res.pacedMax = max(res.pacedMax, int(l.metric("livetail_sessions_paced")))
	}
	elapsed := time.Since(start).Seconds()
	measuring.Store(false)
	res.cpu = (l.cpuSeconds() - cpu0) / elapsed
	res.harnessCPU = (selfCPU() - self0) / elapsed
	res.otherCPU = (machineBusy()-busy0)/elapsed - res.cpu - res.harnessCPU
	res.load = proc.LoadAvg()
	res.produced = float64(produced.Load()-prod0) / elapsed
	res.delivered = float64(delivered.Load()-del0) / elapsed
	res.frames = float64(frames.Load()-frames0) / elapsed
	res.dropped = int64(l.metric("livetail_entries_dropped_total") - drop0)
	res.gap = time.Duration(l.metric("livetail_frame_gap_seconds") * float64(time.Second))
	res.held = (l.metric("livetail_frames_held_total") - held0) / elapsed
	_, res.peak = l.memory()
	res.rss = rssMax
	stopSelfProfile()
	if err := <-profiled; err != nil {
		progress("fan-out: %v", err)
	}
	progress("fan-out: stopping")
	stopProducing()
	pwg.Wait()
	prod.AsyncClose()
	<-drained
	stopClients()
	wg.Wait()
	res.hop50, res.hop99 = stopHop()

	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	if len(all) == 0 {
		return res, errors.New("no entries received while measuring")
	}
	slices.Sort(all)
	res.p50 = all[len(all)/2].Round(100 * time.Microsecond)
	res.p99 = all[len(all)*99/100].Round(100 * time.Microsecond)
	res.max = all[len(all)-1].Round(100 * time.Microsecond)
	return res, nil
}

// kafkaHop consumes every partition of the log topic from its end, with
// livetail's fetch wait, and records produce → consume latency while
// measuring is set: the Kafka hop alone, the floor under livetail's
// figures. stop stops it (once; later calls return the same figures) and
// returns the hop's p50 and p99.
func kafkaHop(s *backends.Stack, measuring *atomic.Bool) (stop func() (p50, p99 time.Duration), err error) {
	cfg := sarama.NewConfig()
	cfg.Consumer.MaxWaitTime = 250 * time.Millisecond // livetail's (internal/upstream)
	cfg.Consumer.Return.Errors = false
	c, err := sarama.NewConsumer(s.KafkaAddrs(), cfg)
	if err != nil {
		return nil, err
	}
	var pcs []sarama.PartitionConsumer
	var lat []time.Duration
	var mu sync.Mutex
	var wg sync.WaitGroup
	for p := range int32(s.Partitions()) {
		pc, err := c.ConsumePartition("logs", p, sarama.OffsetNewest)
		if err != nil {
			for _, pc := range pcs {
				pc.AsyncClose()
			}
			wg.Wait()
			c.Close()
			return nil, err
		}
		wg.Go(func() {
			for m := range pc.Messages() {
				now := time.Now().UnixNano()
				if !measuring.Load() {
					continue
				}
				_, rest, ok := bytes.Cut(m.Value, []byte(`"message":"`))
				ts, _, _ := bytes.Cut(rest, []byte(" "))
				if n, err := strconv.ParseInt(string(ts), 10, 64); ok && err == nil {
					mu.Lock()
					lat = append(lat, time.Duration(now-n))
					mu.Unlock()
				}
			}
		})
		pcs = append(pcs, pc)
	}
	var once sync.Once
	var p50, p99 time.Duration
	return func() (time.Duration, time.Duration) {
		once.Do(func() {
			for _, pc := range pcs {
				pc.AsyncClose()
			}
			wg.Wait()
			c.Close()
			if len(lat) > 0 {
				slices.Sort(lat)
				p50 = lat[len(lat)/2].Round(100 * time.Microsecond)
				p99 = lat[len(lat)*99/100].Round(100 * time.Microsecond)
			}
		})
		return p50, p99
	}, nil
}

// profileSelf starts a CPU profile of the harness into file in the
// -profile directory, if any, and returns the function that stops it.
func profileSelf(file string) (stop func()) {
	if profileDir == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(profileDir, file))
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		progress("harness profile: %v", err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

// selfCPU is the harness's user + system CPU time in seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// machineBusy is the CPU time, in seconds, that the machine's cores spent
// on anything but idling since boot (/proc/stat).
func machineBusy() float64 {
	b, _ := os.ReadFile("/proc/stat")
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	var busy float64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i >= 8 { // guest time is counted in user already
			break
		}
		n, _ := strconv.ParseFloat(v, 64)
		busy += n
	}
	return busy / 100 // USER_HZ
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func raiseFileLimit() error {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return err
	}
	r.Cur = r.Max
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r)
}

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return max(1, bytes.Count(b, []byte("processor\t:")))
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }
