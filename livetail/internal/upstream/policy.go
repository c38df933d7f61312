package upstream

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// Policy is a bounded, jittered retry policy: up to Tries attempts, each
// after a delay drawn uniformly from [Min, Max].
type Policy struct {
	Tries int           `yaml:"upstream-retries"`
	Min   time.Duration `yaml:"upstream-backoff-min"`
	Max   time.Duration `yaml:"upstream-backoff-max"`
}

// DefaultPolicy is the original design's: 5 tries, 5 to 10 s apart.
func DefaultPolicy() Policy {
	return Policy{Tries: 5, Min: 5 * time.Second, Max: 10 * time.Second}
}

// Errors returned by Policy.Validate.
var ErrPolicy = errors.New("upstream: bad retry policy")

// Validate checks the policy.
func (p Policy) Validate() error {
	switch {
	case p.Tries < 1:
		return fmt.Errorf("%w: --upstream-retries %d: want at least 1", ErrPolicy, p.Tries)
	case p.Min < 0:
		return fmt.Errorf("%w: --upstream-backoff-min %s: want a positive duration", ErrPolicy, p.Min)
	case p.Max < p.Min:
		return fmt.Errorf("%w: --upstream-backoff-max %s: want at least --upstream-backoff-min (%s)", ErrPolicy, p.Max, p.Min)
	}
	return nil
}

// Delay returns a jittered delay in [Min, Max].
func (p Policy) Delay() time.Duration {
	if p.Max <= p.Min {
		return p.Min
	}
	return p.Min + rand.N(p.Max-p.Min+1)
}

// Sleep waits for a jittered delay or until ctx is done.
func (p Policy) Sleep(ctx context.Context) error {
	return sleep(ctx, p.Delay())
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Do calls fn until it succeeds, waiting a jittered delay before each
// retry, at most Tries times after the first call fails. It returns the
// last error, wrapped in ErrUnavailable, when the retries are exhausted, and
// stops at once on ctx's end or when fn's error is permanent (see
// permanent).
func (p Policy) Do(ctx context.Context, fn func() error) error {
	err := fn()
	for try := 1; err != nil; try++ {
		if isPermanent(err) || ctx.Err() != nil {
			return unwrapPermanent(err)
		}
		if try > p.Tries {
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		if e := p.Sleep(ctx); e != nil {
			return e
		}
		err = fn()
	}
	return nil
}

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ err error }

func (p permanentError) Error() string { return p.err.Error() }
func (p permanentError) Unwrap() error { return p.err }

func permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

func isPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

func unwrapPermanent(err error) error {
	var p permanentError
	if errors.As(err, &p) {
		return p.err
	}
	return err
}
