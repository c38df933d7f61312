// Package backoff computes capped, jittered exponential retry delays and
// sleeps them in a way that a cancelled context interrupts.
package backoff

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// ErrPolicy is returned by Policy.Validate for bounds that cannot work.
var ErrPolicy = errors.New("backoff: bad policy")

// Policy bounds the delays: the first retry waits about Min, each later one
// about twice the previous, never more than Max.
type Policy struct {
	Min time.Duration `yaml:"min"`
	Max time.Duration `yaml:"max"`
}

// Validate checks that 0 < Min <= Max.
func (p Policy) Validate() error {
	if p.Min <= 0 {
		return fmt.Errorf("%w: minimum %s is not positive", ErrPolicy, p.Min)
	}
	if p.Max < p.Min {
		return fmt.Errorf("%w: maximum %s is below minimum %s", ErrPolicy, p.Max, p.Min)
	}
	return nil
}

// Backoff is the retry state of one operation. The zero value is not usable;
// call Policy.Start. A Backoff is not safe for concurrent use.
type Backoff struct {
	p       Policy
	attempt int
}

// Start returns a fresh Backoff for p.
func (p Policy) Start() *Backoff { return &Backoff{p: p} }

// Attempt is the number of delays handed out since the last Reset.
func (b *Backoff) Attempt() int { return b.attempt }

// Reset starts over from Min, after an operation made progress.
func (b *Backoff) Reset() { b.attempt = 0 }

// Next returns the next delay: the capped exponential step for this attempt,
// with "equal jitter" (half fixed, half uniformly random) so that many
// clients retrying after the same outage spread out.
func (b *Backoff) Next() time.Duration {
	d := b.p.Min
	for i := 0; i < b.attempt && d < b.p.Max; i++ {
		d *= 2
	}
	if d > b.p.Max || d <= 0 {
		d = b.p.Max
	}
	b.attempt++
	half := d / 2
	return half + rand.N(d-half+1)
}

// Wait sleeps for the next delay; it returns ctx's error as soon as ctx ends.
func (b *Backoff) Wait(ctx context.Context) error {
	return Sleep(ctx, b.Next())
}

// Sleep waits for d or until ctx is done, whichever is first.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
