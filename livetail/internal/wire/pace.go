package wire

import (
	"math"
	"sync/atomic"
	"time"
)

// A live session sends each frame as soon as its pump runs, with whatever
// is queued, and no timer stands between a line and its client while the
// session keeps up. Batches grow by themselves under load: lines that come
// while a frame is written, or while the pump waits for a CPU, go together
// in the next frame, written as soon as the previous one returns. A busy
// machine, or a slow client, alone is no reason to wait: a frame that takes
// a few deliveries is a batch doing its job, and the next one is written at
// once.
//
// A session is overloaded when even that does not keep up, over the last
// paceGrowth+1 frames in a row: either the deliveries its frames take keep
// growing (each frame more than the one before, the last at least twice
// as many as the first, and paceBacklog or more), or every one of them took
// paceSteady deliveries or more (frames cannot be written as fast as lines
// come, batches or not). Its client cannot take frames as fast as lines
// come, or livetail cannot run its pumps often enough. Only then is the
// session paced: for the paceSpell frames after it keeps at least
// --batch-wait between two frames, the lines between them batched, so that
// fewer, fuller frames (a write system call each, on both ends) free the
// CPU and the session catches up. After the spell, or once a frame finds no
// backlog --batch-wait after the last one, it sends at once again, and
// another spell needs the backlog again. A one-off delay (a pump that
// waited for a CPU, then caught up at once) is no backlog, nor is a stream
// that starts and settles at a steady batch of a few deliveries. (A paced
// session whose stream stops counts as paced until its next line.)
const (
	// paceBacklog is the least number of deliveries the last frame of a
	// growing run takes: below it the session keeps up.
	paceBacklog = 3
	// paceGrowth is how many frames after the first of a run the
	// deliveries must keep growing over, or stay at paceSteady or more.
	paceGrowth = 4
	// paceSteady is the number of deliveries a frame takes that, frame
	// after frame, says the session's frames do not keep up: far more than
	// a light or mid load gives (1 to 6 lines a frame at up to 10,000
	// lines/s in the benchmark).
	paceSteady = 8
	// paceSpell is how many frames a session that fell behind is paced.
	paceSpell = 10
)

// Pacer is the pacing that the sessions of one server share: --batch-wait
// and what the metrics report.
type Pacer struct {
	max   time.Duration
	paced atomic.Int64 // sessions paced now
	held  atomic.Int64 // frames held back so far
}

// NewPacer returns a pacer that keeps max (--batch-wait) between the
// frames of a session that fell behind; max 0 never paces.
func NewPacer(max time.Duration) *Pacer { return &Pacer{max: max} }

// Gap returns the least time between two live frames of a paced session
// while any session is paced, and zero while none is.
func (p *Pacer) Gap() time.Duration {
	if p.paced.Load() > 0 {
		return p.max
	}
	return 0
}

// Paced returns the number of sessions paced now.
func (p *Pacer) Paced() int64 { return p.paced.Load() }

// Held returns how many frames were held back (sent later than their pump
// could have sent them) so far.
func (p *Pacer) Held() int64 { return p.held.Load() }

// Pace is one session's pacing. Woken may be called from any goroutine;
// the other methods only from the session's one pump at a time.
type Pace struct {
	p     *Pacer
	wakes atomic.Int32          // deliveries queued since the last frame
	sent  time.Time             // when the last frame took what was queued
	taken [paceGrowth + 1]int32 // deliveries the last frames took, the latest at [0]
	spell int                   // paced frames left; 0: not paced
	held  bool                  // the next frame was held back
}

// Session returns the pacing of a new session.
func (p *Pacer) Session() *Pace {
	s := &Pace{p: p}
	s.forget()
	return s
}

// Woken counts a delivery queued for the session.
func (s *Pace) Woken() { s.wakes.Add(1) }

// Hold returns how long, from now, the session's next frame waits: zero
// unless the session is paced (see paceGrowth), and never more than
// --batch-wait.
func (s *Pace) Hold(now time.Time) time.Duration {
	if s.spell == 0 {
		return 0
	}
	wait := s.p.max - now.Sub(s.sent)
	switch {
	case wait > 0:
		s.held = true
	case !s.held && s.wakes.Load() < paceBacklog:
		// A line after --batch-wait without one, and no backlog: the
		// session caught up, and the spell ends early.
		s.Stop()
		return 0
	}
	return max(wait, 0)
}

// Taken records that a frame took what was queued, at now. The frame
// that finds the queue grown (growing) or still large (steady) starts a spell: it goes at
// once, a batch already, and the frames after it are paced.
func (s *Pace) Taken(now time.Time) {
	n := s.wakes.Swap(0)
	s.sent = now
	if s.held {
		s.held = false
		s.p.held.Add(1)
	}
	if s.spell > 0 {
		s.spell--
		if s.spell == 0 {
			s.p.paced.Add(-1)
		}
		return
	}
	if n == 0 {
		return // its deliveries were counted to the frame before: it says nothing
	}
	copy(s.taken[1:], s.taken[:])
	s.taken[0] = n
	if s.p.max > 0 && (growing(&s.taken) || steady(&s.taken)) {
		s.forget()
		s.spell = paceSpell
		s.p.paced.Add(1)
	}
}

// steady reports whether each of the last frames took paceSteady
// deliveries or more.
func steady(taken *[paceGrowth + 1]int32) bool {
	for _, n := range taken {
		if n < paceSteady || n == math.MaxInt32 {
			return false
		}
	}
	return true
}

// forget forgets the frames taken so far: a run of growth starts again
// from the next frame.
func (s *Pace) forget() {
	for i := range s.taken {
		s.taken[i] = math.MaxInt32 // no frame: more than any next one
	}
}

// growing reports whether the deliveries of the last frames, the latest at
// taken[0], kept growing: each more than the frame before, the latest at
// least twice the first and paceBacklog or more.
func growing(taken *[paceGrowth + 1]int32) bool {
	first, last := taken[len(taken)-1], taken[0]
	if last < paceBacklog || last < 2*first {
		return false
	}
	for i := range len(taken) - 1 {
		if taken[i] <= taken[i+1] {
			return false
		}
	}
	return true
}

// Stop ends the session's pacing: it no longer counts as paced.
func (s *Pace) Stop() {
	if s.spell > 0 {
		s.spell = 0
		s.p.paced.Add(-1)
	}
}
