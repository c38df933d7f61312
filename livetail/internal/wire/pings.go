package wire

import (
	"context"
	"sync"
	"time"
)

// pingSlots is how many slots one ping interval is cut into: a Pings'
// goroutine wakes pingSlots times an interval, and pings the connections
// whose slot is due.
const pingSlots = 64

// Pings pings many connections' peers, each once an interval, from one
// goroutine: a held idle connection has no timer and no goroutine of its
// own while it waits for its next ping. Each Pinger is pinged one interval
// after it was added (to a slot, at most interval/pingSlots sooner), then
// every interval; the connections of a burst of connects are pinged one
// after the other in their slot. The pings of one slot share one deadline,
// an interval after they start, and so one timer: a ping itself holds no
// timer of its own. A Pinger that is still waiting for its last pong is
// not pinged again; it fails by itself (Pinger).
//
// The zero value is ready. The goroutine runs while any Pinger is added:
// Add starts it, and Remove of the last one stops it and waits for it.
type Pings struct {
	mu    sync.Mutex
	slots [pingSlots][]*Pinger
	n     int // Pingers added
	cur   int // the slot due at the next tick
	// ends cancels each slot's pings' deadline context: at the slot's
	// next tick, when its deadline has passed, or when the loop stops.
	ends [pingSlots]context.CancelFunc
	stop chan struct{} // closes to stop the running loop; nil: none runs
	done chan struct{} // closed when the running loop stopped
}

// Add pings p every p.Interval from now on, until Remove. All Pingers of
// one Pings have the same interval.
func (s *Pings) Add(p *Pinger) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stop == nil {
		s.stop, s.done = make(chan struct{}), make(chan struct{})
		go s.loop(p.Interval/pingSlots, p.Interval, s.stop, s.done)
	}
	// The slot just passed is next due a whole interval from now.
	p.slot = (s.cur + pingSlots - 1) % pingSlots
	p.index = len(s.slots[p.slot])
	s.slots[p.slot] = append(s.slots[p.slot], p)
	s.n++
}

// Remove stops pinging p: once it returns, no ping of p starts any more.
func (s *Pings) Remove(p *Pinger) {
	s.mu.Lock()
	slot := s.slots[p.slot]
	last := slot[len(slot)-1]
	slot[p.index], last.index = last, p.index
	slot[len(slot)-1] = nil
	s.slots[p.slot] = shrink(slot[:len(slot)-1])
	s.n--
	var done chan struct{}
	if s.n == 0 {
		close(s.stop)
		s.stop, done = nil, s.done
	}
	s.mu.Unlock()
	if done != nil {
		<-done
	}
}

// shrink returns slot with its array reallocated once it holds less than
// a quarter of it: a burst of connections that left does not keep its
// slots' arrays.
func shrink(slot []*Pinger) []*Pinger {
	if cap(slot) > 16 && len(slot) < cap(slot)/4 {
		return append(make([]*Pinger, 0, 2*len(slot)), slot...)
	}
	return slot
}

func (s *Pings) loop(tick, interval time.Duration, stop, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-stop:
			s.mu.Lock()
			for i, end := range s.ends {
				if end != nil {
					end()
					s.ends[i] = nil
				}
			}
			s.mu.Unlock()
			return
		case <-t.C:
			s.tick(interval)
		}
	}
}

// tick pings the Pingers of the slot due, with one deadline an interval
// from now. pingBy returns at once; it runs under the lock so that no ping
// starts after Remove.
func (s *Pings) tick(interval time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if end := s.ends[s.cur]; end != nil {
		end() // its deadline has passed: its pings are over
		s.ends[s.cur] = nil
	}
	if slot := s.slots[s.cur]; len(slot) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), interval)
		s.ends[s.cur] = cancel
		for _, p := range slot {
			p.pingBy(ctx)
		}
	}
	s.cur = (s.cur + 1) % pingSlots
}
