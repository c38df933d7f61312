package tail

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// pinger pings a session's peer from a goroutine of its own, so that the
// session's frames keep going out while a pong is awaited: a live line
// queued meanwhile is written at once, not a round trip to the client
// later. coder/websocket allows Ping beside Write (every frame is written
// under the connection's own lock, whole), and the pong is read by the
// session's reader. The connection still has one writer of entries: the
// ping's frame is the library's.
//
// A peer that does not answer within the ping interval ends the session
// through its context, with errPeerGone, as one that does not take a frame
// within the interval does (frameWriter): the same close, the same metric.
// One ping is outstanding at a time.
//
// The goroutine belongs to the session: wait returns once it has stopped,
// at the latest when the connection is closed or the interval has passed.
type pinger struct {
	c        conn
	interval time.Duration
	fail     context.CancelCauseFunc // ends the session with its cause
	out      atomic.Bool             // a ping is outstanding
	wg       sync.WaitGroup
}

// ping starts a ping unless one is outstanding, and returns at once.
func (p *pinger) ping() {
	if !p.out.CompareAndSwap(false, true) {
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer p.out.Store(false)
		// Not the session's context: cancelling a ping while its frame is
		// being written closes the connection, and a session that ends
		// must still be able to send its close frame.
		ctx, cancel := context.WithTimeout(context.Background(), p.interval)
		defer cancel()
		if err := p.c.Ping(ctx); err != nil {
			p.fail(fmt.Errorf("%w: no pong within %s: %w", errPeerGone, p.interval, err))
		}
	}()
}

// wait returns once no ping is outstanding. Call it after the session's
// last ping was started: when its writers have stopped.
func (p *pinger) wait() { p.wg.Wait() }
