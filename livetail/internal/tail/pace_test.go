package tail

import (
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/logpipe/logpipe/livetail/internal/hub"
)

// The gap between frames is zero while pumps start on time, grows with
// their average start delay, and is --batch-wait when they are late; the
// average spans many pumps while they are many, and forgets after a quiet
// second.
func TestPacerGap(t *testing.T) {
	const max = 20 * time.Millisecond
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	later := func(d time.Duration) time.Time { t0 = t0.Add(d); return t0 }
	gap := func(p *pacer) time.Duration { return time.Duration(p.gap.Load()) }
	mid := (paceIdle + paceFull) / 2
	for name, c := range map[string]struct {
		max, delay, want time.Duration
	}{
		"on time":         {max, 0, 0},
		"at idle":         {max, paceIdle, 0},
		"half way":        {max, mid, max / 2},
		"late":            {max, paceFull, max},
		"very late":       {max, 50 * paceFull, max},
		"no --batch-wait": {0, 50 * paceFull, 0},
	} {
		p := pacer{max: c.max}
		p.observe(later(time.Hour), c.delay) // the first delay is the average
		if got := gap(&p); got != c.want {
			t.Errorf("%s: gap %v, want %v", name, got, c.want)
		}
	}

	p := pacer{max: max}
	p.observe(later(time.Hour), 0)
	p.observe(later(time.Microsecond), 100*time.Millisecond)
	if got := gap(&p); got != 0 {
		t.Fatalf("one late pump among many on time: gap %v, want 0", got)
	}
	for range 2000 {
		p.observe(later(time.Microsecond), 5*time.Millisecond)
	}
	if got := gap(&p); got != max {
		t.Fatalf("after many late pumps: gap %v, want %v", got, max)
	}
	p.observe(later(2*time.Second), 10*time.Microsecond)
	if got := gap(&p); got != 0 {
		t.Fatalf("a pump on time after a quiet spell: gap %v, want 0", got)
	}
}

// Under load (pumps start late) a session's live frames are paced at
// --batch-wait, the lines between them batched; the first line after a
// quiet spell still goes at once.
func TestSessionPacedUnderLoad(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newHarness(Options{PingInterval: time.Hour, BatchWait: 20 * time.Millisecond}, nil)
		x.tail.pace.observe(time.Now(), 10*time.Millisecond) // pumps have been late
		cancel, wait := x.start(t, Params{Job: "a"})
		synctest.Wait()
		start := time.Now()
		publish := func(off int64) {
			e := *newLog(1, "a")[0]
			e.Offset = off
			x.h.Publish(0, []*hub.Entry{&e}, off+1)
		}
		publish(0) // the first after a quiet spell: at once
		for i := int64(1); i <= 5; i++ {
			time.Sleep(time.Millisecond)
			publish(i) // paced: together, 20 ms after the first
		}
		time.Sleep(time.Second)
		publish(6) // after a quiet spell again: at once
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
		ms := time.Millisecond
		if !slices.Equal(sizes, []int{1, 5, 1}) || !slices.Equal(at, []time.Duration{0, 20 * ms, 1005 * ms}) {
			t.Fatalf("entries frames of %v at %v, want [1 5 1] at [0s 20ms 1.005s]", sizes, at)
		}
		if gap := x.tail.FrameGap(); gap >= 20*ms {
			t.Fatalf("gap %v after a quiet second with pumps on time, want less than 20ms", gap)
		}
		cancel(errShutdown)
		wait()
	})
}
