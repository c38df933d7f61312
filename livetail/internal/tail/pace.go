package tail

import (
	"sync/atomic"
	"time"
)

// pacer sets how long a live session waits, after a frame, before it sends
// the next one: nothing while the process keeps up, growing to max
// (--batch-wait) as it falls behind.
//
// How far behind the process is shows in how late a session's pump starts
// after it was kicked, waiting for a CPU: the pacer keeps a moving average
// of that delay. Below paceIdle the gap is zero, and every frame goes as
// soon as its pump runs; from paceIdle to paceFull it grows in proportion,
// to max. Frames then wait in a timer instead of in the run queue, with
// more entries in each, so the CPU that more, smaller frames would cost
// (a write system call each, on both ends) is freed and the process
// catches up, which brings the gap down again. The first line after a quiet
// spell longer than the gap always goes at once.
type pacer struct {
	max time.Duration
	avg atomic.Int64 // moving average of pump start delays, in ns
}

// Pump start delays (averaged) at which pacing starts and is full.
const (
	paceIdle = 100 * time.Microsecond
	paceFull = time.Millisecond
)

// observe adds a pump's start delay to the average, with weight 1/64.
func (p *pacer) observe(d time.Duration) {
	for {
		old := p.avg.Load()
		if p.avg.CompareAndSwap(old, old+(int64(d)-old)/64) {
			return
		}
	}
}

// gap returns the least time between two live frames of a session now.
func (p *pacer) gap() time.Duration {
	avg := time.Duration(p.avg.Load())
	switch {
	case p.max <= 0 || avg <= paceIdle:
		return 0
	case avg >= paceFull:
		return p.max
	}
	return time.Duration(int64(p.max) * int64(avg-paceIdle) / int64(paceFull-paceIdle))
}

// FrameGap returns the least time between two live frames of a session
// now: zero while the process keeps up, up to BatchWait under load.
func (h *Handler) FrameGap() time.Duration { return h.pace.gap() }
