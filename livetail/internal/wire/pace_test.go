package wire

import (
	"testing"
	"time"
)

// The gap between frames is zero while pumps start on time, grows with
// their average start delay, and is --batch-wait when they are late; the
// average spans many pumps while they are many, and forgets after a quiet
// second.
func TestPacerGap(t *testing.T) {
	const max = 20 * time.Millisecond
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	later := func(d time.Duration) time.Time { t0 = t0.Add(d); return t0 }
	gap := func(p *Pacer) time.Duration { return time.Duration(p.gap.Load()) }
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
		p := Pacer{max: c.max}
		p.Observe(later(time.Hour), c.delay) // the first delay is the average
		if got := gap(&p); got != c.want {
			t.Errorf("%s: gap %v, want %v", name, got, c.want)
		}
	}

	p := Pacer{max: max}
	p.Observe(later(time.Hour), 0)
	p.Observe(later(time.Microsecond), 100*time.Millisecond)
	if got := gap(&p); got != 0 {
		t.Fatalf("one late pump among many on time: gap %v, want 0", got)
	}
	for range 2000 {
		p.Observe(later(time.Microsecond), 5*time.Millisecond)
	}
	if got := gap(&p); got != max {
		t.Fatalf("after many late pumps: gap %v, want %v", got, max)
	}
	p.Observe(later(2*time.Second), 10*time.Microsecond)
	if got := gap(&p); got != 0 {
		t.Fatalf("a pump on time after a quiet spell: gap %v, want 0", got)
	}
}
