package upstream

import (
	"context"
	"errors"
	"sync"
	"time"
)

// minLookupGap is the least time between the start of a lookup of the
// topic's partitions and that of the next one asked for by a session: a
// client that keeps naming a partition the topic does not have costs at
// most one metadata request a second.
const minLookupGap = time.Second

// errStopped answers lookups asked for after the partition consumers stopped.
var errStopped = errors.New("upstream: partition consumers stopped; the topic's partitions are no longer looked up")

// lookups carries sessions' requests for a lookup of the topic's partitions
// to runPartitions, the one goroutine that adds partitions to the hub and
// starts their consumers. Requests are coalesced: every request made before
// a lookup ends is answered by that lookup (the one under way, else the
// next), so many sessions arriving at once cost one metadata request.
type lookups struct {
	kick chan struct{} // a lookup is wanted; capacity 1

	mu      sync.Mutex
	next    *lookup // the lookup requests join; nil: none asked for
	stopped error   // set when runPartitions returned
}

// lookup is one lookup's answer to the requests that joined it.
type lookup struct {
	done chan struct{} // closed once err is set
	err  error
}

func newLookups() *lookups {
	return &lookups{kick: make(chan struct{}, 1)}
}

// ask joins the next lookup, asking for one when none is asked for yet,
// and returns the channel closed when it is answered.
func (l *lookups) ask() *lookup {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped != nil {
		a := &lookup{done: make(chan struct{}), err: l.stopped}
		close(a.done)
		return a
	}
	if l.next == nil {
		l.next = &lookup{done: make(chan struct{})}
		select {
		case l.kick <- struct{}{}:
		default: // a kick is already waiting
		}
	}
	return l.next
}

// wait joins the next lookup, as ask, and returns its answer, or ctx's
// error when ctx ends first.
func (l *lookups) wait(ctx context.Context) error {
	a := l.ask()
	select {
	case <-a.done:
		return a.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// pending reports whether a request waits for a lookup.
func (l *lookups) pending() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.next != nil
}

// answer answers the requests that joined since the last answer with err.
func (l *lookups) answer(err error) {
	l.mu.Lock()
	a := l.next
	l.next = nil
	l.mu.Unlock()
	if a != nil {
		a.err = err
		close(a.done)
	}
}

// stop answers the waiting requests, and every later one, with errStopped.
func (l *lookups) stop() {
	l.mu.Lock()
	l.stopped = errStopped
	l.mu.Unlock()
	l.answer(errStopped)
}
