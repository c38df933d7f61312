package wire

import (
	"sync"
	"sync/atomic"
	"time"
)

// Pacer sets how long a live session waits, after a frame, before it sends
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
type Pacer struct {
	max time.Duration
	gap atomic.Int64 // the gap now, in ns

	mu   sync.Mutex
	avg  float64 // moving average of pump start delays, in ns
	last time.Time
}

const (
	// paceIdle and paceFull are the average pump start delays at which
	// pacing starts and is full.
	paceIdle = 50 * time.Microsecond
	paceFull = 500 * time.Microsecond
	// paceWeight is the least weight of a delay in the average: with tens
	// of thousands of frames a second, the average spans tens of
	// milliseconds, and the gap does not swing with every burst.
	paceWeight = 1.0 / 4096
	// paceMemory is how long the average remembers when pumps are few: a
	// delay that comes this long after the last one replaces the average.
	paceMemory = time.Second
)

// NewPacer returns a pacer whose gap grows to max; max 0 never paces.
func NewPacer(max time.Duration) *Pacer { return &Pacer{max: max} }

// Observe adds a pump's start delay, observed at now, to the average.
func (p *Pacer) Observe(now time.Time, d time.Duration) {
	if p.max <= 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	w := min(1, max(paceWeight, float64(now.Sub(p.last))/float64(paceMemory)))
	p.avg += w * (float64(d) - p.avg)
	p.last = now
	var gap time.Duration
	switch avg := time.Duration(p.avg); {
	case avg <= paceIdle:
	case avg >= paceFull:
		gap = p.max
	default:
		gap = time.Duration(float64(p.max) * float64(avg-paceIdle) / float64(paceFull-paceIdle))
	}
	p.gap.Store(int64(gap))
}

// Gap returns the least time between two live frames of a session now:
// zero while the process keeps up, up to max under load.
func (p *Pacer) Gap() time.Duration { return time.Duration(p.gap.Load()) }
