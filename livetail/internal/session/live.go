package session

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logpipe/logpipe/livetail/internal/wire"
)

// The live phase of a session has no goroutine of its own while it waits.
// Most live tails are idle most of the time, and a goroutine parked for each
// of them costs its stack. Instead, whatever gives the session work kicks
// it: the hub when entries were queued (once per published batch), and the
// session's context when it ends (shutdown, the maximum session, the
// token's expiry, or the peer gone, which the connection's reader notices
// and a ping that goes unanswered causes). Pings need no pump: the
// engine's one ping schedule (wire.Pings) pings every live session's
// client, beside its frames. A kick starts a pump goroutine unless one
// runs; the pump does what is due and exits when nothing is left. At most
// one pump runs at a time, so the connection keeps exactly one writer.
//
// Batching adapts to load: the pump takes everything queued and sends it in
// one frame (up to --batch-size entries), so a line that comes after a
// quiet spell goes out at once, alone, and lines that come while a frame is
// being written, or while the pump waits for a CPU, go together in the next
// one. A session whose frames fall behind the deliveries to it is paced
// (wire.Pace): it keeps --batch-wait between its frames for a while, so
// that fewer, fuller frames let it catch up.

// Pump states.
const (
	pumpIdle  int32 = iota // no pump runs; a kick starts one
	pumpBusy               // a pump runs
	pumpAgain              // a pump runs and was kicked after it last looked
	pumpEnded              // the session ended; kicks do nothing
)

// live is the state of a session's live phase.
type live struct {
	ctx   context.Context
	end   func(cause error) // called once, by the last pump, with why the session ended
	state atomic.Int32
	stop  func() bool // unregisters the kick on ctx's end
	pace  *wire.Pace
	paced *time.Timer // kicks when a paced frame is due
	held  atomic.Bool // paced is set: the hub's kicks can wait for it
}

// GoLive hands the session over to its pumps once history is sent and
// returns at once. end is called with the cause, from a pump goroutine,
// when the session ends; the session's connection is then still open (for
// the close frame), and nothing of the session runs any more after end
// returns.
func (s *Session) GoLive(ctx context.Context, end func(cause error)) {
	s.ping.Stop() // history's ticker; from here on the engine pings (wire.Pings)
	s.ping = nil
	s.frame = nil // history's frame buffer
	// Kicks during the set-up (the context may have ended already) only
	// make the first pump, started below, look again.
	s.live.state.Store(pumpBusy)
	s.live.ctx, s.live.end = ctx, end
	s.e.pings.Add(&s.pings)
	s.live.stop = context.AfterFunc(ctx, s.kick)
	s.live.pace = s.e.Pace.Session()
	s.sub.OnWake(s.queued)
	// What was queued after catch-up's last look goes out now.
	go s.pump()
}

// queued is the hub's kick: entries were queued. While the next frame is
// paced, the pacing timer's kick sends them.
func (s *Session) queued() {
	s.live.pace.Woken()
	if !s.live.held.Load() {
		s.kick()
	}
}

// kick makes sure a pump looks at the session after this call.
func (s *Session) kick() {
	st := &s.live.state
	for {
		switch st.Load() {
		case pumpIdle:
			if st.CompareAndSwap(pumpIdle, pumpBusy) {
				go s.pump()
				return
			}
		case pumpBusy:
			if st.CompareAndSwap(pumpBusy, pumpAgain) {
				return
			}
		default: // pumpAgain: the running pump looks again; pumpEnded
			return
		}
	}
}

// pump does what is due until nothing is left, or ends the session.
func (s *Session) pump() {
	st := &s.live.state
	for {
		st.Store(pumpBusy) // kicks from here on make it look again
		buf := getFrame()
		s.frame = (*buf)[:0]
		err := s.step()
		*buf, s.frame = s.frame[:0], nil
		frames.Put(buf)
		if err != nil {
			s.finish(err)
			return
		}
		if st.CompareAndSwap(pumpBusy, pumpIdle) {
			return
		}
	}
}

// step sends what is queued.
func (s *Session) step() error {
	ctx := s.live.ctx
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if s.sub.Len() > 0 {
		now := time.Now()
		if wait := s.live.pace.Hold(now); wait > 0 {
			s.live.held.Store(true)
			if s.live.paced == nil {
				s.live.paced = time.AfterFunc(wait, func() {
					s.live.held.Store(false)
					s.kick()
				})
			} else {
				s.live.paced.Reset(wait)
			}
			return nil
		}
		s.live.pace.Taken(now)
	}
	return s.takeAndSend()
}

// finish ends the live phase with cause (the context's cause when it has
// ended: however the last write failed, that says why).
func (s *Session) finish(cause error) {
	s.live.state.Store(pumpEnded)
	s.e.pings.Remove(&s.pings)
	if s.live.paced != nil {
		s.live.paced.Stop()
	}
	s.live.stop()
	s.live.pace.Stop()
	if ctx := s.live.ctx; ctx.Err() != nil {
		cause = context.Cause(ctx)
	}
	s.live.end(cause)
}

// frames are frame buffers, shared by the sessions' pumps: an idle session
// holds none.
var frames = sync.Pool{New: func() any { return new([]byte) }}

func getFrame() *[]byte { return frames.Get().(*[]byte) }
