package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/coder/websocket"

	"github.com/logpipe/logpipe/common/conf"
	"github.com/logpipe/logpipe/common/record"
	"github.com/logpipe/logpipe/devstack/proc"
	"github.com/logpipe/logpipe/devstack/stack"
	"github.com/logpipe/logpipe/livetail/internal/wire"
)

// newKafka starts devstack's embedded Kafka (no etcd, no Elasticsearch)
// for a test.
func newKafka(t testing.TB) *stack.Stack {
	t.Helper()
	return newKafkaOf(t, stack.Options{})
}

// newKafkaOf starts a Kafka of the kind opts.Backends asks for (see
// stack.ForBackends), with topics of three partitions: on the shared real
// backends, the test's own topics (s.Topic), which testConfig and
// newProducer use.
func newKafkaOf(t testing.TB, opts stack.Options) *stack.Stack {
	t.Helper()
	opts.Without = []string{stack.Etcd, stack.ES}
	opts.Partitions = 3
	return stack.New(t, opts)
}

// testConfig is a configuration for a test server on a port the kernel
// picks (127.0.0.1:0), reading the stack's log topic.
func testConfig(s *stack.Stack) Config {
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Common.MetricsAddr = "127.0.0.1:0"
	cfg.Common.KafkaBrokers = conf.List(s.KafkaAddrs())
	cfg.Common.KafkaTopic = s.Topic("logs")
	cfg.Common.LogLevel.Value = "warning"
	cfg.Retry.Min, cfg.Retry.Max = 50*time.Millisecond, 100*time.Millisecond
	cfg.BatchWait = 5 * time.Millisecond
	// Sessions have their partitions consumed for them; tests of lines
	// found anywhere (keyless, the jobs list) consume all. auto would
	// depend on whether another test created the jobs topic.
	cfg.Consume.Value = "watched"
	// Test clients read (and so answer pings) only when the test asks for
	// a frame: with the default 5 s interval, a test slowed down by a
	// loaded machine would see its idle connections dropped. Tests of pings
	// set their own interval.
	cfg.PingInterval = time.Hour
	return cfg
}

// testServer is a running livetail.
type testServer struct {
	*server
	cancel context.CancelFunc
	done   chan error
	logs   *proc.Buffer
}

// startServer runs livetail with cfg until the test ends (or stop).
func startServer(t testing.TB, cfg Config) *testServer {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logs := &proc.Buffer{}
	s, err := newServer(context.Background(), cfg, logs)
	if err != nil {
		t.Fatalf("starting livetail: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{server: s, cancel: cancel, done: make(chan error, 1), logs: logs}
	go func() { ts.done <- s.run(ctx) }()
	t.Cleanup(func() {
		if err := ts.stop(); err != nil {
			t.Errorf("livetail: %v", err)
		}
	})
	return ts
}

// stop shuts the server down and waits for it; it may be called again.
func (ts *testServer) stop() error {
	ts.cancel()
	err, ok := <-ts.done
	if ok {
		close(ts.done)
	}
	return err
}

func (ts *testServer) url(query string) string {
	return "ws://" + ts.Addr() + "/api/v1/tail?" + query
}

// metric reads a metric of the server's registry.
func (ts *testServer) metric(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	v, err := ts.readMetric(name, labels...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// readMetric is metric for other goroutines than the test's: the value of
// the gauge or counter name with the given label pairs, 0 when it has none
// such yet.
func (ts *testServer) readMetric(name string, labels ...string) (float64, error) {
	mfs, err := ts.diag.Registry().Gather()
	if err != nil {
		return 0, err
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metrics
				}
			}
			switch {
			case m.Gauge != nil:
				return m.Gauge.GetValue(), nil
			case m.Counter != nil:
				return m.Counter.GetValue(), nil
			}
		}
		return 0, nil
	}
	return 0, fmt.Errorf("no metric %s", name)
}

// within bounds the waits for livetail to do something: far more than it
// takes on an idle machine, so that a loaded one does not fail a test. No
// test measures speed with it.
const within = time.Minute

// eventually polls cond until it holds or the limit passes.
func eventually(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// producer writes records as the agent does: key = job, sarama's default
// (hash) partitioner, to the stack's log topic.
type producer struct {
	p     sarama.SyncProducer
	topic string
	mu    sync.Mutex
	sent  map[string][]int64 // job → offsets, in order
	parts map[string]int32   // job → the partition of its lines
	pad   string             // appended to every line
}

func newProducer(t testing.TB, s *stack.Stack) *producer {
	t.Helper()
	cfg := sarama.NewConfig()
	cfg.Producer.Return.Successes = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Retry.Max = 10
	cfg.Producer.Retry.Backoff = 50 * time.Millisecond
	p, err := sarama.NewSyncProducer(s.KafkaAddrs(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return &producer{p: p, topic: s.Topic("logs"), sent: map[string][]int64{}, parts: map[string]int32{}}
}

func line(job string, i int) string { return fmt.Sprintf("%s line %d", job, i) }

// produce writes n lines for job (numbered from first) and returns their offsets.
func (p *producer) produce(t testing.TB, job string, first, n int) []int64 {
	t.Helper()
	offs, err := p.try(job, first, n)
	if err != nil {
		t.Fatalf("producing: %v", err)
	}
	return offs
}

// try is produce for other goroutines than the test's.
func (p *producer) try(job string, first, n int) ([]int64, error) {
	msgs := make([]*sarama.ProducerMessage, n)
	for i := range msgs {
		rec := record.Record{
			Timestamp: time.Now(),
			Message:   line(job, first+i) + p.pad,
			Job:       job,
			Host:      record.Host{Name: "node-a"},
			Agent:     record.Agent{Name: "node-a"},
			Log:       record.Log{File: record.File{Path: "/var/log/" + job + ".log"}, Offset: int64(first + i)},
			Labels:    map[string]string{"env": "test"},
		}
		msgs[i] = &sarama.ProducerMessage{Topic: p.topic, Key: sarama.StringEncoder(job), Value: sarama.ByteEncoder(rec.AppendJSON(nil))}
	}
	if err := p.p.SendMessages(msgs); err != nil {
		return nil, err
	}
	offs := make([]int64, n)
	for i, m := range msgs {
		offs[i] = m.Offset
	}
	p.mu.Lock()
	p.sent[job] = append(p.sent[job], offs...)
	p.parts[job] = msgs[0].Partition
	p.mu.Unlock()
	return offs, nil
}

// background writes batches of lines for job until the returned stop is
// called; stop returns the first error, and may be called again (from a
// cleanup, so that a test that fails first stops the writer before the
// producer is closed).
func (p *producer) background(job string, first, batch int, every time.Duration) (stop func() error) {
	done := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		defer close(errc)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for i := first; ; i += batch {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			if _, err := p.try(job, i, batch); err != nil {
				errc <- err
				return
			}
		}
	}()
	return sync.OnceValue(func() error {
		close(done)
		return <-errc
	})
}

// checkContiguous fails unless got is a run of want with no gap and no
// duplicate, starting at want[from].
func checkContiguous(t testing.TB, got, want []int64, from int) {
	t.Helper()
	if from < 0 || from+len(got) > len(want) {
		t.Fatalf("got %d offsets from index %d of %d produced", len(got), from, len(want))
	}
	for i, off := range got {
		if want[from+i] != off {
			t.Fatalf("entry %d: offset %d, want %d (got %v..., want %v...)", i, off, want[from+i], got[:min(len(got), i+3)], want[from:min(len(want), from+i+3)])
		}
	}
}

// partition returns the partition job's lines went to.
func (p *producer) partition(job string) int32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.parts[job]
}

// checkAnnounced is checkContiguous for a live stream that a slow client
// may fall behind: every gap must be exactly what a dropped frame just
// before it announces, and none may come before caught_up (history is
// never dropped). It returns the index in want of each entry.
func checkAnnounced(t testing.TB, got collected, want []int64, from int) []int {
	t.Helper()
	index := make(map[int64]int, len(want))
	for i, off := range want {
		index[off] = i
	}
	next := from
	at := make([]int, len(got.offsets))
	d := 0
	for k := 0; k <= len(got.offsets); k++ {
		for ; d < len(got.dropped) && got.droppedAt[d] == k; d++ {
			f := got.dropped[d]
			if got.caughtUp < 0 || k < got.caughtUp {
				t.Fatalf("dropped frame %+v after %d entries, before caught_up (at %d)", f, k, got.caughtUp)
			}
			first, ok1 := index[*f.FromOffset]
			last, ok2 := index[*f.ToOffset]
			if !ok1 || !ok2 || first != next || int64(last-first+1) != f.Count {
				t.Fatalf("dropped %d from offset %d to %d, want from line %d (offset %d)", f.Count, *f.FromOffset, *f.ToOffset, next, want[min(next, len(want)-1)])
			}
			next = last + 1
		}
		if k == len(got.offsets) {
			break
		}
		if i, ok := index[got.offsets[k]]; !ok || i != next {
			t.Fatalf("entry %d at offset %d is line %d, want line %d (a gap without a dropped frame, or a duplicate)", k, got.offsets[k], i, next)
		}
		at[k] = next
		next++
	}
	return at
}

func (p *producer) offsets(job string) []int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]int64(nil), p.sent[job]...)
}

// client is a WebSocket tail client.
type client struct {
	t        testing.TB
	c        *websocket.Conn
	caughtUp bool // a caught_up frame was read
	live     collected
}

// cursorAt returns the cursor of the first live frame that brought the
// client to at least n live lines, and how many live lines it had then.
func (c *client) cursorAt(n int) (string, int) {
	c.t.Helper()
	got := c.live
	for i := got.caughtUp + n - 1; i < len(got.cursors); i++ {
		if i+1 == len(got.cursors) || got.cursors[i+1] != got.cursors[i] {
			return got.cursors[i], i + 1 - got.caughtUp
		}
	}
	c.t.Fatalf("fewer than %d live lines", n)
	return "", 0
}

func dial(t testing.TB, rawURL string, header http.Header) (*client, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	c, _, err := websocket.Dial(ctx, rawURL, &websocket.DialOptions{HTTPHeader: header})
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(4 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return &client{t: t, c: c}, nil
}

func mustDial(t testing.TB, rawURL string) *client {
	t.Helper()
	c, err := dial(t, rawURL, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", rawURL, err)
	}
	return c
}

// next reads one frame.
func (c *client) next(timeout time.Duration) (wire.Frame, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, b, err := c.c.Read(ctx)
	if err != nil {
		return wire.Frame{}, err
	}
	var f wire.Frame
	if err := json.Unmarshal(b, &f); err != nil {
		return f, fmt.Errorf("frame %s: %w", b, err)
	}
	if f.Type == wire.TypeCaughtUp {
		c.caughtUp = true
	}
	return f, nil
}

func (c *client) mustNext() wire.Frame {
	c.t.Helper()
	f, err := c.next(within)
	if err != nil {
		c.t.Fatalf("reading a frame: %v", err)
	}
	return f
}

// closeCode reads until the connection closes and returns the close status
// and the reason of the error frame before it.
func (c *client) closeCode(timeout time.Duration) (websocket.StatusCode, string) {
	c.t.Helper()
	reason := ""
	deadline := time.Now().Add(timeout)
	for {
		f, err := c.next(time.Until(deadline))
		if err != nil {
			code := websocket.CloseStatus(err)
			if code == -1 {
				c.t.Fatalf("connection ended without a close frame: %v", err)
			}
			return code, reason
		}
		if f.Type == wire.TypeError {
			reason = f.Reason
		}
	}
}

// collected is what a client received.
type collected struct {
	offsets   []int64
	parts     []int32
	cursors   []string // per entry, the cursor of its frame
	lines     []string
	caughtUp  int // index in offsets where caught_up came, or -1
	dropped   []wire.Frame
	droppedAt []int // index in offsets where each dropped frame came
}

// collect reads frames until want entries arrived after caught_up.
func (c *client) collect(wantLive int, timeout time.Duration) collected {
	c.t.Helper()
	got := collected{caughtUp: -1}
	if c.caughtUp {
		got.caughtUp = 0
	}
	deadline := time.Now().Add(timeout)
	for got.caughtUp < 0 || len(got.offsets)-got.caughtUp < wantLive {
		f, err := c.next(time.Until(deadline))
		if err != nil {
			c.t.Fatalf("after %d entries (caught up at %d): %v", len(got.offsets), got.caughtUp, err)
		}
		switch f.Type {
		case wire.TypeEntries:
			for _, e := range f.Entries {
				got.offsets = append(got.offsets, e.Offset)
				got.parts = append(got.parts, e.Partition)
				got.cursors = append(got.cursors, f.Cursor)
				got.lines = append(got.lines, e.Line)
			}
		case wire.TypeCaughtUp:
			got.caughtUp = len(got.offsets)
		case wire.TypeDropped:
			got.dropped = append(got.dropped, f)
			got.droppedAt = append(got.droppedAt, len(got.offsets))
		case wire.TypeError:
			c.t.Fatalf("error frame: %d %s", f.Code, f.Reason)
		}
	}
	c.live = got
	return got
}

func query(kv ...string) string {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	return q.Encode()
}

func httpGet(t testing.TB, rawURL string) (int, string) {
	t.Helper()
	resp, err := http.Get(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}
