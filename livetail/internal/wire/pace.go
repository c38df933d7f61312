package wire

import (
	"sync/atomic"
	"time"
)

// A live session sends each frame as soon as its pump runs, with whatever
// is queued, and no timer stands between a line and its client while the
// session keeps up. A busy machine alone is no reason to wait: a pump that
// starts late still finds the lines of one delivery, sends them, and is
// done.
//
// A session falls behind when its frames do not go out as fast as lines
// are delivered to it: several deliveries (hub publishes, each one wake)
// pile up before one frame takes them. That happens when its client is
// slow to take frames, or when livetail itself cannot run its pumps as
// often as lines come. Only then is the session paced: the frame that finds the
// backlog goes at once, and for the paceSpell frames after it it keeps at least --batch-wait between two frames, the
// lines between them batched, so that fewer, fuller frames (a write system
// call each, on both ends) free the CPU and the session catches up. After
// the spell, or once a frame finds no backlog --batch-wait after the last
// one, it sends at once again; if it is still behind, its next frame finds
// the backlog and starts another spell. (A paced session whose stream stops
// counts as paced until its next line.)
const (
	// paceBacklog is the number of deliveries one frame takes at which the
	// session is behind.
	paceBacklog = 3
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
	wakes atomic.Int32 // deliveries queued since the last frame
	sent  time.Time    // when the last frame took what was queued
	spell int          // paced frames left; 0: not paced
	held  bool         // the next frame was held back
}

// Session returns the pacing of a new session.
func (p *Pacer) Session() *Pace { return &Pace{p: p} }

// Woken counts a delivery queued for the session.
func (s *Pace) Woken() { s.wakes.Add(1) }

// Hold returns how long, from now, the session's next frame waits: zero
// unless the session is behind (see paceBacklog), and never more than
// --batch-wait.
func (s *Pace) Hold(now time.Time) time.Duration {
	if s.p.max <= 0 {
		return 0
	}
	if s.spell == 0 {
		if s.wakes.Load() < paceBacklog {
			return 0
		}
		// The frame that finds the backlog goes at once, a batch already;
		// the spell paces the frames after it.
		s.spell = paceSpell
		s.p.paced.Add(1)
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
	return wait
}

// Taken records that a frame took what was queued, at now.
func (s *Pace) Taken(now time.Time) {
	s.wakes.Store(0)
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
	}
}

// Stop ends the session's pacing: it no longer counts as paced.
func (s *Pace) Stop() {
	if s.spell > 0 {
		s.spell = 0
		s.p.paced.Add(-1)
	}
}
