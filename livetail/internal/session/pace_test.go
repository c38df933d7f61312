package session

import (
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/logpipe/logpipe/livetail/internal/hub"
	"github.com/logpipe/logpipe/livetail/internal/wire"
)

// Under load (pumps start late) a session's live frames are paced at
// --batch-wait, the lines between them batched; the first line after a
// quiet spell still goes at once.
func TestSessionPacedUnderLoad(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newHarness(opts{PingInterval: time.Hour, BatchWait: 20 * time.Millisecond}, nil)
		x.e.Pace.Observe(time.Now(), 10*time.Millisecond) // pumps have been late
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
			if f.Type == wire.TypeEntries {
				sizes = append(sizes, len(f.Entries))
				at = append(at, times[i].Sub(start))
			}
		}
		ms := time.Millisecond
		if !slices.Equal(sizes, []int{1, 5, 1}) || !slices.Equal(at, []time.Duration{0, 20 * ms, 1005 * ms}) {
			t.Fatalf("entries frames of %v at %v, want [1 5 1] at [0s 20ms 1.005s]", sizes, at)
		}
		if gap := x.e.Pace.Gap(); gap >= 20*ms {
			t.Fatalf("gap %v after a quiet second with pumps on time, want less than 20ms", gap)
		}
		cancel(ErrShutdown)
		wait()
	})
}
