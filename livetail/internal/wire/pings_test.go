package wire

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// pingConn counts pings and the times they were sent; a silent one never
// answers.
type pingConn struct {
	silent bool
	mu     sync.Mutex
	at     []time.Time
}

func (c *pingConn) Ping(ctx context.Context) error {
	c.mu.Lock()
	c.at = append(c.at, time.Now())
	c.mu.Unlock()
	if c.silent {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func (c *pingConn) pings() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Time(nil), c.at...)
}

// Every connection added is pinged once an interval, the first a whole
// interval (less at most one slot) after it was added, whenever that was;
// once removed it is pinged no more, and the schedule's goroutine stops
// with the last one (synctest fails a test that leaves it running).
func TestPingsEveryInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval = 5 * time.Second
		var s Pings
		conns := make([]*pingConn, 100)
		pingers := make([]*Pinger, len(conns))
		added := make([]time.Time, len(conns))
		for i := range conns {
			conns[i] = &pingConn{}
			pingers[i] = &Pinger{Conn: conns[i], Interval: interval, Fail: func(error) { t.Errorf("conn %d failed", i) }}
			s.Add(pingers[i])
			added[i] = time.Now()
			time.Sleep(37 * time.Millisecond) // spread over most of an interval
		}
		time.Sleep(time.Minute)
		for i, p := range pingers {
			s.Remove(p)
			p.Wait()
			at := conns[i].pings()
			if first := at[0].Sub(added[i]); first > interval || first < interval-interval/pingSlots {
				t.Fatalf("conn %d: first ping %v after it was added, want %v less at most %v", i, first, interval, interval/pingSlots)
			}
			for j := 1; j < len(at); j++ {
				if d := at[j].Sub(at[j-1]); d != interval {
					t.Fatalf("conn %d: pings %v apart, want %v", i, d, interval)
				}
			}
		}
		removed := time.Now()
		time.Sleep(time.Minute)
		for i, c := range conns {
			if at := c.pings(); at[len(at)-1].After(removed) {
				t.Fatalf("conn %d pinged after it was removed", i)
			}
		}
	})
}

// A peer that does not answer a ping within the interval fails its
// connection with ErrPeerGone, as before the schedule was shared: within
// two intervals of being added; the others are pinged on.
func TestPingsSilentPeer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval = 5 * time.Second
		var s Pings
		silent, ok := &pingConn{silent: true}, &pingConn{}
		var failed error
		var failedAt time.Time
		ps := &Pinger{Conn: silent, Interval: interval, Fail: func(err error) {
			if failed == nil { // the session would end at the first
				failed, failedAt = err, time.Now()
			}
		}}
		po := &Pinger{Conn: ok, Interval: interval, Fail: func(err error) { t.Errorf("answering peer failed: %v", err) }}
		start := time.Now()
		s.Add(ps)
		s.Add(po)
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if !errors.Is(failed, ErrPeerGone) {
			t.Fatalf("silent peer failed with %v, want ErrPeerGone", failed)
		}
		if d := failedAt.Sub(start); d > 2*interval {
			t.Fatalf("silent peer failed %v after it was added, want at most two intervals", d)
		}
		if n := len(ok.pings()); n != 6 {
			t.Fatalf("answering peer pinged %d times in 30s, want 6", n)
		}
		s.Remove(ps)
		s.Remove(po)
		ps.Wait()
		po.Wait()
	})
}
