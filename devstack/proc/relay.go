package proc

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/logpipe/logpipe/devstack/internal/listener"
	"github.com/logpipe/logpipe/devstack/internal/splice"
)

// relayDial bounds how long the relay waits to connect to its target.
const relayDial = 10 * time.Second

// Relay is a loopback address that stays the same while the process behind
// it restarts on new ports: it relays each connection to the target of the
// moment (To). The test holds the relay's socket until it ends, so no other
// process can take the port, as one could between a process's exit and its
// restart on a fixed port. Without a target the address refuses
// connections, as one where nothing listens does.
type Relay struct {
	tb testing.TB
	ln *net.TCPListener
	wg sync.WaitGroup

	mu      sync.Mutex
	to      string
	changed chan struct{} // closed and replaced when to or closed changes
	pauses  int           // how many times To took the relay off the network
	conns   map[net.Conn]struct{}
	closed  bool
}

// NewRelay binds a loopback port until the test ends, without a target.
func NewRelay(tb testing.TB) *Relay {
	tb.Helper()
	ln, err := listener.Listen("127.0.0.1:0")
	if err == nil {
		err = listener.Pause(ln)
	}
	if err != nil {
		tb.Fatalf("relay: %v", err)
	}
	r := &Relay{tb: tb, ln: ln, changed: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	r.wg.Go(r.serve)
	tb.Cleanup(r.Close)
	return r
}

// Addr is the relay's address, such as 127.0.0.1:21733.
func (r *Relay) Addr() string { return r.ln.Addr().String() }

// To makes addr the target of new connections; "" takes the relay's
// address off the network: connections are refused. Connections relayed
// so far stay (they end with their process, or with Cut).
func (r *Relay) To(addr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	var err error
	switch {
	case r.to == "" && addr != "":
		err = listener.Resume(r.ln)
	case r.to != "" && addr == "":
		err = listener.Pause(r.ln)
		r.pauses++
	}
	if err != nil {
		r.tb.Errorf("relay to %q: %v", addr, err)
		return
	}
	r.to = addr
	close(r.changed)
	r.changed = make(chan struct{})
}

// Cut closes every connection relayed so far, as a network failure would.
func (r *Relay) Cut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.conns {
		c.Close()
	}
}

// Close stops listening, cuts every relayed connection and waits for the
// relay's goroutines.
func (r *Relay) Close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	for c := range r.conns {
		c.Close()
	}
	close(r.changed)
	r.mu.Unlock()
	r.ln.Close()
	r.wg.Wait()
}

func (r *Relay) serve() {
	for {
		r.mu.Lock()
		closed, to, changed, pauses := r.closed, r.to, r.changed, r.pauses
		r.mu.Unlock()
		switch {
		case closed:
			return
		case to == "":
			<-changed // paused: Accept would fail at once
			continue
		}
		c, err := r.ln.Accept()
		r.mu.Lock()
		closed, to, paused := r.closed, r.to, r.pauses != pauses
		r.mu.Unlock()
		switch {
		case closed:
			if err == nil {
				c.Close()
			}
			return
		case err != nil && (to == "" || paused):
			continue // paused while accepting, and perhaps resumed since
		case err != nil:
			r.tb.Errorf("relay %s: %v", r.Addr(), err)
			return
		case to == "":
			c.Close() // accepted just before the pause
			continue
		}
		r.wg.Go(func() { r.relay(c, to) })
	}
}

// track adds c, relayed to to, to the connections Cut and Close cut; it is
// false after Close or once the target changed.
func (r *Relay) track(c net.Conn, to string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.to != to {
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *Relay) untrack(c net.Conn) {
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
	c.Close()
}

func (r *Relay) relay(c net.Conn, to string) {
	if !r.track(c, to) {
		c.Close()
		return
	}
	defer r.untrack(c)
	u, err := net.DialTimeout("tcp", to, relayDial)
	if err != nil {
		return // as the target would: refused
	}
	if !r.track(u, to) {
		u.Close()
		return
	}
	defer r.untrack(u)
	splice.Join(c, u)
}
