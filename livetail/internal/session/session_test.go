package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/logpipe/logpipe/livetail/internal/hub"
	"github.com/logpipe/logpipe/livetail/internal/wire"
)

// fakeConn records frames, and when each began to be written; its peer
// answers pings unless silent.
type fakeConn struct {
	mu        sync.Mutex
	frames    []wire.Frame
	times     []time.Time
	pings     int
	silent    bool
	pongDelay time.Duration // how long the peer takes to answer a ping
	writeTime time.Duration // how long a write takes
}

func (c *fakeConn) Write(p []byte) error {
	var f wire.Frame
	if err := json.Unmarshal(p, &f); err != nil {
		return fmt.Errorf("frame %s: %w", p, err)
	}
	c.mu.Lock()
	c.frames = append(c.frames, f)
	c.times = append(c.times, time.Now())
	d := c.writeTime
	c.mu.Unlock()
	time.Sleep(d)
	return nil
}

func (c *fakeConn) setWriteTime(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writeTime = d
}

func (c *fakeConn) Ping(ctx context.Context) error {
	c.mu.Lock()
	c.pings++
	silent, delay := c.silent, c.pongDelay
	c.mu.Unlock()
	if silent {
		<-ctx.Done()
		return ctx.Err()
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (c *fakeConn) got() ([]wire.Frame, []time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]wire.Frame(nil), c.frames...), append([]time.Time(nil), c.times...)
}

// fakeHistory is partitions held in memory.
type fakeHistory struct {
	logs   [][]*hub.Entry // logs[p][i].Offset == i
	oldest []int64        // per partition, the oldest offset retained; 0 when not set
	onRead func()         // called for every record read
	home   int32
	cands  []int32      // Candidates; [home] when nil
	reads  atomic.Int64 // records read

	refresh   func() error // RefreshPartitions, when set
	refreshes atomic.Int64 // calls of RefreshPartitions
}

func (f *fakeHistory) Partitions() int { return len(f.logs) }

// RefreshPartitions calls refresh, when set, and counts the calls; else
// it finds no partition added.
func (f *fakeHistory) RefreshPartitions(context.Context) error {
	f.refreshes.Add(1)
	if f.refresh != nil {
		return f.refresh()
	}
	return nil
}
func (f *fakeHistory) Home(string) int32 { return f.home }
func (f *fakeHistory) Candidates(string) []int32 {
	if f.cands != nil {
		return f.cands
	}
	return []int32{f.home}
}
func (f *fakeHistory) Bounds(_ context.Context, p int32) (int64, int64, error) {
	return f.oldestOf(p), int64(len(f.logs[p])), nil
}

func (f *fakeHistory) oldestOf(p int32) int64 {
	if int(p) < len(f.oldest) {
		return f.oldest[p]
	}
	return 0
}

// OffsetAt finds the first retained entry at t or later by its TS.
func (f *fakeHistory) OffsetAt(_ context.Context, p int32, t time.Time) (int64, error) {
	for i := f.oldestOf(p); i < int64(len(f.logs[p])); i++ {
		if f.logs[p][i].TS >= t.UnixNano() {
			return i, nil
		}
	}
	return int64(len(f.logs[p])), nil
}

// OldestTime is the time of the oldest retained entry.
func (f *fakeHistory) OldestTime(_ context.Context, p int32) (time.Time, error) {
	if o := f.oldestOf(p); o < int64(len(f.logs[p])) {
		return time.Unix(0, f.logs[p][o].TS), nil
	}
	return time.Time{}, nil
}

func (f *fakeHistory) Read(ctx context.Context, p int32, from, to int64, jobs []string, fn func(*hub.Entry) error) error {
	log := f.logs[p]
	if from < f.oldestOf(p) {
		return fmt.Errorf("read of partition %d from %d, below its oldest offset %d", p, from, f.oldestOf(p))
	}
	for off := from; off < to && off < int64(len(log)); off++ {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if f.onRead != nil {
			f.onRead()
		}
		f.reads.Add(1)
		if e := log[off]; slices.Contains(jobs, e.Job) {
			if err := fn(e); err != nil {
				return err
			}
		}
		if off%100 == 99 {
			if err := fn(nil); err != nil {
				return err
			}
		}
	}
	return ctx.Err()
}

func newLog(n int, jobs ...string) []*hub.Entry { return newLogOn(0, n, jobs...) }

// newLogOn returns n entries of partition p, the jobs in turn, one a
// millisecond from 2026-01-01.
func newLogOn(p int32, n int, jobs ...string) []*hub.Entry {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	log := make([]*hub.Entry, n)
	for i := range log {
		job := jobs[i%len(jobs)]
		log[i] = &hub.Entry{Partition: p, Offset: int64(i), TS: base + int64(i)*int64(time.Millisecond), Job: job, Line: job,
			JSON: fmt.Appendf(nil, `{"partition":%d,"offset":%d,"job":%q,"ts":"","line":%q,"host":"","file":"","labels":{}}`, p, i, job, job)}
	}
	return log
}

type harness struct {
	h      *hub.Hub
	hist   *fakeHistory
	e      *Engine
	buffer int // ClientBuffer
	conn   *fakeConn
}

// opts are a harness's settings; zero values take livetail's defaults.
type opts struct {
	PingInterval time.Duration
	ClientBuffer int
	BatchSize    int
	BatchWait    time.Duration
	MaxScan      int64
}

func newHarness(o opts, logs ...[]*hub.Entry) *harness {
	if len(logs) == 0 {
		logs = [][]*hub.Entry{nil}
	}
	h := hub.New(len(logs), hub.Options{})
	hist := &fakeHistory{logs: logs}
	or := func(v, d int64) int64 {
		if v > 0 {
			return v
		}
		return d
	}
	e := &Engine{
		Hub: h, History: hist,
		PingInterval: time.Duration(or(int64(o.PingInterval), int64(5*time.Second))),
		BatchSize:    int(or(int64(o.BatchSize), 256)),
		MaxScan:      or(o.MaxScan, 1_000_000),
		Pace:         wire.NewPacer(o.BatchWait),
		Sent:         prometheus.NewCounter(prometheus.CounterOpts{Name: "sent"}),
		Resent:       prometheus.NewCounter(prometheus.CounterOpts{Name: "resent"}),
	}
	return &harness{h: h, hist: hist, e: e, buffer: int(or(int64(o.ClientBuffer), 1024)), conn: &fakeConn{}}
}

// start runs a session for p in the background; wait returns its result.
func (x *harness) start(t *testing.T, p Params) (cancel context.CancelCauseFunc, wait func() error) {
	t.Helper()
	home, deps, err := x.e.Partitions(t.Context(), &p)
	if err != nil {
		t.Fatal(err)
	}
	sub, joins, err := x.h.Subscribe(p.Jobs, deps, x.buffer)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancelCause(t.Context())
	s := x.e.New(x.conn, p, home, deps, sub, joins, cancel)
	errc := make(chan error, 1)
	go func() {
		defer sub.Close()
		errc <- s.Run(ctx)
	}()
	return cancel, func() error { return <-errc }
}

// A peer that stops answering is dropped within two ping intervals.
func TestSessionSilentPeer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newHarness(opts{PingInterval: 5 * time.Second}, nil)
		x.conn.silent = true
		start := time.Now()
		_, wait := x.start(t, Params{Jobs: []string{"a"}})
		err := wait()
		if !errors.Is(err, wire.ErrPeerGone) {
			t.Fatalf("session ended with %v, want wire.ErrPeerGone", err)
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
		x := newHarness(opts{PingInterval: 5 * time.Second}, nil)
		cancel, wait := x.start(t, Params{Jobs: []string{"a"}})
		time.Sleep(time.Minute + time.Second)
		synctest.Wait()
		if x.conn.pings != 12 {
			t.Fatalf("%d pings in a minute, want 12", x.conn.pings)
		}
		cancel(ErrMaxSession)
		if err := wait(); !errors.Is(err, ErrMaxSession) {
			t.Fatalf("ended with %v", err)
		}
	})
}

// A peer slow to answer pings, within the interval, gets live lines at
// once while a ping is outstanding: the pump does not wait for the pong.
// It is kept, and pinged every interval.
func TestSessionSlowPongs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval, delay = 5 * time.Second, 3 * time.Second
		x := newHarness(opts{PingInterval: interval}, nil)
		x.conn.pongDelay = delay
		cancel, wait := x.start(t, Params{Jobs: []string{"a"}})
		synctest.Wait()
		start := time.Now()
		var written []time.Duration // when each line was published, from start
		for i := range 60 {
			time.Sleep(time.Second) // a ping every 5 s, outstanding for 3 s of them
			e := *newLog(1, "a")[0]
			e.Offset = int64(i)
			x.h.Publish(0, []*hub.Entry{&e}, e.Offset+1)
			written = append(written, time.Since(start))
			synctest.Wait()
		}
		frames, times := x.conn.got()
		var sent []time.Duration
		for i, f := range frames {
			if f.Type == wire.TypeEntries {
				sent = append(sent, times[i].Sub(start))
			}
		}
		if !slices.Equal(sent, written) {
			t.Fatalf("lines written to the client at %v, want each at once, at %v (3 of every 5 while a ping waits %v for its pong)", sent, written, delay)
		}
		if x.conn.pings != 12 {
			t.Fatalf("%d pings in a minute, want 12", x.conn.pings)
		}
		cancel(ErrMaxSession)
		if err := wait(); !errors.Is(err, ErrMaxSession) {
			t.Fatalf("ended with %v, want the peer kept until the session's end", err)
		}
	})
}

// Live lines go out at once, without waiting for a batch timer: a line
// after a quiet spell is sent alone the moment it is published, and so is
// one a millisecond after a frame. Batches grow only under load: lines
// published while a frame is being written go together in the next frame.
func TestSessionBatching(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newHarness(opts{PingInterval: time.Hour, BatchWait: 20 * time.Millisecond}, nil)
		cancel, wait := x.start(t, Params{Jobs: []string{"a"}})
		synctest.Wait()
		start := time.Now()
		publish := func(off int64) {
			e := *newLog(1, "a")[0]
			e.Offset = off
			x.h.Publish(0, []*hub.Entry{&e}, off+1)
		}
		publish(0) // after a quiet spell: at once
		synctest.Wait()
		time.Sleep(time.Millisecond)
		publish(1) // a millisecond after a frame: at once too
		synctest.Wait()
		x.conn.setWriteTime(10 * time.Millisecond)
		publish(2) // its frame takes 10 ms to write; meanwhile ...
		for i := int64(3); i <= 7; i++ {
			time.Sleep(time.Millisecond)
			publish(i) // ... these queue, and go together when it is written
		}
		time.Sleep(time.Second)
		synctest.Wait()
		frames, times := x.conn.got()
		var sizes []int
		var at []time.Duration
		for i, f := range frames {
			if f.Type == wire.TypeEntries {
				sizes = append(sizes, len(f.Entries))
				at = append(at, times[i].Sub(start))
			}
		}
		ms := time.Millisecond
		if !slices.Equal(sizes, []int{1, 1, 1, 5}) || !slices.Equal(at, []time.Duration{0, 1 * ms, 1 * ms, 11 * ms}) {
			t.Fatalf("entries frames of %v at %v, want [1 1 1 5] at [0s 1ms 1ms 11ms]", sizes, at)
		}
		cancel(ErrShutdown)
		wait()
	})
}

// History that takes long while the live stream moves: the queue overflows,
// and the session reads the missed range from Kafka until it has caught up,
// with no gap, no duplicate and no dropped frame.
func TestSessionCatchUpChasesLive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := newLog(4000, "a", "b")
		x := newHarness(opts{PingInterval: time.Hour, ClientBuffer: 10}, log)
		x.h.SetNext(0, 1000)
		live := int64(1000)
		reads := 0
		x.hist.onRead = func() { // one live record for every four read
			if reads++; reads%4 == 0 && live < int64(len(log)) {
				x.h.Publish(0, log[live:live+1], live+1)
				live++
			}
		}
		cancel, wait := x.start(t, Params{Jobs: []string{"a"}, Mode: ModeSince})
		synctest.Wait()
		x.hist.onRead = nil
		x.h.Publish(0, log[live:live+2], live+2) // live after catching up
		live += 2
		synctest.Wait()
		time.Sleep(time.Second)
		synctest.Wait()
		cancel(ErrShutdown)
		wait()

		frames, _ := x.conn.got()
		next := int64(0)
		caughtUp := false
		for _, f := range frames {
			switch f.Type {
			case wire.TypeEntries:
				for _, e := range f.Entries {
					if e.Offset != next {
						t.Fatalf("entry at %d, want %d", e.Offset, next)
					}
					next += 2
				}
			case wire.TypeCaughtUp:
				caughtUp = true
			case wire.TypeDropped:
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
		x := newHarness(opts{PingInterval: time.Hour}, nil)
		_, wait := x.start(t, Params{Jobs: []string{"a"}})
		synctest.Wait()
		x.h.Publish(0, newLog(1, "a"), 1)
		x.h.Fail(0, errors.New("kafka gone"))
		if err := wait(); !errors.Is(err, hub.ErrUnavailable) {
			t.Fatalf("ended with %v", err)
		}
		frames, _ := x.conn.got()
		if last := frames[len(frames)-1]; last.Type != wire.TypeEntries {
			t.Fatalf("last frame %+v, want the entry queued before the failure", last)
		}
	})
}

// entriesOf returns the entries frames' entries and the last cursor seen.
func entriesOf(frames []wire.Frame) (got []wire.EntryJSON, cursor string, drops []wire.Frame) {
	for _, f := range frames {
		switch f.Type {
		case wire.TypeEntries:
			got = append(got, f.Entries...)
		case wire.TypeDropped:
			drops = append(drops, f)
		}
		if f.Cursor != "" {
			cursor = f.Cursor
		}
	}
	return got, cursor, drops
}

// A job on two partitions (producers with different partitioners): since=
// merges them by time, and a session resumed with the cursor of any frame
// continues with no gap and no duplicate.
func TestSessionTwoPartitions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Partition 0 has a's lines at even milliseconds, partition 1 at odd.
		p0, p1 := newLogOn(0, 200, "a", "b"), newLogOn(1, 200, "b", "a")
		x := newHarness(opts{PingInterval: time.Hour, BatchSize: 7}, p0, p1)
		x.hist.cands = []int32{0, 1}
		x.h.SetNext(0, 200)
		x.h.SetNext(1, 200)
		since := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		cancel, wait := x.start(t, Params{Jobs: []string{"a"}, Mode: ModeSince, Since: since})
		synctest.Wait()
		cancel(ErrShutdown)
		wait()
		frames, _ := x.conn.got()
		if frames[0].Type != wire.TypeHello || !slices.Equal(frames[0].Partitions, []int32{0, 1}) {
			t.Fatalf("hello %+v", frames[0])
		}
		got, cursor, drops := entriesOf(frames)
		if len(got) != 200 || len(drops) > 0 {
			t.Fatalf("%d entries, drops %+v", len(got), drops)
		}
		for i, e := range got {
			// By time: 0:0, 1:1, 0:2, 1:3, ...
			if e.Partition != int32(i%2) || e.Offset != int64(i/2*2+i%2) {
				t.Fatalf("entry %d at %d:%d, want %d:%d", i, e.Partition, e.Offset, i%2, i/2*2+i%2)
			}
		}
		if cursor != "0:199,1:199" {
			t.Fatalf("cursor %q", cursor)
		}

		// Resume from the cursor of a frame in the middle: the rest, once.
		var mid string
		n := 0
		for _, f := range frames {
			if f.Type == wire.TypeEntries {
				n += len(f.Entries)
				if n >= 100 {
					mid = f.Cursor
					break
				}
			}
		}
		c, err := ParseCursor(mid)
		if err != nil {
			t.Fatal(err)
		}
		x.conn = &fakeConn{}
		cancel, wait = x.start(t, Params{Jobs: []string{"a"}, Mode: ModeCursor, Cursor: c})
		synctest.Wait()
		cancel(ErrShutdown)
		wait()
		frames, _ = x.conn.got()
		rest, _, _ := entriesOf(frames)
		if len(rest) != 200-n {
			t.Fatalf("resumed from %q: %d entries, want %d", mid, len(rest), 200-n)
		}
		if all := append(got[:n:n], rest...); !slices.EqualFunc(all, got, func(a, b wire.EntryJSON) bool { return a.Partition == b.Partition && a.Offset == b.Offset }) {
			t.Fatal("resumed entries differ from the rest of the first session's")
		}
	})
}

// Right after livetail starts, its consumers are still reading back the
// records before the end of each partition (--jobs-scan) when the first
// sessions join: the lines already in Kafka are history all the same, read
// up to each partition's end and merged by time, for since= and cursor= as
// for tail=; the consumers' copies of them, queued later, are not sent
// again.
func TestSessionHistoryWhileConsumersReadBack(t *testing.T) {
	for _, mode := range []string{"since", "cursor"} {
		t.Run(mode, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				// a's lines alternate between the partitions, by time.
				p0, p1 := newLogOn(0, 100, "a", "b"), newLogOn(1, 100, "b", "a")
				x := newHarness(opts{PingInterval: time.Hour}, p0, p1)
				x.hist.cands = []int32{0, 1}
				x.h.SetNext(0, 0) // the consumers start from the first record
				x.h.SetNext(1, 0)
				p := Params{Jobs: []string{"a"}, Mode: ModeSince, Since: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
				if mode == "cursor" {
					p = Params{Jobs: []string{"a"}, Mode: ModeCursor, Cursor: []Position{{Partition: 0, Offset: 9}, {Partition: 1, Offset: 9}}}
				}
				cancel, wait := x.start(t, p)
				synctest.Wait()
				// The consumers catch up, one partition after the other.
				x.h.Publish(0, p0, 100)
				x.h.Publish(1, p1, 100)
				synctest.Wait()
				x.h.Publish(0, newLogOn(0, 101, "a")[100:], 101) // a live line
				synctest.Wait()
				cancel(ErrShutdown)
				wait()
				frames, _ := x.conn.got()
				got, cursor, drops := entriesOf(frames)
				var want []string
				for i := range 100 {
					if off := int64(i); mode == "since" || off > 9 {
						want = append(want, fmt.Sprintf("%d:%d", i%2, off))
					}
				}
				want = append(want, "0:100")
				var gotAt []string
				for _, e := range got {
					gotAt = append(gotAt, fmt.Sprintf("%d:%d", e.Partition, e.Offset))
				}
				if !slices.Equal(gotAt, want) || len(drops) > 0 {
					t.Fatalf("entries at %v (drops %+v), want %v", gotAt, drops, want)
				}
				if cursor != "0:100,1:99" {
					t.Fatalf("cursor %q, want 0:100,1:99", cursor)
				}
			})
		})
	}
}

// History bounded by MaxScan: since= over a long partition reads at most
// MaxScan records, says which range it skipped, and pings the client while
// it scans records of other jobs.
func TestSessionScanBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := newLog(10000, "b", "b", "b", "b", "b", "b", "b", "b", "b", "a")
		x := newHarness(opts{PingInterval: 5 * time.Second, MaxScan: 3000}, log)
		x.h.SetNext(0, 10000)
		x.hist.onRead = func() { time.Sleep(10 * time.Millisecond) } // 30 s for the scan
		cancel, wait := x.start(t, Params{Jobs: []string{"a"}, Mode: ModeSince, Since: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)})
		synctest.Wait()
		time.Sleep(time.Minute)
		synctest.Wait()
		cancel(ErrShutdown)
		wait()
		frames, _ := x.conn.got()
		got, _, drops := entriesOf(frames)
		if x.hist.reads.Load() != 3000 {
			t.Fatalf("%d records read, want 3000", x.hist.reads.Load())
		}
		if len(drops) != 1 || drops[0].Count != 7000 || *drops[0].FromOffset != 0 || *drops[0].ToOffset != 6999 {
			t.Fatalf("drops %+v", drops)
		}
		if len(got) != 300 || got[0].Offset != 7009 {
			t.Fatalf("%d entries from %d", len(got), got[0].Offset)
		}
		if x.conn.pings < 5 {
			t.Fatalf("%d pings during a 30 s scan, want one every 5 s", x.conn.pings)
		}
	})
}

// A client that vanishes during a long scan is dropped by the ping, and
// the scan stops.
func TestSessionScanStopsWhenPeerVanishes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := newLog(100000, "b")
		x := newHarness(opts{PingInterval: 5 * time.Second}, log)
		x.h.SetNext(0, 100000)
		x.hist.onRead = func() { time.Sleep(time.Millisecond) } // 100 s for the scan
		x.conn.silent = true
		_, wait := x.start(t, Params{Jobs: []string{"a"}, Mode: ModeSince, Since: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)})
		if err := wait(); !errors.Is(err, wire.ErrPeerGone) {
			t.Fatalf("ended with %v", err)
		}
		synctest.Wait()
		if x.hist.reads.Load() > 20000 {
			t.Fatalf("%d records read after the client vanished, want the scan stopped within two ping intervals", x.hist.reads.Load())
		}
	})
}

// grep is applied by the session, to history and live lines alike.
func TestSessionGrep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := newLog(100, "a")
		for i, e := range log {
			if i%10 == 3 {
				e.Line = "error here"
			}
		}
		x := newHarness(opts{PingInterval: time.Hour}, log[:50])
		x.h.SetNext(0, 50)
		cancel, wait := x.start(t, Params{Jobs: []string{"a"}, Mode: ModeTail, Tail: 3, Grep: regexp.MustCompile("error")})
		synctest.Wait()
		x.h.Publish(0, log[50:], 100)
		time.Sleep(time.Second)
		synctest.Wait()
		cancel(ErrShutdown)
		wait()
		frames, _ := x.conn.got()
		got, _, _ := entriesOf(frames)
		var offs []int64
		for _, e := range got {
			offs = append(offs, e.Offset)
		}
		if want := []int64{23, 33, 43, 53, 63, 73, 83, 93}; !slices.Equal(offs, want) {
			t.Fatalf("offsets %v, want %v", offs, want)
		}
	})
}

// A cursor may name a partition added to the topic that this process does
// not follow yet (another replica made the cursor): the partitions are
// looked up, and the session reads the job's lines there after the
// cursor. Only a partition Kafka does not have either is a bad cursor; a
// failed lookup is Kafka being unavailable, not a bad cursor; a cursor of
// known partitions asks for no lookup.
func TestSessionCursorNamesAddedPartition(t *testing.T) {
	errKafka := errors.New("kafka: connection refused")
	for name, tt := range map[string]struct {
		cursor    []Position
		refresh   func(x *harness) error
		want      []int64 // offsets on partition 1, when served
		refreshes int64
		wantErr   string
		param     bool // the error is a ParamError (4400)
	}{
		"added": {
			cursor: []Position{{0, 9}, {1, 4}},
			refresh: func(x *harness) error {
				x.hist.logs = append(x.hist.logs, newLogOn(1, 10, "a"))
				x.h.AddPartitions([]int64{0})
				x.h.SetNext(1, 10)
				return nil
			},
			want:      []int64{5, 6, 7, 8, 9},
			refreshes: 1,
		},
		"not in Kafka": {
			cursor:    []Position{{0, 9}, {5, 4}},
			refresh:   func(*harness) error { return nil },
			refreshes: 1,
			wantErr:   "cursor: partition 5 does not exist (the topic has 1)",
			param:     true,
		},
		"Kafka unavailable": {
			cursor:    []Position{{1, 4}},
			refresh:   func(*harness) error { return errKafka },
			refreshes: 1,
			wantErr:   errKafka.Error(),
		},
		"known partition": {
			cursor:    []Position{{0, 4}},
			refresh:   func(*harness) error { return errKafka },
			refreshes: 0,
		},
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				x := newHarness(opts{PingInterval: time.Hour}, newLogOn(0, 10, "a"))
				x.h.SetNext(0, 10)
				x.hist.refresh = func() error { return tt.refresh(x) }
				p := Params{Jobs: []string{"a"}, Mode: ModeCursor, Cursor: tt.cursor}
				_, _, err := x.e.Partitions(t.Context(), &p)
				if n := x.hist.refreshes.Load(); n != tt.refreshes {
					t.Errorf("%d lookups of the partitions, want %d", n, tt.refreshes)
				}
				var pe *ParamError
				switch {
				case tt.wantErr != "":
					if err == nil || !strings.Contains(err.Error(), tt.wantErr) || errors.As(err, &pe) != tt.param {
						t.Fatalf("error %v, want one with %q (a bad parameter: %v)", err, tt.wantErr, tt.param)
					}
					return
				case err != nil:
					t.Fatal(err)
				}
				cancel, wait := x.start(t, Params{Jobs: []string{"a"}, Mode: ModeCursor, Cursor: tt.cursor})
				synctest.Wait()
				cancel(ErrShutdown)
				wait()
				frames, _ := x.conn.got()
				got, _, drops := entriesOf(frames)
				var offs []int64
				for _, e := range got {
					if e.Partition == 1 {
						offs = append(offs, e.Offset)
					} else if e.Offset <= 4 {
						t.Errorf("entry 0:%d sent again", e.Offset)
					}
				}
				if len(drops) > 0 || !slices.Equal(offs, tt.want) {
					t.Fatalf("entries of partition 1 %v, drops %+v, want %v", offs, drops, tt.want)
				}
			})
		})
	}
}
