package wire

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Pinger pings a connection's peer from a goroutine of its own, so that
// the connection's frames keep going out while a pong is awaited: a live
// line queued meanwhile is written at once, not a round trip to the client
// later. coder/websocket allows Ping beside Write (every frame is written
// under the connection's own lock, whole), and the pong is read by the
// connection's reader. The connection still has one writer of frames: the
// ping's frame is the library's.
//
// A peer that does not answer within the interval ends the session
// through Fail, with ErrPeerGone, as one that does not take a frame within
// the timeout does (Conn.Write). One ping is outstanding at a time.
//
// The goroutine belongs to the Pinger's owner: Wait returns once it has
// stopped, at the latest when the connection is closed or the interval has
// passed.
type Pinger struct {
	Conn     interface{ Ping(context.Context) error }
	Interval time.Duration
	Fail     context.CancelCauseFunc // ends the session with its cause

	out   atomic.Bool // a ping is outstanding
	wg    sync.WaitGroup
	slot  int // in Pings, under its lock
	index int
}

// Ping starts a ping unless one is outstanding, and returns at once.
func (p *Pinger) Ping() {
	if !p.out.CompareAndSwap(false, true) {
		return
	}
	// Not the session's context: cancelling a ping while its frame is
	// being written closes the connection, and a session that ends must
	// still be able to send its close frame.
	ctx, cancel := context.WithTimeout(context.Background(), p.Interval)
	p.start(ctx, cancel)
}

// pingBy starts a ping that fails at ctx's deadline unless one is
// outstanding, and returns at once: Pings gives the pings of one slot one
// deadline, and so one timer.
func (p *Pinger) pingBy(ctx context.Context) {
	if p.out.CompareAndSwap(false, true) {
		p.start(ctx, nil)
	}
}

// start pings in a goroutine of p's; cancel, if not nil, is called when
// the ping is over.
func (p *Pinger) start(ctx context.Context, cancel context.CancelFunc) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer p.out.Store(false)
		if cancel != nil {
			defer cancel()
		}
		if err := p.Conn.Ping(ctx); err != nil {
			p.Fail(fmt.Errorf("%w: no pong within %s: %w", ErrPeerGone, p.Interval, err))
		}
	}()
}

// Wait returns once no ping is outstanding. Call it after the last ping
// was started: when the connection's writers have stopped.
func (p *Pinger) Wait() { p.wg.Wait() }
