package hub

import (
	"slices"
	"sync"
	"sync/atomic"
)

// Drop describes lines a subscriber missed on one partition: Count lines of
// its job, the first at offset From and the last at offset To.
type Drop struct {
	Partition int32
	Count     int64
	From, To  int64
}

// Item is one element of a subscriber's queue: an entry, or (Entry nil) a
// drop marker standing where lines were skipped.
type Item struct {
	Entry *Entry
	Drop  Drop
}

// Sub is one subscription: a bounded queue that the publishers fill and the
// session's single writer empties with Take.
type Sub struct {
	hub    *Hub
	jobs   []string // distinct
	deps   []int32
	limit  int
	notify chan struct{}
	onWake atomic.Pointer[func()]

	mu         sync.Mutex
	parts      []*partition // where it is registered, by partition id
	joins      []int64      // the partitions' next offsets when it was registered
	queue      []Item
	drops      []Drop          // per partition, lines dropped since its last queued entry
	catchingUp bool            // history is still being sent: overflow marks gapFrom instead of dropping
	gapFrom    map[int32]int64 // catch-up overflow: per partition, the first offset not queued
	err        error           // the upstream failed for good
	closed     bool
	woken      uint64 // the last Publish call that queued an item here (see offer)
}

// join registers s on pt, under each of its jobs, at pt's current next
// offset. The hub's lock is held.
func (s *Sub) join(pt *partition) {
	pt.mu.Lock()
	for _, job := range s.jobs {
		set := pt.subs[job]
		if set == nil {
			set = map[*Sub]struct{}{}
			pt.subs[job] = set
		}
		set[s] = struct{}{}
	}
	next := pt.next
	pt.mu.Unlock()
	s.mu.Lock()
	s.parts = append(s.parts, pt)
	s.joins = append(s.joins, next)
	s.mu.Unlock()
}

// Notify returns a channel that receives a value after new items were
// queued (or the subscription failed). Several items may share one value.
func (s *Sub) Notify() <-chan struct{} { return s.notify }

// OnWake sets f to be called, besides the value sent on Notify's channel,
// whenever items were queued or the subscription failed: once per Publish
// call that queued items, after the call queued all of them. f is called
// from the publisher's goroutine and must not block.
func (s *Sub) OnWake(f func()) { s.onWake.Store(&f) }

// Jobs returns the subscribed jobs.
func (s *Sub) Jobs() []string { return s.jobs }

// offer queues e unless the queue is full. The partition's lock is held.
// It reports whether the subscriber is to be woken after the Publish call
// numbered call: true for the first entry of that call it queued.
func (s *Sub) offer(e *Entry, call uint64) (wake bool) {
	s.mu.Lock()
	if s.err != nil || s.closed {
		s.mu.Unlock()
		return false
	}
	if _, gap := s.gapFrom[e.Partition]; gap {
		s.mu.Unlock()
		return false
	}
	if len(s.queue) >= s.limit {
		if s.catchingUp {
			s.gapFrom[e.Partition] = e.Offset
		} else {
			s.dropLocked(e)
			s.hub.dropped.Inc()
		}
		s.mu.Unlock()
		return false
	}
	if i := s.dropIndex(e.Partition); i >= 0 {
		s.queue = append(s.queue, Item{Drop: s.drops[i]})
		s.drops = slices.Delete(s.drops, i, i+1)
	}
	s.queue = append(s.queue, Item{Entry: e})
	wake = s.woken != call
	s.woken = call
	s.mu.Unlock()
	s.hub.pending.Inc()
	return wake
}

func (s *Sub) dropIndex(p int32) int {
	return slices.IndexFunc(s.drops, func(d Drop) bool { return d.Partition == p })
}

func (s *Sub) dropLocked(e *Entry) {
	i := s.dropIndex(e.Partition)
	if i < 0 {
		s.drops = append(s.drops, Drop{Partition: e.Partition, From: e.Offset})
		i = len(s.drops) - 1
	}
	s.drops[i].To = e.Offset
	s.drops[i].Count++
}

func (s *Sub) wake() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
	if f := s.onWake.Load(); f != nil {
		(*f)()
	}
}

// fail ends the subscription with err. The partition's lock is held.
func (s *Sub) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
	s.wake()
}

// Len returns the number of queued items.
func (s *Sub) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue)
}

// Take removes and returns every queued item, followed by drop markers for
// lines dropped since, if any. buf, when not nil, is a slice previously
// returned by Take that the caller no longer uses; it is reused. err is
// non-nil once the upstream failed for good: the caller sends what it got
// and then ends the session.
func (s *Sub) Take(buf []Item) (items []Item, err error) {
	clear(buf)
	s.mu.Lock()
	items = s.queue
	s.queue = buf[:0]
	if len(s.drops) > 0 && !s.catchingUp {
		for _, d := range s.drops {
			items = append(items, Item{Drop: d})
		}
		s.drops = s.drops[:0]
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
	// StepGap: read the Gaps from Kafka, then Settle again.
	StepGap
	// StepDone: caught up; everything after this comes through the queue.
	StepDone
)

// Gap is a range of a partition to read from Kafka: [From, To).
type Gap struct {
	Partition int32
	From, To  int64
}

// Settlement is the result of Settle.
type Settlement struct {
	Step Step
	Gaps []Gap // StepGap: the history ranges to read, by partition
}

// Settle is called by a catching-up session after it has sent the history
// it knew about and taken the queue. If the queue overflowed meanwhile, it
// returns the ranges to read from Kafka, one per partition that overflowed,
// and resumes queueing after them (StepGap). Otherwise the subscription
// leaves catch-up mode (StepDone). With final set, a gap also ends catch-up
// mode, so that later overflow drops lines instead of asking for more
// history.
func (s *Sub) Settle(final bool) Settlement {
	s.mu.Lock()
	if len(s.gapFrom) == 0 {
		s.catchingUp = false
		s.mu.Unlock()
		return Settlement{Step: StepDone}
	}
	if len(s.queue) > 0 {
		s.mu.Unlock()
		return Settlement{Step: StepDrain}
	}
	if final {
		// From here an overflow drops; what overflowed before is read.
		s.catchingUp = false
	}
	gapped := make([]*partition, 0, len(s.gapFrom))
	for p := range s.gapFrom {
		gapped = append(gapped, s.parts[p])
	}
	s.mu.Unlock()
	slices.SortFunc(gapped, func(a, b *partition) int { return int(a.id - b.id) })
	st := Settlement{Step: StepGap}
	for _, pt := range gapped {
		// The partition's lock first, as offer takes them: its next offset
		// and the gap are then consistent.
		pt.mu.Lock()
		s.mu.Lock()
		if from, ok := s.gapFrom[pt.id]; ok {
			st.Gaps = append(st.Gaps, Gap{Partition: pt.id, From: from, To: pt.next})
			delete(s.gapFrom, pt.id)
		}
		s.mu.Unlock()
		pt.mu.Unlock()
	}
	return st
}

// Close ends the subscription and releases its queue.
func (s *Sub) Close() {
	h := s.hub
	h.mu.Lock()
	delete(h.subs, s)
	s.mu.Lock()
	parts := s.parts
	s.mu.Unlock()
	for _, pt := range parts {
		pt.mu.Lock()
		for _, job := range s.jobs {
			if set := pt.subs[job]; set != nil {
				delete(set, s)
				if len(set) == 0 {
					delete(pt.subs, job)
				}
			}
		}
		pt.mu.Unlock()
	}
	h.mu.Unlock()
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
