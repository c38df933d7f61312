// Package limit counts live tail connections per user so that one user cannot
// hold more than a set number at once: Memory for a single livetail process,
// Redis for several replicas behind a load balancer.
package limit

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// ErrLimit is wrapped by the error of an Acquire over the limit.
var ErrLimit = errors.New("too many connections")

// Error is the error of an Acquire over the limit.
type Error struct {
	User  string
	Limit int
}

func (e *Error) Error() string {
	return fmt.Sprintf("too many connections for user %s (limit %d): close other tails", e.User, e.Limit)
}

// Unwrap makes errors.Is(err, ErrLimit) true.
func (e *Error) Unwrap() error { return ErrLimit }

// Limiter admits at most a fixed number of concurrent connections per user.
type Limiter interface {
	// Acquire takes one of user's connection slots. The caller calls
	// release, once, when the connection ends. An error wrapping ErrLimit
	// means the user is at the limit.
	Acquire(ctx context.Context, user string) (release func(), err error)
	// Close releases the limiter's resources.
	Close() error
}

// Memory is a Limiter for one process.
type Memory struct {
	max    int
	mu     sync.Mutex
	counts map[string]int
}

// NewMemory returns a limiter of max connections per user.
func NewMemory(max int) *Memory {
	return &Memory{max: max, counts: map[string]int{}}
}

// Acquire implements Limiter.
func (m *Memory) Acquire(_ context.Context, user string) (func(), error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.counts[user] >= m.max {
		return nil, &Error{User: user, Limit: m.max}
	}
	m.counts[user]++
	var once sync.Once
	return func() {
		once.Do(func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			if m.counts[user]--; m.counts[user] <= 0 {
				delete(m.counts, user)
			}
		})
	}, nil
}

// Count returns user's current connections.
func (m *Memory) Count(user string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.counts[user]
}

// Close implements Limiter.
func (m *Memory) Close() error { return nil }
