// Command bench measures livetail's fan-out and the memory of idle
// connections, and prints a table. It starts devstack's Kafka in-process,
// builds livetail and runs it as a child process (so that its CPU time and
// resident memory are its own), and runs the producers and WebSocket clients
// itself.
//
//	go run ./bench/livetail
//
// Fan-out: -clients clients spread over -jobs jobs while producers write
// -rate lines/s in total; latency is from the producer's timestamp in the
// line to the client's receipt. Idle: -idle connections on a quiet job; the
// growth of livetail's resident memory divided by their number.
//
// Scale: two replicas read the topic while -scale-rate lines/s of
// -scale-jobs jobs are written; replica A has one client watching one job,
// B none; in mode --consume all, then watched. It reports what each read
// from Kafka and its CPU. -cases picks the cases to run.
//
// With -profile DIR, livetail runs with --pprof and the harness saves its
// CPU profile of the fan-out's measuring time (fanout-cpu.pprof) and its
// heap and goroutine profiles with the idle connections open
// (idle-heap.pprof, idle-goroutine.pprof) into DIR, for `go tool pprof`,
// and its own CPU profile of the fan-out (harness-cpu.pprof).
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
	rate := flag.Int("rate", 20000, "lines per second produced in total")
	warmup := flag.Duration("warmup", 5*time.Second, "fan-out time before measuring")
	measure := flag.Duration("measure", 20*time.Second, "fan-out measuring time")
	idle := flag.Int("idle", 10000, "idle connections")
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
	if err := runCases(*clients, *jobs, *rate, *warmup, *measure, *idle, *lineBytes); err != nil {
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

func runCases(clients, jobs, rate int, warmup, measure time.Duration, idle, lineBytes int) error {
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

	var fan fanResult
	var idleRes idleResult
	var scaled []scaleResult
	if run["fanout"] {
		if fan, err = fanOut(ctx, bin, s, clients, jobs, rate, warmup, measure, lineBytes); err != nil {
			return fmt.Errorf("fan-out: %w", err)
		}
	}
	if run["idle"] {
		if idleRes, err = idleConns(ctx, bin, s, idle); err != nil {
			return fmt.Errorf("idle: %w", err)
		}
	}
	if run["scale"] {
		if scaled, err = scaleCase(ctx, bin, s, scale.jobs, scale.rate, scale.measure, lineBytes); err != nil {
			return fmt.Errorf("scale: %w", err)
		}
	}
	printFanOutIdle(clients, jobs, rate, fan, idleRes)
	printScale(scaled, s.Partitions(), scale.jobs, scale.rate)
	return nil
}

// printFanOutIdle prints the fan-out and idle cases' table.
func printFanOutIdle(clients, jobs, rate int, fan fanResult, idleRes idleResult) {
	if !run["fanout"] && !run["idle"] {
		return
	}
	fmt.Printf("| measurement | value |\n|---|---|\n")
	if run["fanout"] {
		printFanOut(clients, jobs, rate, fan)
	}
	if run["idle"] {
		printIdle(idleRes)
	}
}

// printFanOut prints the fan-out case's rows.
func printFanOut(clients, jobs, rate int, fan fanResult) {
	fmt.Printf("| fan-out: clients / jobs | %d / %d |\n", clients, jobs)
	fmt.Printf("| fan-out: lines produced per second (target) | %.0f (%d) |\n", fan.produced, rate)
	fmt.Printf("| fan-out: entries delivered per second | %.0f (want %.0f) |\n", fan.delivered, fan.produced*float64(clients)/float64(jobs))
	fmt.Printf("| fan-out: entries frames per second (entries per frame) | %.0f (%.1f) |\n", fan.frames, fan.delivered/max(1, fan.frames))
	fmt.Printf("| fan-out: produce → receive latency p50 / p99 / max | %v / %v / %v |\n", fan.p50, fan.p99, fan.max)
	gap := "not reported"
	if fan.gap >= 0 {
		gap = fan.gap.Round(100 * time.Microsecond).String()
	}
	fmt.Printf("| fan-out: livetail's least gap between a client's frames at the end | %s |\n", gap)
	fmt.Printf("| fan-out: livetail CPU | %.0f%% of one core |\n", fan.cpu*100)
	fmt.Printf("| fan-out: livetail RSS (peak) | %s (%s) |\n", mib(fan.rss), mib(fan.peak))
	fmt.Printf("| fan-out: dropped entries | %d |\n", fan.dropped)
	fmt.Printf("| fan-out: harness CPU (Kafka, producers, clients) | %.0f%% of one core |\n", fan.harnessCPU*100)
	fmt.Printf("| fan-out: other processes' CPU (the machine is shared) | %.0f%% of one core |\n", max(0, fan.otherCPU)*100)
	fmt.Printf("| machine load average at the end of fan-out | %s |\n", fan.load)
}

// printIdle prints the idle case's rows.
func printIdle(idleRes idleResult) {
	fmt.Printf("| idle: connections | %d |\n", idleRes.conns)
	fmt.Printf("| idle: livetail RSS before / with them | %s / %s |\n", mib(idleRes.before), mib(idleRes.after))
	fmt.Printf("| idle: RSS per idle connection | %.1f KiB |\n", float64(idleRes.after-idleRes.before)/float64(idleRes.conns)/1024)
	perConn := func(before, after float64) float64 { return (after - before) / float64(idleRes.conns) / 1024 }
	fmt.Printf("| idle: per connection: goroutines / stacks / heap in use | %.1f / %.1f KiB / %.1f KiB |\n",
		(idleRes.goroutines[1]-idleRes.goroutines[0])/float64(idleRes.conns),
		perConn(idleRes.stacks[0], idleRes.stacks[1]), perConn(idleRes.heap[0], idleRes.heap[1]))
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
}

func fanOut(ctx context.Context, bin string, s *backends.Stack, clients, jobs, rate int, warmup, measure time.Duration, lineBytes int) (fanResult, error) {
	var res fanResult
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
	start := time.Now()
	profiled := make(chan error, 1)
	go func() {
		profiled <- l.profile(fmt.Sprintf("profile?seconds=%d", int(measure.Seconds())), "fanout-cpu.pprof")
	}()
	stopSelfProfile := profileSelf("harness-cpu.pprof")
	var rssMax int64
	for time.Since(start) < measure {
		time.Sleep(500 * time.Millisecond)
		rss, _ := l.memory()
		rssMax = max(rssMax, rss)
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

type idleResult struct {
	conns         int
	before, after int64 // RSS
	// Before and with the connections, from livetail's Go metrics.
	goroutines, stacks, heap [2]float64
}

// runtimeStats reads livetail's goroutines, stack bytes and heap bytes in use
// into slot i of res.
func (res *idleResult) runtimeStats(l *livetail, i int) {
	res.goroutines[i] = l.metric("go_goroutines")
	res.stacks[i] = l.metric("go_memstats_stack_inuse_bytes")
	res.heap[i] = l.metric("go_memstats_heap_inuse_bytes")
}

func idleConns(ctx context.Context, bin string, s *backends.Stack, n int) (idleResult, error) {
	res := idleResult{conns: n}
	l, err := startLivetail(bin, s)
	if err != nil {
		return res, err
	}
	defer l.stop()
	time.Sleep(2 * time.Second)
	res.before, _ = l.memory()
	res.runtimeStats(l, 0)

	conns := make([]*websocket.Conn, n)
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	sem := make(chan struct{}, 100)
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			c, _, err := websocket.Dial(ctx, "ws://"+l.addr+"/api/v1/tail?job=quiet-"+strconv.Itoa(i%100), nil)
			if err == nil {
				_, _, err = c.Read(ctx) // hello
			}
			if err == nil {
				_, _, err = c.Read(ctx) // caught_up
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			conns[i] = c
		})
	}
	wg.Wait()
	if firstErr != nil {
		return res, firstErr
	}
	progress("idle: %d clients connected", n)
	// The clients answer pings in the background.
	var rwg sync.WaitGroup
	for _, c := range conns {
		ctx := c.CloseRead(ctx)
		rwg.Go(func() { <-ctx.Done() })
	}
	for l.metric("livetail_connections") != float64(n) {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(3 * time.Second)
	res.after, _ = l.memory()
	res.runtimeStats(l, 1)
	for _, p := range []string{"heap", "goroutine"} {
		if err := l.profile(p, "idle-"+p+".pprof"); err != nil {
			return res, err
		}
	}
	for _, c := range conns {
		c.CloseNow()
	}
	rwg.Wait()
	return res, nil
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
