package backoff

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

func TestNextStaysWithinBounds(t *testing.T) {
	tests := map[string]struct {
		p    Policy
		want []time.Duration // upper bound of each step; the lower bound is half of it
	}{
		"doubles then caps": {
			p:    Policy{Min: 100 * time.Millisecond, Max: time.Second},
			want: []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second, time.Second, time.Second},
		},
		"min equals max": {
			p:    Policy{Min: time.Second, Max: time.Second},
			want: []time.Duration{time.Second, time.Second, time.Second},
		},
		"huge attempt counts do not overflow": {
			p:    Policy{Min: time.Millisecond, Max: time.Hour},
			want: nil, // checked below
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			for round := 0; round < 50; round++ {
				b := tt.p.Start()
				for i, hi := range tt.want {
					d := b.Next()
					if d < hi/2 || d > hi {
						t.Fatalf("step %d: delay %s outside [%s, %s]", i, d, hi/2, hi)
					}
				}
			}
			b := tt.p.Start()
			for i := 0; i < 200; i++ {
				if d := b.Next(); d <= 0 || d > tt.p.Max {
					t.Fatalf("step %d: delay %s outside (0, %s]", i, d, tt.p.Max)
				}
			}
			if b.Attempt() != 200 {
				t.Fatalf("Attempt() = %d, want 200", b.Attempt())
			}
			b.Reset()
			if d := b.Next(); d > tt.p.Min {
				t.Fatalf("after Reset: delay %s above Min %s", d, tt.p.Min)
			}
		})
	}
}

func TestJitterSpreads(t *testing.T) {
	b := Policy{Min: time.Second, Max: time.Second}.Start()
	seen := map[time.Duration]bool{}
	for i := 0; i < 100; i++ {
		seen[b.Next()] = true
	}
	if len(seen) < 10 {
		t.Fatalf("100 delays took only %d distinct values: no jitter", len(seen))
	}
}

func TestValidate(t *testing.T) {
	tests := map[string]struct {
		p       Policy
		wantErr bool
	}{
		"ok":          {Policy{Min: time.Millisecond, Max: time.Second}, false},
		"zero min":    {Policy{Min: 0, Max: time.Second}, true},
		"max below":   {Policy{Min: time.Second, Max: time.Millisecond}, true},
		"equal is ok": {Policy{Min: time.Second, Max: time.Second}, false},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			err := tt.p.Validate()
			if (err != nil) != tt.wantErr {
				t.Fatalf("Validate() = %v, want error %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrPolicy) {
				t.Fatalf("Validate() = %v, not ErrPolicy", err)
			}
		})
	}
}

func TestWaitSleepsTheDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := Policy{Min: time.Second, Max: 8 * time.Second}.Start()
		var total time.Duration
		for i := 0; i < 6; i++ {
			start := time.Now()
			if err := b.Wait(context.Background()); err != nil {
				t.Fatal(err)
			}
			total += time.Since(start)
		}
		// 1+2+4+8+8+8 = 31s at most, half of that at least.
		if total < 31*time.Second/2 || total > 31*time.Second {
			t.Fatalf("six waits took %s, want between 15.5s and 31s", total)
		}
	})
}

func TestWaitEndsWithContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- Sleep(ctx, time.Hour) }()
		time.Sleep(time.Minute)
		cancel()
		synctest.Wait()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Sleep = %v, want context.Canceled", err)
			}
		default:
			t.Fatal("Sleep did not return after cancel")
		}
	})
}
