package hub

import (
	"regexp"
	"sync"
)

// Drop describes lines a subscriber missed: Count lines of its job, the
// first at offset From and the last at offset To.
type Drop struct {
	Count    int64
	From, To int64
}

func (d *Drop) add(offset int64) {
	if d.Count == 0 {
		d.From = offset
	}
	d.To = offset
	d.Count++
}

// Item is one element of a subscriber's queue: an entry, or (Entry nil) a
// drop marker standing where lines were skipped.
type Item struct {
	Entry *Entry
	Drop  Drop
}

// Sub is one subscription: a bounded queue that the publisher fills and the
// session's single writer empties with Take.
type Sub struct {
	part   *partition
	hub    *Hub
	job    string
	filter *regexp.Regexp
	limit  int
	notify chan struct{}

	mu         sync.Mutex
	queue      []Item
	drop       Drop  // lines dropped since the last queued item
	catchingUp bool  // history is still being sent: overflow marks gapFrom instead of dropping
	gapFrom    int64 // catch-up overflow: first offset not queued, or -1
	err        error // the upstream failed for good
	closed     bool
}

// Notify returns a channel that receives a value after new items were
// queued (or the subscription failed). Several items may share one value.
func (s *Sub) Notify() <-chan struct{} { return s.notify }

// Job returns the subscribed job.
func (s *Sub) Job() string { return s.job }

// offer queues e unless the queue is full. The partition's lock is held.
func (s *Sub) offer(e *Entry) {
	if s.filter != nil && !s.filter.MatchString(e.Line) {
		return
	}
	s.mu.Lock()
	if s.err != nil || s.closed || s.gapFrom >= 0 {
		s.mu.Unlock()
		return
	}
	if len(s.queue) >= s.limit {
		if s.catchingUp {
			s.gapFrom = e.Offset
		} else {
			s.drop.add(e.Offset)
			s.hub.dropped.Inc()
		}
		s.mu.Unlock()
		return
	}
	if s.drop.Count > 0 {
		s.queue = append(s.queue, Item{Drop: s.drop})
		s.drop = Drop{}
	}
	s.queue = append(s.queue, Item{Entry: e})
	s.mu.Unlock()
	s.hub.pending.Inc()
	s.wake()
}

func (s *Sub) wake() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// fail ends the subscription with err. The partition's lock is held.
func (s *Sub) fail(err error) {
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
	s.wake()
}

// Len returns the number of queued items.
func (s *Sub) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue)
}

// Take removes and returns every queued item, followed by a drop marker for
// lines dropped since, if any. buf, when not nil, is a slice previously
// returned by Take that the caller no longer uses; it is reused. err is
// non-nil once the upstream failed for good: the caller sends what it got
// and then ends the session.
func (s *Sub) Take(buf []Item) (items []Item, err error) {
	clear(buf)
	s.mu.Lock()
	items = s.queue
	s.queue = buf[:0]
	if s.drop.Count > 0 && !s.catchingUp {
		items = append(items, Item{Drop: s.drop})
		s.drop = Drop{}
	}
	err = s.err
	s.mu.Unlock()
	n := 0
	for i := range items {
		if items[i].Entry != nil {
			n++
		}
	}
	if n > 0 {
		s.hub.pending.Sub(float64(n))
	}
	return items, err
}

// Step tells the session what to do next while catching up (see Settle).
type Step int

// Steps returned by Settle.
const (
	// StepDrain: items are queued before a gap; Take and send them, then Settle again.
	StepDrain Step = iota
	// StepGap: read history [From, To) from Kafka, then Settle again.
	StepGap
	// StepDone: caught up; everything after this comes through the queue.
	StepDone
)

// Settlement is the result of Settle.
type Settlement struct {
	Step     Step
	From, To int64 // StepGap: the history range to read
}

// Settle is called by a catching-up session after it has sent the history
// it knew about and taken the queue. If the queue overflowed meanwhile, it
// returns the range to read from Kafka and resumes queueing after it
// (StepGap). Otherwise the subscription leaves catch-up mode (StepDone). With
// final set, a gap also ends catch-up mode, so that later overflow drops
// lines instead of asking for more history.
func (s *Sub) Settle(final bool) Settlement {
	pt := s.part
	pt.mu.Lock()
	defer pt.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gapFrom >= 0 {
		if len(s.queue) > 0 {
			return Settlement{Step: StepDrain}
		}
		st := Settlement{Step: StepGap, From: s.gapFrom, To: pt.next}
		s.gapFrom = -1
		if final {
			s.catchingUp = false
		}
		return st
	}
	s.catchingUp = false
	return Settlement{Step: StepDone}
}

// Close ends the subscription and releases its queue.
func (s *Sub) Close() {
	pt := s.part
	pt.mu.Lock()
	if set := pt.subs[s.job]; set != nil {
		delete(set, s)
		if len(set) == 0 {
			delete(pt.subs, s.job)
		}
	}
	pt.mu.Unlock()
	s.mu.Lock()
	n := 0
	for i := range s.queue {
		if s.queue[i].Entry != nil {
			n++
		}
	}
	s.queue = nil
	s.closed = true
	s.mu.Unlock()
	if n > 0 {
		s.hub.pending.Sub(float64(n))
	}
}
