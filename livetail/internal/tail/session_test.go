package tail

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coder/websocket"

	"github.com/logpipe/logpipe/livetail/internal/hub"
	"github.com/logpipe/logpipe/livetail/internal/limit"
)

// fakeConn records frames; its peer answers pings unless silent.
type fakeConn struct {
	mu     sync.Mutex
	frames []Frame
	times  []time.Time
	pings  int
	silent bool
}

func (c *fakeConn) Write(_ context.Context, _ websocket.MessageType, p []byte) error {
	var f Frame
	if err := json.Unmarshal(p, &f); err != nil {
		return fmt.Errorf("frame %s: %w", p, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.frames = append(c.frames, f)
	c.times = append(c.times, time.Now())
	return nil
}

func (c *fakeConn) Ping(ctx context.Context) error {
	c.mu.Lock()
	c.pings++
	silent := c.silent
	c.mu.Unlock()
	if silent {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func (c *fakeConn) got() ([]Frame, []time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Frame(nil), c.frames...), append([]time.Time(nil), c.times...)
}

// fakeHistory is one partition held in memory.
type fakeHistory struct {
	log    []*hub.Entry // log[i].Offset == i
	onRead func()       // called for every record read
}

func (f *fakeHistory) Partition(string) int32 { return 0 }
func (f *fakeHistory) Bounds(context.Context, int32) (int64, int64, error) {
	return 0, int64(len(f.log)), nil
}
func (f *fakeHistory) OffsetAt(context.Context, int32, time.Time) (int64, error) { return 0, nil }
func (f *fakeHistory) Read(ctx context.Context, _ int32, from, to int64, job string, fn func(*hub.Entry) error) error {
	for off := from; off < to && off < int64(len(f.log)); off++ {
		if f.onRead != nil {
			f.onRead()
		}
		if e := f.log[off]; e.Job == job {
			if err := fn(e); err != nil {
				return err
			}
		}
	}
	return ctx.Err()
}

func newLog(n int, jobs ...string) []*hub.Entry {
	log := make([]*hub.Entry, n)
	for i := range log {
		job := jobs[i%len(jobs)]
		log[i] = &hub.Entry{Offset: int64(i), Job: job, Line: job, JSON: fmt.Appendf(nil, `{"offset":%d,"ts":"","line":%q,"host":"","file":"","labels":{}}`, i, job)}
	}
	return log
}

type harness struct {
	h    *hub.Hub
	hist *fakeHistory
	tail *Handler
	conn *fakeConn
}

func newHarness(opts Options, log []*hub.Entry) *harness {
	opts.Limiter = limit.NewMemory(10)
	h := hub.New(1, hub.Options{})
	hist := &fakeHistory{log: log}
	return &harness{h: h, hist: hist, tail: New(h, hist, opts), conn: &fakeConn{}}
}

// start runs a session for p in the background; wait returns its result.
func (x *harness) start(t *testing.T, p Params) (cancel context.CancelCauseFunc, wait func() error) {
	t.Helper()
	sub, join, err := x.h.Subscribe(0, p.Job, p.Grep, x.tail.opts.ClientBuffer)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancelCause(t.Context())
	s := &session{h: x.tail, c: x.conn, p: p, part: 0, sub: sub, join: join}
	errc := make(chan error, 1)
	go func() {
		defer sub.Close()
		errc <- s.run(ctx)
	}()
	return cancel, func() error { return <-errc }
}

// A peer that stops answering is dropped within two ping intervals.
func TestSessionSilentPeer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newHarness(Options{PingInterval: 5 * time.Second}, nil)
		x.conn.silent = true
		start := time.Now()
		_, wait := x.start(t, Params{Job: "a"})
		err := wait()
		if !errors.Is(err, errPeerGone) {
			t.Fatalf("session ended with %v, want errPeerGone", err)
		}
		if d := time.Since(start); d > 2*5*time.Second {
			t.Fatalf("silent peer noticed after %v, want at most two ping intervals", d)
		}
	})
}

// A peer that answers is pinged every interval and kept; a session ends at
// its context's cause.
func TestSessionPings(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newHarness(Options{PingInterval: 5 * time.Second}, nil)
		cancel, wait := x.start(t, Params{Job: "a"})
		time.Sleep(time.Minute + time.Second)
		synctest.Wait()
		if x.conn.pings != 12 {
			t.Fatalf("%d pings in a minute, want 12", x.conn.pings)
		}
		cancel(errMaxSession)
		if err := wait(); !errors.Is(err, errMaxSession) {
			t.Fatalf("ended with %v", err)
		}
	})
}

// The first live line after a quiet time goes out at once; lines close
// behind it are batched into one frame BatchWait later.
func TestSessionBatching(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newHarness(Options{PingInterval: time.Hour, BatchWait: 20 * time.Millisecond}, nil)
		cancel, wait := x.start(t, Params{Job: "a"})
		synctest.Wait()
		start := time.Now()
		x.h.Publish(0, []*hub.Entry{newLog(1, "a")[0]}, 1)
		synctest.Wait()
		for i := int64(1); i <= 5; i++ {
			time.Sleep(time.Millisecond)
			e := *newLog(1, "a")[0]
			e.Offset = i
			x.h.Publish(0, []*hub.Entry{&e}, i+1)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		frames, times := x.conn.got()
		var sizes []int
		var at []time.Duration
		for i, f := range frames {
			if f.Type == TypeEntries {
				sizes = append(sizes, len(f.Entries))
				at = append(at, times[i].Sub(start))
			}
		}
		if len(sizes) != 2 || sizes[0] != 1 || sizes[1] != 5 || at[0] != 0 || at[1] != 20*time.Millisecond {
			t.Fatalf("entries frames of %v at %v, want [1 5] at [0 20ms]", sizes, at)
		}
		cancel(errShutdown)
		wait()
	})
}

// History that takes long while the live stream moves: the queue overflows,
// and the session reads the missed range from Kafka until it has caught up,
// with no gap, no duplicate and no dropped frame.
func TestSessionCatchUpChasesLive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := newLog(4000, "a", "b")
		x := newHarness(Options{PingInterval: time.Hour, ClientBuffer: 10}, log)
		x.h.SetNext(0, 1000)
		live := int64(1000)
		reads := 0
		x.hist.onRead = func() { // one live record for every four read
			if reads++; reads%4 == 0 && live < int64(len(log)) {
				x.h.Publish(0, log[live:live+1], live+1)
				live++
			}
		}
		cancel, wait := x.start(t, Params{Job: "a", Mode: ModeSince})
		synctest.Wait()
		x.hist.onRead = nil
		x.h.Publish(0, log[live:live+2], live+2) // live after catching up
		live += 2
		synctest.Wait()
		time.Sleep(time.Second)
		synctest.Wait()
		cancel(errShutdown)
		wait()

		frames, _ := x.conn.got()
		next := int64(0)
		caughtUp := false
		for _, f := range frames {
			switch f.Type {
			case TypeEntries:
				for _, e := range f.Entries {
					if e.Offset != next {
						t.Fatalf("entry at %d, want %d", e.Offset, next)
					}
					next += 2
				}
			case TypeCaughtUp:
				caughtUp = true
			case TypeDropped:
				t.Fatalf("dropped %+v", f)
			}
		}
		if !caughtUp {
			t.Fatal("no caught_up frame")
		}
		if next < live-1 {
			t.Fatalf("got entries up to %d, the live stream reached %d", next-2, live-1)
		}
	})
}

// When the upstream fails for good, the session sends what it had and ends
// with ErrUnavailable.
func TestSessionUpstreamFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newHarness(Options{PingInterval: time.Hour}, nil)
		_, wait := x.start(t, Params{Job: "a"})
		synctest.Wait()
		x.h.Publish(0, newLog(1, "a"), 1)
		x.h.Fail(0, errors.New("kafka gone"))
		if err := wait(); !errors.Is(err, hub.ErrUnavailable) {
			t.Fatalf("ended with %v", err)
		}
		frames, _ := x.conn.got()
		if last := frames[len(frames)-1]; last.Type != TypeEntries {
			t.Fatalf("last frame %+v, want the entry queued before the failure", last)
		}
	})
}
