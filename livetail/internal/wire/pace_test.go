package wire

import (
	"testing"
	"time"
)

// frame is one frame of a session on a fake clock: the deliveries queued
// before it, and how long after the previous frame its pump runs.
type frame struct {
	wakes int
	after time.Duration
}

// run plays frames on s from t0, each sent when its hold allows (as the
// session's pump does: a held frame waits for the timer, then looks
// again), and returns the holds of each frame and when each was sent.
func run(s *Pace, t0 time.Time, frames []frame) (holds []time.Duration, now time.Time) {
	now = t0
	for _, f := range frames {
		now = now.Add(f.after)
		for range f.wakes {
			s.Woken()
		}
		wait := s.Hold(now)
		holds = append(holds, wait)
		now = now.Add(wait)
		if again := s.Hold(now); again != 0 {
			panic("still held when due")
		}
		s.Taken(now)
	}
	return holds, now
}

func frames(wakes ...int) []frame {
	var out []frame
	for _, w := range wakes {
		out = append(out, frame{wakes: w, after: time.Millisecond})
	}
	return out
}

// A session is paced only when the deliveries its frames take keep
// growing (growing) or stay large (steady): a steady batch of a few
// deliveries is batching that keeps up, and a one-off delay is no backlog;
// both go at once.
func TestPaceRule(t *testing.T) {
	const max = 20 * time.Millisecond
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for name, c := range map[string]struct {
		max    time.Duration
		frames []frame
		paced  bool
	}{
		"one delivery a frame":          {max, frames(1, 1, 1, 1, 1, 1), false},
		"a steady batch":                {max, frames(5, 5, 5, 5, 5, 5), false},
		"a steady batch below steady":   {max, frames(7, 7, 7, 7, 7, 7, 7), false},
		"a large batch, not five times": {max, frames(100, 100, 100, 100, 7, 100), false},
		"a large steady batch":          {max, frames(8, 9, 8, 100, 8), true},
		"a steady batch with jitter":    {max, frames(3, 3, 4, 3, 3, 4, 4, 3, 4, 4, 4), false},
		"a stream starting":             {max, frames(1, 3, 3, 4, 3, 4, 4, 5, 3, 4), false},
		"growing below the backlog":     {max, frames(0, 1, 1, 2, 2, 1, 2), false},
		"a one-off delay":               {max, frames(1, 1, 1, 6, 1, 1), false},
		"a delay, then steady":          {max, frames(1, 1, 1, 6, 6, 6, 6), false},
		"shrinking between":             {max, frames(2, 3, 2, 4, 3, 5, 4, 6), false},
		"growing with a pause":          {max, frames(2, 3, 3, 4, 5, 6), false},
		"growing, not twice":            {max, frames(5, 6, 7, 8, 9), false},
		"from the session's start":      {max, frames(3, 4, 6, 9), false},
		"growing":                       {max, frames(2, 3, 4, 5, 6), true},
		"growing from a steady batch":   {max, frames(4, 4, 4, 5, 6, 8, 9), true},
		"growing, no --batch-wait":      {0, frames(2, 3, 4, 5, 8, 13), false},
		"late pumps, one delivery each": {max, []frame{{1, 30 * time.Millisecond}, {1, 50 * time.Millisecond}, {1, time.Second}}, false},
	} {
		p := NewPacer(c.max)
		s := p.Session()
		s.Taken(t0)
		holds, _ := run(s, t0, c.frames)
		for i, h := range holds {
			if h != 0 {
				t.Errorf("%s: frame %d held %v, want none (no spell before it, and the frame that starts one goes at once)", name, i, h)
			}
		}
		if got := p.Paced() == 1; got != c.paced {
			t.Errorf("%s: %d sessions paced after frames %v, want paced %v", name, p.Paced(), c.frames, c.paced)
		}
		wantGap := time.Duration(0)
		if c.paced {
			wantGap = c.max
		}
		if got := p.Gap(); got != wantGap {
			t.Errorf("%s: gap %v, want %v", name, got, wantGap)
		}
	}
}

// A paced session keeps --batch-wait between its frames for paceSpell
// frames and then sends at once again; a spell ends early when a frame
// --batch-wait after the last finds no backlog; Stop ends it.
func TestPaceSpell(t *testing.T) {
	const max = 20 * time.Millisecond
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := NewPacer(max)
	s := p.Session()
	s.Taken(t0)
	_, now := run(s, t0, frames(2, 3, 4, 5, 6))
	if p.Paced() != 1 {
		t.Fatalf("after a growing queue: %d sessions paced, want 1", p.Paced())
	}
	// Deliveries keep coming during the spell, a few a millisecond.
	holds, now := run(s, now, frames(slicesOf(paceSpell, 4)...))
	for i, h := range holds {
		if h != max-time.Millisecond {
			t.Fatalf("frame %d of the spell: held %v, want --batch-wait from the last frame (%v)", i, h, max-time.Millisecond)
		}
	}
	if p.Held() != paceSpell {
		t.Fatalf("held %d frames, want %d", p.Held(), paceSpell)
	}
	if p.Paced() != 0 || p.Gap() != 0 {
		t.Fatalf("after the spell: %d sessions paced, gap %v; want 0, 0", p.Paced(), p.Gap())
	}
	if holds, _ := run(s, now, frames(8, 8, 8)); holds[0] != 0 || holds[1] != 0 || holds[2] != 0 || p.Paced() != 0 {
		t.Fatalf("a steady backlog after the spell: holds %v, paced %d; want none, 0", holds, p.Paced())
	}

	s = p.Session()
	s.Taken(now)
	_, now = run(s, now, frames(2, 3, 4, 5, 6))
	held := p.Held()
	holds, now = run(s, now, []frame{{1, 2 * max}})
	if holds[0] != 0 || p.Paced() != 0 || p.Held() != held {
		t.Fatalf("a line --batch-wait after the last frame, no backlog: held %v, paced %d; want 0, 0", holds[0], p.Paced())
	}

	s = p.Session()
	s.Taken(now)
	run(s, now, frames(2, 3, 4, 5, 6))
	s.Stop()
	if p.Paced() != 0 {
		t.Fatalf("after Stop: %d sessions paced, want 0", p.Paced())
	}
}

func slicesOf(n, v int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = v
	}
	return out
}
