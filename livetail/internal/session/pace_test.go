package session

import (
	"fmt"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/logpipe/logpipe/livetail/internal/hub"
	"github.com/logpipe/logpipe/livetail/internal/wire"
)

// publisher publishes job a's lines on partition 0, one delivery each, and
// remembers when each was published.
type publisher struct {
	x    *harness
	next int64
	at   map[int64]time.Time
}

func (p *publisher) publish() {
	e := *newLog(1, "a")[0]
	e.Offset = p.next
	e.JSON = fmt.Appendf(nil, `{"partition":0,"offset":%d,"ts":"","line":"a","host":"","file":"","labels":{}}`, p.next)
	if p.at == nil {
		p.at = map[int64]time.Time{}
	}
	p.at[p.next] = time.Now()
	p.x.h.Publish(0, []*hub.Entry{&e}, p.next+1)
	p.next++
}

// entriesFrames returns the entries frames the client got: how many entries
// each, when each was written, and the offsets with when they were written.
func entriesFrames(c *fakeConn) (sizes []int, at []time.Time, sent map[int64]time.Time) {
	frames, times := c.got()
	sent = map[int64]time.Time{}
	for i, f := range frames {
		if f.Type != wire.TypeEntries {
			continue
		}
		sizes = append(sizes, len(f.Entries))
		at = append(at, times[i])
		for _, e := range f.Entries {
			sent[e.Offset] = times[i]
		}
	}
	return sizes, at, sent
}

// A client that keeps up gets every line in a frame of its own the moment
// it is delivered: with --batch-wait set, nothing is held.
func TestSessionNotPacedWithoutBacklog(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newHarness(opts{PingInterval: time.Hour, BatchWait: 20 * time.Millisecond}, nil)
		cancel, wait := x.start(t, Params{Jobs: []string{"a"}})
		synctest.Wait()
		pub := &publisher{x: x}
		for range 100 {
			pub.publish()
			time.Sleep(time.Millisecond)
		}
		synctest.Wait()
		sizes, _, sent := entriesFrames(x.conn)
		if len(sizes) != 100 {
			t.Fatalf("%d entries frames for 100 lines a millisecond apart, want 100", len(sizes))
		}
		for off, at := range pub.at {
			if !sent[off].Equal(at) {
				t.Fatalf("line %d written %v after it was delivered, want at once", off, sent[off].Sub(at))
			}
		}
		if n := x.e.Pace.Held(); n != 0 {
			t.Fatalf("%d frames held back, want 0", n)
		}
		cancel(ErrShutdown)
		wait()
	})
}

// A client slower to take frames than lines come gets them batched, with
// no timer: each frame takes what came during the write before, and is
// written as soon as that write returns. Nothing is held, and no line
// waits longer than two writes.
func TestSessionSlowClientBatchedNotPaced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const write = 5 * time.Millisecond
		x := newHarness(opts{PingInterval: time.Hour, BatchWait: 20 * time.Millisecond}, nil)
		cancel, wait := x.start(t, Params{Jobs: []string{"a"}})
		synctest.Wait()
		x.conn.setWriteTime(write)
		pub := &publisher{x: x}
		for range 200 { // a line every 1.5 ms: 3 or 4 lines come during a write
			pub.publish()
			time.Sleep(1500 * time.Microsecond)
		}
		synctest.Wait()
		sizes, _, sent := entriesFrames(x.conn)
		if len(sizes) > 200/3+1 {
			t.Fatalf("%d entries frames for 200 lines, want at most %d (batched)", len(sizes), 200/3+1)
		}
		if n := x.e.Pace.Held(); n != 0 {
			t.Fatalf("frames of %v entries, %d held back: want none held for a steady backlog", sizes, n)
		}
		for off, at := range pub.at {
			if d := sent[off].Sub(at); d > 2*write {
				t.Fatalf("line %d written %v after it was delivered, want at most two writes (%v)", off, d, 2*write)
			}
		}
		cancel(ErrShutdown)
		wait()
	})
}

// A client whose frames take longer and longer falls behind for real: the
// lines each frame takes keep growing, and it is paced, several lines a
// frame, no line waiting longer than --batch-wait plus a write. Once the
// stream pauses, the next line goes at once, alone.
func TestSessionPacedWhenQueueGrows(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const batchWait, maxWrite = 20 * time.Millisecond, 10 * time.Millisecond
		x := newHarness(opts{PingInterval: time.Hour, BatchWait: batchWait}, nil)
		cancel, wait := x.start(t, Params{Jobs: []string{"a"}})
		synctest.Wait()
		pub := &publisher{x: x}
		write := time.Millisecond
		for range 400 { // a line every 0.5 ms, each write 0.1 ms slower, up to maxWrite
			x.conn.setWriteTime(write)
			write = min(maxWrite, write+100*time.Microsecond)
			pub.publish()
			time.Sleep(500 * time.Microsecond)
		}
		synctest.Wait()
		sizes, _, sent := entriesFrames(x.conn)
		if x.e.Pace.Held() == 0 {
			t.Fatalf("frames of %v entries, none held back: want the client paced", sizes)
		}
		for off, at := range pub.at {
			if d := sent[off].Sub(at); d > batchWait+maxWrite {
				t.Fatalf("line %d written %v after it was delivered, want at most --batch-wait + a write (%v)", off, d, batchWait+maxWrite)
			}
		}
		x.conn.setWriteTime(0)
		time.Sleep(time.Second)
		pub.publish()
		synctest.Wait()
		if n := x.e.Pace.Paced(); n != 0 {
			t.Fatalf("%d sessions paced after a quiet second and a line, want 0", n)
		}
		sizes, at, _ := entriesFrames(x.conn)
		if last := len(sizes) - 1; sizes[last] != 1 || !at[last].Equal(pub.at[pub.next-1]) {
			t.Fatalf("the line after a quiet second: in a frame of %d written %v after delivery, want alone at once", sizes[last], at[last].Sub(pub.at[pub.next-1]))
		}
		cancel(ErrShutdown)
		wait()
	})
}

// A light stream is never paced, however busy the process: goroutines
// that keep every CPU busy make pumps wait for one, and the frames still go
// as they come. The busy loops are checked to have delayed goroutines.
func TestSessionLightStreamOnBusyProcess(t *testing.T) {
	x := newHarness(opts{PingInterval: time.Hour, BatchWait: 20 * time.Millisecond}, nil)
	cancel, wait := x.start(t, Params{Jobs: []string{"a"}})
	defer func() {
		cancel(ErrShutdown)
		wait()
	}()
	stop := make(chan struct{})
	var busy sync.WaitGroup
	for range 2 * runtime.GOMAXPROCS(0) {
		busy.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				for i := 0; i < 1e5; i++ {
				}
			}
		})
	}
	before := schedLatencies()
	pub := &publisher{x: x}
	for range 50 {
		pub.publish()
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	busy.Wait()
	if d := slowestSince(before); d < time.Millisecond {
		t.Fatalf("goroutines waited at most %v for a CPU: the process was not busy", d)
	}
	if n := x.e.Pace.Held(); n != 0 {
		t.Fatalf("%d frames held back on a busy process with a light stream, want 0", n)
	}
}

// schedLatencies returns the runtime's histogram of how long goroutines
// waited for a CPU so far.
func schedLatencies() *metrics.Float64Histogram {
	m := []metrics.Sample{{Name: "/sched/latencies:seconds"}}
	metrics.Read(m)
	return m[0].Value.Float64Histogram()
}

// slowestSince returns the lower bound of the highest bucket that gained a
// goroutine since before: about how long the slowest goroutines since then
// waited for a CPU.
func slowestSince(before *metrics.Float64Histogram) time.Duration {
	h := schedLatencies()
	for i := len(h.Counts) - 1; i >= 0; i-- {
		if h.Counts[i] > before.Counts[i] {
			return time.Duration(h.Buckets[i] * float64(time.Second))
		}
	}
	return 0
}
