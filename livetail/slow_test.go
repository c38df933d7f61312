package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/logpipe/logpipe/devstack/stack"
	"github.com/logpipe/logpipe/livetail/internal/wire"
)

// A client that stops reading gets dropped frames announcing exactly what
// it missed; what the server queues for it stays within its buffer; a
// client of the same job that reads is unaffected.
func TestSlowClient(t *testing.T) {
	s := newKafka(t)
	cfg := testConfig(s)
	cfg.ClientBuffer = 100
	ts := startServer(t, cfg)
	p := newProducer(t, s)

	slow := mustDial(t, ts.url(query("job", "busy")))
	slow.collect(0, within)
	fast := mustDial(t, ts.url(query("job", "busy")))
	fast.collect(0, within)

	// The reading client reads in the background; the producer waits for
	// it after each batch, so that it never falls behind by more than its
	// buffer even under the race detector.
	const lines = 4000
	var fastGot collected
	var received atomic.Int64
	fastErr := make(chan error, 1)
	go func() {
		defer close(fastErr)
		for len(fastGot.offsets) < lines {
			f, err := fast.next(within)
			if err != nil {
				fastErr <- err
				return
			}
			for _, e := range f.Entries {
				fastGot.offsets = append(fastGot.offsets, e.Offset)
			}
			if f.Type == wire.TypeDropped {
				fastGot.dropped = append(fastGot.dropped, f)
			}
			received.Store(int64(len(fastGot.offsets)))
		}
	}()

	// Long lines fill the socket buffers of the client that does not read
	// quickly; then its queue fills.
	p.pad = " " + strings.Repeat("x", 4096)
	maxPending := 0.0
	for i := 0; i < lines; i += 100 {
		if _, err := p.try("busy", i, 100); err != nil {
			t.Fatal(err)
		}
		eventually(t, within, "the reading client keeps up", func() bool {
			maxPending = max(maxPending, ts.metric(t, "livetail_pending_messages"))
			return received.Load() >= int64(i+100)
		})
	}
	if err := <-fastErr; err != nil {
		t.Fatal(err)
	}
	if len(fastGot.dropped) > 0 {
		t.Fatalf("the reading client got dropped frames: %+v", fastGot.dropped)
	}
	checkContiguous(t, fastGot.offsets, p.offsets("busy"), 0)
	if ts.metric(t, "livetail_entries_dropped_total") == 0 {
		t.Fatal("nothing was dropped for the client that does not read")
	}
	// The slow client's queue plus the fast one's at most.
	if maxPending > 2*float64(cfg.ClientBuffer) {
		t.Fatalf("livetail_pending_messages reached %v, want at most %d", maxPending, 2*cfg.ClientBuffer)
	}

	// The slow client reads again: every gap is announced before it.
	want := p.offsets("busy")
	index := map[int64]int{}
	for i, off := range want {
		index[off] = i
	}
	next := 0 // index in want of the next line expected
	droppedLines := 0
	for next < len(want) {
		f := slow.mustNext()
		switch f.Type {
		case wire.TypeEntries:
			for _, e := range f.Entries {
				if i := index[e.Offset]; i != next {
					t.Fatalf("entry at offset %d is line %d, want line %d (a gap without a dropped frame)", e.Offset, i, next)
				}
				next++
			}
		case wire.TypeDropped:
			from, to := index[*f.FromOffset], index[*f.ToOffset]
			if from != next || int64(to-from+1) != f.Count {
				t.Fatalf("dropped %d from line %d to %d, want from line %d and a count of %d", f.Count, from, to, next, to-from+1)
			}
			droppedLines += int(f.Count)
			next = to + 1
		default:
			t.Fatalf("unexpected frame %+v", f)
		}
	}
	if droppedLines == 0 {
		t.Fatal("the slow client got no dropped frame")
	}
	t.Logf("slow client: %d of %d lines dropped and announced; pending peaked at %v", droppedLines, len(want), maxPending)
}

// A client that vanishes without a close frame is noticed: after 1,000
// connections open and vanish, livetail_connections is 0 and the goroutine
// count is back to its baseline, give or take the few goroutines of the
// server and its Kafka client that come and go by themselves (a leak would
// be one or more per connection: a thousand).
func TestVanishingClients(t *testing.T) {
	s := newKafka(t)
	cfg := testConfig(s)
	cfg.MaxConnsPerUser = 2000
	ts := startServer(t, cfg)
	eventually(t, within, "livetail ready", func() bool { return ts.ready() == nil })
	const slack = 100
	baseline := runtime.NumGoroutine() + slack

	const n = 1000
	conns := make([]*websocket.Conn, n)
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	sem := make(chan struct{}, 50)
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), within)
			defer cancel()
			c, _, err := websocket.Dial(ctx, ts.url(query("job", "vanish", "tail", "1")), nil)
			if err == nil {
				_, _, err = c.Read(ctx) // hello: the session is established
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			conns[i] = c
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d connections failed, first: %v", len(errs), errs[0])
	}
	eventually(t, within, "1000 connections", func() bool { return ts.metric(t, "livetail_connections") == n })

	// Vanish: the TCP connection goes away without a close frame.
	for _, c := range conns {
		c.CloseNow()
	}
	eventually(t, within, "livetail_connections back to 0", func() bool { return ts.metric(t, "livetail_connections") == 0 })
	eventually(t, within, "goroutines back to the baseline", func() bool { return runtime.NumGoroutine() <= baseline })
	if got := ts.metric(t, "livetail_sessions_closed_total", "code", "gone"); got != n {
		t.Errorf("sessions closed as gone: %v, want %d", got, n)
	}
}

// A peer that stops answering (no close, no reset: silence) is dropped
// after a ping goes unanswered. The bound of two ping intervals is checked
// with a fake clock in package session.
func TestSilentPeerDropped(t *testing.T) {
	s := newKafka(t)
	cfg := testConfig(s)
	cfg.PingInterval = 200 * time.Millisecond
	ts := startServer(t, cfg)
	c := mustDial(t, ts.url(query("job", "silent")))
	c.collect(0, within)
	// The client no longer reads, so it answers no ping.
	start := time.Now()
	eventually(t, within, "silent peer dropped", func() bool { return ts.metric(t, "livetail_connections") == 0 })
	t.Logf("silent peer dropped after %v (ping interval %v)", time.Since(start).Round(time.Millisecond), cfg.PingInterval)
	if got := ts.metric(t, "livetail_sessions_closed_total", "code", "gone"); got != 1 {
		t.Errorf("sessions closed as gone: %v, want 1", got)
	}
}

// A client slow to answer pings, but within the ping interval, gets live
// lines while its pong is outstanding: each line written after a ping
// reached the client arrives before the client's pong is sent, well within
// the pong's delay. The client is kept. A client that reads every frame
// but never answers a ping is dropped as before, as gone.
func TestSlowPongs(t *testing.T) {
	const interval, delay = 4 * time.Second, 3 * time.Second
	s := newKafka(t)
	cfg := testConfig(s)
	cfg.PingInterval = interval
	ts := startServer(t, cfg)
	p := newProducer(t, s)

	slowConn, never := &pongHolder{delay: delay}, &pongHolder{delay: -1}
	slow := dialThrough(t, ts.url(query("job", "slow-pongs")), slowConn)
	slow.collect(0, within)
	mute := dialThrough(t, ts.url(query("job", "slow-pongs")), never)
	mute.collect(0, within)
	// Both clients read on in the background (a client answers a ping
	// when it reads it), until livetail or the test closes their
	// connections; the slow one hands on each frame with its arrival.
	type arrival struct {
		f   wire.Frame
		at  time.Time
		err error
	}
	arrivals := make(chan arrival, 64)
	muteEnded := make(chan error, 1)
	var readers sync.WaitGroup
	readers.Go(func() {
		for {
			f, err := slow.next(time.Hour)
			select {
			case arrivals <- arrival{f, time.Now(), err}:
			case <-t.Context().Done():
				return
			}
			if err != nil {
				return
			}
		}
	})
	readers.Go(func() {
		for {
			if _, err := mute.next(time.Hour); err != nil {
				muteEnded <- err
				return
			}
		}
	})
	t.Cleanup(func() {
		slow.c.CloseNow()
		mute.c.CloseNow()
		readers.Wait()
	})
	nextLine := func() (string, time.Time) {
		t.Helper()
		timeout := time.After(within)
		for {
			select {
			case a := <-arrivals:
				if a.err != nil {
					t.Fatalf("slow client: %v", a.err)
				}
				if a.f.Type == wire.TypeEntries && len(a.f.Entries) == 1 {
					return a.f.Entries[0].Line, a.at
				}
				if a.f.Type != wire.TypeEntries {
					t.Fatalf("slow client: unexpected frame %+v", a.f)
				}
				t.Fatalf("slow client: %d entries in a frame, want one line at a time", len(a.f.Entries))
			case <-timeout:
				t.Fatalf("slow client: no line within %v", within)
			}
		}
	}

	// Lines written while the slow client's pong is held, one every 200 ms
	// for a third of the delay; the next one is written once the last
	// arrived, so each line's wait is its own.
	heldAt := <-slowConn.held
	releasedAt := heldAt.Add(delay)
	var waits []time.Duration
	for i := 0; time.Since(heldAt) < delay/3; i++ {
		written := time.Now()
		p.produce(t, "slow-pongs", i, 1)
		got, arrived := nextLine()
		if got != line("slow-pongs", i) {
			t.Fatalf("got %q, want line %d", got, i)
		}
		if !arrived.Before(releasedAt) {
			t.Fatalf("line %d arrived %v after it was written, after the pong held since %v was sent: the line waited for the pong", i, arrived.Sub(written), arrived.Sub(heldAt))
		}
		if wait := arrived.Sub(written); wait > delay/2 {
			t.Fatalf("line %d arrived %v after it was written, want well within the pong's delay of %v", i, wait, delay)
		}
		waits = append(waits, arrived.Sub(written))
		time.Sleep(200 * time.Millisecond)
	}
	if len(waits) < 3 {
		t.Fatalf("only %d lines written while the pong was held", len(waits))
	}

	if err := <-muteEnded; websocket.CloseStatus(err) != -1 {
		t.Fatalf("the client that never answers ended with %v, want its connection dropped without a close frame", err)
	}
	eventually(t, within, "the client that never answers dropped", func() bool {
		// The counter has no series until the first session closes.
		v, err := ts.readMetric("livetail_sessions_closed_total", "code", "gone")
		return err == nil && v == 1
	})
	// The slow one is kept past another ping, and still gets lines.
	<-slowConn.held
	p.produce(t, "slow-pongs", len(waits), 1)
	if got, _ := nextLine(); got != line("slow-pongs", len(waits)) {
		t.Fatalf("after the next ping: %q", got)
	}
	if n := ts.metric(t, "livetail_connections"); n != 1 {
		t.Fatalf("%v connections, want the slow client's", n)
	}
	t.Logf("%d lines written while a pong was held for %v: each arrived after %v (ping interval %v); pongs held %d and %d; the silent client dropped",
		len(waits), delay, waits, interval, slowConn.count(), never.count())
}

// pongHolder is a client's connection that holds the pongs the client
// writes for delay before it passes them on (never, when delay is
// negative); everything else goes through at once. The client's reads are
// not held up: it reads on while its pong waits.
type pongHolder struct {
	net.Conn
	delay time.Duration
	held  chan time.Time // when each pong was held, if the test is waiting for it

	mu     sync.Mutex // serialises writes to Conn; guards below
	n      int
	timers []*time.Timer
	wg     sync.WaitGroup
}

// Write implements net.Conn. The client writes each of its frames with one
// Write; a pong starts with 0x8a (FIN, opcode 10).
func (c *pongHolder) Write(p []byte) (int, error) {
	if len(p) == 0 || p[0] != 0x8a {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.Conn.Write(p)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	select {
	case c.held <- time.Now():
	default:
	}
	if c.delay < 0 {
		return len(p), nil
	}
	b := bytes.Clone(p)
	c.wg.Add(1)
	c.timers = append(c.timers, time.AfterFunc(c.delay, func() {
		defer c.wg.Done()
		c.mu.Lock()
		defer c.mu.Unlock()
		c.Conn.Write(b)
	}))
	return len(p), nil
}

func (c *pongHolder) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// stop cancels the pongs not sent yet and waits for those being sent.
func (c *pongHolder) stop() {
	c.mu.Lock()
	for _, tm := range c.timers {
		if tm.Stop() {
			c.wg.Done()
		}
	}
	c.mu.Unlock()
	c.wg.Wait()
}

// dialThrough dials rawURL with a client whose connection is hc.
func dialThrough(t testing.TB, rawURL string, hc *pongHolder) *client {
	t.Helper()
	hc.held = make(chan time.Time, 1)
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		hc.Conn = c
		return hc, nil
	}}
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	c, _, err := websocket.Dial(ctx, rawURL, &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatalf("dial %s: %v", rawURL, err)
	}
	c.SetReadLimit(4 << 20)
	t.Cleanup(func() {
		c.CloseNow()
		hc.stop()
		tr.CloseIdleConnections()
	})
	return &client{t: t, c: c}
}

// Idle connections held over many ping intervals cost the server nothing
// more at the end than after the first pings: its goroutines and live heap
// stay flat while every client is pinged again and again (a ping timer,
// buffer or goroutine kept per ping would grow them), what a connection
// holds stays within a bound, and once the clients leave the goroutines
// are back to where they were before the first connected. The clients
// live in this process too: the figures per connection are both ends'.
func TestIdleHoldFlat(t *testing.T) {
	stack.ForBackends(t, testIdleHoldFlat)
}

func testIdleHoldFlat(t *testing.T, kind string) {
	const conns, interval = 200, 500 * time.Millisecond
	s := newKafkaOf(t, stack.Options{Backends: kind})
	cfg := testConfig(s)
	cfg.PingInterval = interval
	cfg.MaxConnsPerUser = conns
	ts := startServer(t, cfg)
	var pings atomic.Int64
	clients := make([]*websocket.Conn, conns)
	var readers sync.WaitGroup
	closeClients := func() {
		for _, c := range clients {
			if c != nil {
				c.CloseNow()
			}
		}
		readers.Wait()
	}
	defer closeClients()
	// A first client makes the process start what it starts once (its
	// Kafka clients, the ping schedule's loop): the baseline is after it.
	first := mustDial(t, ts.url(query("job", "idle")))
	for range 2 { // hello, caught_up
		if _, err := first.next(within); err != nil {
			t.Fatal(err)
		}
	}
	first.c.CloseNow()
	eventually(t, within, "the first client gone", func() bool { return ts.metric(t, "livetail_connections") == 0 })
	gBase, hBase := runtime.NumGoroutine(), liveHeap()
	for i := range clients {
		c, _, err := websocket.Dial(t.Context(), ts.url(query("job", "idle")), &websocket.DialOptions{
			OnPingReceived: func(context.Context, []byte) bool { pings.Add(1); return true },
		})
		if err != nil {
			t.Fatal(err)
		}
		clients[i] = c
		for range 2 { // hello, caught_up
			if _, _, err := c.Read(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		ctx := c.CloseRead(context.Background()) // reads, and so answers pings
		readers.Go(func() { <-ctx.Done() })
	}
	eventually(t, within, "all clients live", func() bool { return ts.metric(t, "livetail_connections") == conns })
	time.Sleep(3 * interval) // every client pinged: the first pings' allocations are made
	g0, h0, p0 := runtime.NumGoroutine(), liveHeap(), pings.Load()
	const hold = 30 // intervals
	time.Sleep(hold * interval)
	g1, h1, p1 := runtime.NumGoroutine(), liveHeap(), pings.Load()
	if n := p1 - p0; n < hold*conns/2 {
		t.Fatalf("%d pings over %d intervals to %d clients, want at least %d: the premise, clients pinged all along, failed", n, hold, conns, hold*conns/2)
	}
	perConn := func(from, to int64) float64 { return float64(to-from) / conns / 1024 }
	t.Logf("%d idle connections, %d pings each: goroutines %d → %d → %d, live heap per connection (both ends) %.1f → %.1f KiB",
		conns, (p1-p0)/conns, gBase, g0, g1, perConn(hBase, h0), perConn(hBase, h1))
	// A ping's round trip has a goroutine while it lasts, and so does the
	// read of its pong: on a loaded machine some may be outstanding at
	// either count. One kept per connection would add 200.
	if g1 > g0+conns/5 {
		t.Errorf("goroutines grew from %d to %d over the hold", g0, g1)
	}
	// The process's Kafka clients (kfake's or a real broker's) move the
	// live heap by up to a few hundred KiB by themselves; 100 bytes kept
	// per ping would add 600 KiB.
	if grew := h1 - h0; grew > 512<<10 {
		t.Errorf("live heap grew %d KiB over the hold (%d pings), want at most 512 KiB", grew>>10, p1-p0)
	}
	// Both ends of a connection hold about 18 KiB of live heap, most of it
	// the client's 4 KiB buffers and the library's connections; the
	// server's 4 KiB buffers or a goroutine's worth per connection kept in
	// the heap would pass the bound.
	const maxPerConn = 24 // KiB
	if got := perConn(hBase, h1); got > maxPerConn {
		t.Errorf("live heap per connection (both ends) %.1f KiB, want at most %d KiB", got, maxPerConn)
	}
	if n := ts.metric(t, "livetail_connections"); n != conns {
		t.Errorf("%v of %d clients left during the hold, %v of them as gone (a ping not answered in time)",
			conns-n, conns, ts.metric(t, "livetail_sessions_closed_total", "code", "gone"))
	}
	closeClients()
	eventually(t, within, "every session ended", func() bool { return ts.metric(t, "livetail_connections") == 0 })
	// A few goroutines of the process's own (Kafka clients', the HTTP
	// server's) may come and go.
	deadline := time.Now().Add(within)
	for runtime.NumGoroutine() > gBase+5 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d, want at most %d as before the clients:\n%s", runtime.NumGoroutine(), gBase+5, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// liveHeap returns the bytes of live heap objects after a collection.
func liveHeap() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
