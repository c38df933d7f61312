package wire

import (
	"testing"
	"time"
)

// A session is paced only once several deliveries waited for one frame:
// then for paceSpell frames it keeps --batch-wait between them, and after
// the spell it sends at once again.
func TestPaceHold(t *testing.T) {
	const max = 20 * time.Millisecond
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	woken := func(s *Pace, n int) {
		for range n {
			s.Woken()
		}
	}
	for name, c := range map[string]struct {
		max   time.Duration
		wakes int
		since time.Duration // since the last frame
		want  time.Duration
	}{
		"one delivery":       {max, 1, time.Millisecond, 0},
		"a delivery late":    {max, 1, 0, 0},
		"below the backlog":  {max, paceBacklog - 1, time.Millisecond, 0},
		"behind":             {max, paceBacklog, time.Millisecond, 0},
		"behind, gap passed": {max, paceBacklog, 2 * max, 0},
		"no --batch-wait":    {0, 10 * paceBacklog, time.Millisecond, 0},
		"far behind":         {max, 100, 0, 0},
	} {
		p := NewPacer(c.max)
		s := p.Session()
		s.Taken(t0)
		woken(s, c.wakes)
		if got := s.Hold(t0.Add(c.since)); got != c.want {
			t.Errorf("%s: hold %v, want %v", name, got, c.want)
		}
		paced := c.wakes >= paceBacklog && c.max > 0
		if got := p.Paced() == 1; got != paced {
			t.Errorf("%s: paced sessions %d, want paced %v", name, p.Paced(), paced)
		}
		wantGap := time.Duration(0)
		if paced {
			wantGap = c.max
		}
		if got := p.Gap(); got != wantGap {
			t.Errorf("%s: gap %v, want %v", name, got, wantGap)
		}
	}

	p := NewPacer(max)
	s := p.Session()
	now := t0
	s.Taken(now)
	woken(s, paceBacklog)
	if wait := s.Hold(now); wait != 0 || p.Paced() != 1 {
		t.Fatalf("the frame that finds the backlog: hold %v, paced %d; want 0, 1", wait, p.Paced())
	}
	s.Taken(now)
	woken(s, 1)
	for i := range paceSpell - 1 { // the spell counts the frame that found the backlog
		wait := s.Hold(now)
		if wait <= 0 || wait > max {
			t.Fatalf("frame %d of the spell: hold %v, want (0, %v]", i, wait, max)
		}
		now = now.Add(wait)
		if s.Hold(now) > 0 {
			t.Fatalf("frame %d of the spell: still held when due", i)
		}
		s.Taken(now)
		woken(s, 1)
	}
	if p.Held() != paceSpell-1 {
		t.Fatalf("held %d frames, want %d", p.Held(), paceSpell-1)
	}
	if got := s.Hold(now.Add(time.Millisecond)); got != 0 || p.Paced() != 0 || p.Gap() != 0 {
		t.Fatalf("after the spell: hold %v, paced %d, gap %v; want 0, 0, 0", got, p.Paced(), p.Gap())
	}
	woken(s, paceBacklog)
	s.Hold(now)
	s.Taken(now)
	woken(s, 1)
	if s.Hold(now.Add(time.Millisecond)) <= 0 || p.Paced() != 1 {
		t.Fatalf("behind again after the spell: not paced")
	}
	now = now.Add(time.Millisecond + max)
	s.Taken(now)
	woken(s, 1)
	if got := s.Hold(now.Add(2 * max)); got != 0 || p.Paced() != 0 {
		t.Fatalf("a line --batch-wait after the last frame, no backlog: hold %v, paced %d; want 0, 0", got, p.Paced())
	}
	woken(s, paceBacklog)
	s.Hold(now)
	s.Stop()
	if p.Paced() != 0 {
		t.Fatalf("after Stop: %d sessions paced, want 0", p.Paced())
	}
}
