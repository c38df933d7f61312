package main

import (
	"context"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/logpipe/logpipe/livetail/internal/tail"
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
			if f.Type == tail.TypeDropped {
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
		case tail.TypeEntries:
			for _, e := range f.Entries {
				if i := index[e.Offset]; i != next {
					t.Fatalf("entry at offset %d is line %d, want line %d (a gap without a dropped frame)", e.Offset, i, next)
				}
				next++
			}
		case tail.TypeDropped:
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
// with a fake clock in package tail.
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
