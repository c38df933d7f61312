// Command latency measures how long a line appended to a tailed file
// takes to reach a WebSocket client of livetail, with the real agent and
// livetail binaries on their default flags (only addresses, names and the
// state directory are given).
//
//	go run ./bench/latency                      # 3 rounds: 300 lines at 20–400 ms, then 10,000 lines/s for 10 s
//	go run ./bench/latency -agent-bin /tmp/old/agent -rounds 1
//	go run ./bench/latency -backends real        # on Apache Kafka instead of kfake
//
// It starts etcd and the kfake broker in its own process (devstack/backends),
// or with -backends real an Apache Kafka JVM of its own,
// builds and starts the agent and livetail, opens a tail session for the
// job, and appends lines (one write per line, as a logger does) that carry
// their append time. For every line it records three latencies from the
// append: to the agent's read (the record's @timestamp, the `ts` of the
// entry), to a Kafka consumer of the topic (franz-go, in this process), and
// to the WebSocket client. It prints one row per round and phase, then the
// median of the rounds, and the load average before and after.
package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/twmb/franz-go/pkg/kgo"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/logpipe/logpipe/common/keys"
	"github.com/logpipe/logpipe/devstack/backends"
	"github.com/logpipe/logpipe/devstack/proc"
)

const job = "latency"

func main() {
	var o options
	flag.StringVar(&o.agentBin, "agent-bin", "", "agent binary to measure (default: build ./agent)")
	flag.StringVar(&o.livetailBin, "livetail-bin", "", "livetail binary (default: build ./livetail)")
	flag.IntVar(&o.lowLines, "low-lines", 300, "lines of the low-rate phase")
	flag.DurationVar(&o.lowMin, "low-min", 20*time.Millisecond, "shortest pause between two lines of the low-rate phase")
	flag.DurationVar(&o.lowMax, "low-max", 400*time.Millisecond, "longest pause between two lines of the low-rate phase")
	flag.IntVar(&o.rate, "rate", 10000, "lines per second of the high-rate phase (0 skips it)")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "length of the high-rate phase")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds of both phases; the median of the rounds is printed too")
	flag.StringVar(&o.agentArgs, "agent-args", "", "extra agent flags, space-separated")
	flag.StringVar(&o.backends, "backends", backends.Embedded, "Kafka to run on: embedded (kfake, in this process) or real (Apache Kafka in a JVM, needs Java and the jars of make test)")
	flag.StringVar(&o.cpuProfile, "cpu-profile", "", "write a CPU profile of the agent during the first high-rate phase to this file (runs the agent with --pprof)")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "latencybench:", err)
		os.Exit(1)
	}
}

type options struct {
	agentBin, livetailBin string
	lowLines              int
	lowMin, lowMax        time.Duration
	rate                  int
	duration              time.Duration
	rounds                int
	agentArgs             string
	cpuProfile            string
	backends              string
}

func run(o options) error {
	if o.lowMax < o.lowMin || o.lowMin < 0 {
		return fmt.Errorf("-low-min %v and -low-max %v: want 0 ≤ min ≤ max", o.lowMin, o.lowMax)
	}
	work, err := os.MkdirTemp("", "latencybench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if o.agentBin == "" {
		if o.agentBin, err = proc.BuildCommand(work, "agent"); err != nil {
			return err
		}
	}
	if o.livetailBin == "" {
		if o.livetailBin, err = proc.BuildCommand(work, "livetail"); err != nil {
			return err
		}
	}
	loadBefore := proc.LoadAvg()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := backends.Start(ctx, backends.Options{Backends: o.backends, Without: []string{backends.ES}})
	if err != nil {
		return err
	}
	defer s.Close()
	brokers := s.KafkaAddrs()[0]

	cli, err := clientv3.New(clientv3.Config{Endpoints: s.EtcdEndpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer cli.Close()
	file := filepath.Join(work, "app.log")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		return err
	}
	const name = "latency-bench"
	if _, err := cli.Put(ctx, keys.AgentConfig(name), fmt.Sprintf(`[{"path":%q,"job":%q}]`, file, job)); err != nil {
		return err
	}

	livetail, httpAddr, _, err := proc.StartLivetail(o.livetailBin, brokers)
	if err != nil {
		return err
	}
	defer livetail.Terminate(10 * time.Second)
	agentArgs := strings.Fields(o.agentArgs)
	if o.cpuProfile != "" {
		agentArgs = append(agentArgs, "--pprof")
	}
	agent, agentAddr, err := proc.StartAgent(o.agentBin, name, s.EtcdEndpoints()[0], brokers, filepath.Join(work, "state"), agentArgs...)
	if err != nil {
		return err
	}
	defer agent.Terminate(10 * time.Second)

	c := newCollector()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	kc, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ConsumeTopics("logs"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()))
	if err != nil {
		return err
	}
	defer kc.Close()
	wg.Go(func() { consumeKafka(ctx, kc, c) })
	wsErr := make(chan error, 1)
	wg.Go(func() { wsErr <- follow(ctx, httpAddr, c) })

	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	w := &writer{f: f, c: c}
	if err := w.warmUp(wsErr); err != nil {
		return fmt.Errorf("%w\nagent:\n%s\nlivetail:\n%s", err, agent.Output(), livetail.Output())
	}

	var rows []row
	for round := 1; round <= o.rounds; round++ {
		phases := []struct {
			name  string
			write func(phase string) int
		}{
			{fmt.Sprintf("low: %d lines, %v–%v apart", o.lowLines, o.lowMin, o.lowMax), func(p string) int {
				return w.low(p, o.lowLines, o.lowMin, o.lowMax)
			}},
		}
		if o.rate > 0 {
			phases = append(phases, struct {
				name  string
				write func(phase string) int
			}{fmt.Sprintf("%d lines/s for %v", o.rate, o.duration), func(p string) int { return w.steady(p, o.rate, o.duration) }})
		}
		for i, ph := range phases {
			tag := fmt.Sprintf("r%dp%d", round, i)
			fmt.Fprintf(os.Stderr, "round %d: %s...\n", round, ph.name)
			cpu0 := proc.CPUSeconds(agent.Pid())
			start := time.Now()
			if o.cpuProfile != "" && round == 1 && i == 1 {
				wg.Go(func() { profile(agentAddr, o.cpuProfile, o.duration) })
			}
			n := w.writeAll(tag, ph.write)
			c.wait(tag, n, 30*time.Second)
			wall := time.Since(start)
			r := c.row(tag, n)
			r.round, r.phase = round, ph.name
			r.agentCPU = (proc.CPUSeconds(agent.Pid()) - cpu0) / wall.Seconds()
			rows = append(rows, r)
		}
	}
	select {
	case err := <-wsErr:
		return fmt.Errorf("the WebSocket session ended: %w", err)
	default:
	}
	printTable(os.Stdout, rows, o, loadBefore, proc.LoadAvg())
	for _, r := range rows {
		if lost := r.lines - r.received - r.dropped; lost > 0 {
			return fmt.Errorf("round %d, %s: %d of %d lines never reached the client, and no dropped frame announced them", r.round, r.phase, lost, r.lines)
		}
	}
	return nil
}

// A line is "lat <tag> <seq> <append time, Unix ns> <padding>".
func lineText(tag string, seq int, at time.Time) string {
	return fmt.Sprintf("lat %s %d %d GET /api/v1/items?page=%d 200 %s", tag, seq, at.UnixNano(), seq%97, pad)
}

var pad = strings.Repeat("x", 80) // lines of about 150 bytes

// parseLine returns the key ("<tag> <seq>") and the append time of a line.
func parseLine(s string) (key string, at time.Time, ok bool) {
	f := strings.Fields(s)
	if len(f) < 4 || f[0] != "lat" {
		return "", time.Time{}, false
	}
	ns, err := strconv.ParseInt(f[3], 10, 64)
	if err != nil {
		return "", time.Time{}, false
	}
	return f[1] + " " + f[2], time.Unix(0, ns), true
}

// writer appends lines to the tailed file, one write per line.
type writer struct {
	f *os.File
	c *collector
}

func (w *writer) line(tag string, seq int) {
	now := time.Now()
	w.c.appended(tag+" "+strconv.Itoa(seq), now)
	if _, err := w.f.WriteString(lineText(tag, seq, now) + "\n"); err != nil {
		panic(err) // the harness's own temporary file
	}
}

func (w *writer) writeAll(tag string, write func(string) int) int { return write(tag) }

// warmUp appends a line every 100 ms until the client has one, so that
// the measured lines find every connection open.
func (w *writer) warmUp(wsErr <-chan error) error {
	deadline := time.Now().Add(2 * time.Minute)
	for i := 0; time.Now().Before(deadline); i++ {
		w.line("warm", i)
		select {
		case err := <-wsErr:
			return fmt.Errorf("the WebSocket session ended: %w", err)
		case <-time.After(100 * time.Millisecond):
		}
		if w.c.clientCount("warm") > 0 {
			time.Sleep(time.Second)
			return nil
		}
	}
	return errors.New("no line reached the WebSocket client within 2 minutes")
}

// low appends n lines with random pauses between lo and hi.
func (w *writer) low(tag string, n int, lo, hi time.Duration) int {
	for i := range n {
		time.Sleep(lo + rand.N(hi-lo+1))
		w.line(tag, i)
	}
	return n
}

// steady appends rate lines per second for d, each line written when it
// is due (checked every millisecond).
func (w *writer) steady(tag string, rate int, d time.Duration) int {
	start := time.Now()
	n := 0
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for {
		el := time.Since(start)
		if el >= d {
			return n
		}
		due := int(el.Seconds() * float64(rate))
		for ; n < due; n++ {
			w.line(tag, n)
		}
		<-t.C
	}
}

// collector keeps, per line, when it was appended, read by the agent, seen
// by the Kafka consumer and received by the WebSocket client.
type collector struct {
	mu      sync.Mutex
	lines   map[string]*times
	dropped int // lines livetail announced it left out
	wake    chan struct{}
}

type times struct {
	append, read, kafka, client time.Time
}

func newCollector() *collector {
	return &collector{lines: make(map[string]*times), wake: make(chan struct{}, 1)}
}

func (c *collector) get(key string) *times {
	t := c.lines[key]
	if t == nil {
		t = &times{}
		c.lines[key] = t
	}
	return t
}

func (c *collector) appended(key string, at time.Time) {
	c.mu.Lock()
	c.get(key).append = at
	c.mu.Unlock()
}

func (c *collector) sawKafka(key string, at time.Time) {
	c.mu.Lock()
	if t := c.get(key); t.kafka.IsZero() {
		t.kafka = at
	}
	c.mu.Unlock()
}

func (c *collector) sawClient(key string, read, at time.Time) {
	c.mu.Lock()
	if t := c.get(key); t.client.IsZero() {
		t.client, t.read = at, read
	}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *collector) clientCount(tag string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for k, t := range c.lines {
		if strings.HasPrefix(k, tag+" ") && !t.client.IsZero() {
			n++
		}
	}
	return n
}

// wait returns once the client has n lines of tag, or after limit.
func (c *collector) wait(tag string, n int, limit time.Duration) {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for c.clientCount(tag) < n {
		select {
		case <-c.wake:
		case <-deadline.C:
			return
		}
	}
}

// row is one phase of one round: p50, p99 and max of each latency.
type row struct {
	round                  int
	phase                  string
	lines, received        int
	dropped                int
	agentCPU               float64 // cores, on average over the phase
	readQ, kafkaQ, clientQ [3]time.Duration
}

func (c *collector) row(tag string, n int) row {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := row{lines: n, dropped: c.dropped}
	c.dropped = 0
	var read, kafka, client []time.Duration
	for k, t := range c.lines {
		if !strings.HasPrefix(k, tag+" ") {
			continue
		}
		if !t.read.IsZero() {
			read = append(read, t.read.Sub(t.append))
		}
		if !t.kafka.IsZero() {
			kafka = append(kafka, t.kafka.Sub(t.append))
		}
		if !t.client.IsZero() {
			r.received++
			client = append(client, t.client.Sub(t.append))
		}
		delete(c.lines, k)
	}
	r.readQ, r.kafkaQ, r.clientQ = quantiles(read), quantiles(kafka), quantiles(client)
	return r
}

// quantiles returns p50, p99 and max.
func quantiles(d []time.Duration) [3]time.Duration {
	if len(d) == 0 {
		return [3]time.Duration{}
	}
	slices.Sort(d)
	at := func(q float64) time.Duration { return d[min(int(q*float64(len(d))), len(d)-1)] }
	return [3]time.Duration{at(0.50), at(0.99), d[len(d)-1]}
}

// consumeKafka notes when each line's record reaches a consumer.
func consumeKafka(ctx context.Context, kc *kgo.Client, c *collector) {
	for ctx.Err() == nil {
		fs := kc.PollFetches(ctx)
		now := time.Now()
		fs.EachRecord(func(r *kgo.Record) {
			if string(r.Key) != job {
				return
			}
			var v struct {
				Message string `json:"message"`
			}
			if json.Unmarshal(r.Value, &v) != nil {
				return
			}
			if key, _, ok := parseLine(v.Message); ok {
				c.sawKafka(key, now)
			}
		})
	}
}

// follow reads the job's live entries from livetail until ctx ends.
func follow(ctx context.Context, addr string, c *collector) error {
	q := url.Values{"job": {job}}
	conn, _, err := websocket.Dial(ctx, "ws://"+addr+"/api/v1/tail?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	defer conn.CloseNow()
	conn.SetReadLimit(64 << 20)
	for {
		_, data, err := conn.Read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		now := time.Now()
		var f struct {
			Type    string `json:"type"`
			Count   int    `json:"count"`
			Entries []struct {
				TS   time.Time `json:"ts"`
				Line string    `json:"line"`
			} `json:"entries"`
		}
		if err := json.Unmarshal(data, &f); err != nil {
			return fmt.Errorf("frame %.200q: %w", data, err)
		}
		switch f.Type {
		case "dropped":
			c.mu.Lock()
			c.dropped += f.Count
			c.mu.Unlock()
		case "entries":
			for _, e := range f.Entries {
				if key, _, ok := parseLine(e.Line); ok {
					c.sawClient(key, e.TS, now)
				}
			}
		}
	}
}

// profile writes a CPU profile of the agent over d to file.
func profile(addr, file string, d time.Duration) {
	if err := proc.SaveProfile(addr, fmt.Sprintf("profile?seconds=%d", max(int(d.Seconds())-1, 1)), file); err != nil {
		fmt.Fprintln(os.Stderr, "CPU profile:", err)
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }

func printTable(out *os.File, rows []row, o options, before, after string) {
	w := bufio.NewWriter(out)
	defer w.Flush()
	broker := "kfake broker in-process"
	if o.backends == backends.Real {
		broker = "Apache Kafka in a JVM"
	}
	fmt.Fprintf(w, "append → WebSocket client, agent and livetail on default flags, %s; load average before %s, after %s\n\n", broker, before, after)
	fmt.Fprintln(w, "| round | phase | lines | received | dropped | read p50 / p99 ms | Kafka consumer p50 / p99 ms | client p50 ms | client p99 ms | client max ms | agent CPU (cores) |")
	fmt.Fprintln(w, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	line := func(r row, round string) {
		fmt.Fprintf(w, "| %s | %s | %d | %d | %d | %s / %s | %s / %s | %s | %s | %s | %.2f |\n",
			round, r.phase, r.lines, r.received, r.dropped, ms(r.readQ[0]), ms(r.readQ[1]),
			ms(r.kafkaQ[0]), ms(r.kafkaQ[1]), ms(r.clientQ[0]), ms(r.clientQ[1]), ms(r.clientQ[2]), r.agentCPU)
	}
	for _, r := range rows {
		line(r, strconv.Itoa(r.round))
	}
	if o.rounds < 2 {
		return
	}
	// The median of the rounds, figure by figure.
	byPhase := map[string][]row{}
	var order []string
	for _, r := range rows {
		if _, ok := byPhase[r.phase]; !ok {
			order = append(order, r.phase)
		}
		byPhase[r.phase] = append(byPhase[r.phase], r)
	}
	for _, p := range order {
		rs := byPhase[p]
		med := func(f func(row) time.Duration) time.Duration {
			v := make([]time.Duration, len(rs))
			for i, r := range rs {
				v[i] = f(r)
			}
			slices.SortFunc(v, cmp.Compare)
			return v[len(v)/2]
		}
		cpu := make([]float64, len(rs))
		lines, received, dropped := 0, 0, 0
		for i, r := range rs {
			cpu[i] = r.agentCPU
			lines, received, dropped = lines+r.lines, received+r.received, dropped+r.dropped
		}
		slices.Sort(cpu)
		m := row{phase: p, lines: lines, received: received, dropped: dropped, agentCPU: cpu[len(cpu)/2]}
		m.readQ = [3]time.Duration{med(func(r row) time.Duration { return r.readQ[0] }), med(func(r row) time.Duration { return r.readQ[1] }), 0}
		m.kafkaQ = [3]time.Duration{med(func(r row) time.Duration { return r.kafkaQ[0] }), med(func(r row) time.Duration { return r.kafkaQ[1] }), 0}
		m.clientQ = [3]time.Duration{med(func(r row) time.Duration { return r.clientQ[0] }), med(func(r row) time.Duration { return r.clientQ[1] }), med(func(r row) time.Duration { return r.clientQ[2] })}
		line(m, "median")
	}
}
