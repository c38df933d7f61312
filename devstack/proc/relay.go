package proc

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// relayDial bounds how long the relay waits to connect to its target.
const relayDial = 10 * time.Second

// Relay is a loopback address that stays the same while the process behind
// it restarts on new ports: it relays each connection to the target of the
// moment (To). The test holds its listener until it ends, so no other
// process can take the port, as one could between a process's exit and its
// restart on a fixed port. A connection that comes while there is no
// target, or that the target refuses, is closed at once.
type Relay struct {
	ln net.Listener
	wg sync.WaitGroup

	mu     sync.Mutex
	to     string
	conns  map[net.Conn]struct{}
	closed bool
}

// NewRelay listens on a loopback port until the test ends.
func NewRelay(tb testing.TB) *Relay {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("relay: %v", err)
	}
	r := &Relay{ln: ln, conns: map[net.Conn]struct{}{}}
	r.wg.Go(r.serve)
	tb.Cleanup(r.Close)
	return r
}

// Addr is the relay's address, such as 127.0.0.1:41733.
func (r *Relay) Addr() string { return r.ln.Addr().String() }

// To makes addr the target of connections from now on; "" closes them as
// they come. Connections already relayed stay as they are.
func (r *Relay) To(addr string) {
	r.mu.Lock()
	r.to = addr
	r.mu.Unlock()
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
	r.mu.Unlock()
	r.ln.Close()
	r.wg.Wait()
}

func (r *Relay) serve() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		to := r.to
		r.mu.Unlock()
		r.wg.Go(func() { r.relay(c, to) })
	}
}

// track adds c to the connections Close cuts; it is false after Close.
func (r *Relay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
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
	if !r.track(c) {
		c.Close()
		return
	}
	defer r.untrack(c)
	if to == "" {
		return
	}
	u, err := net.DialTimeout("tcp", to, relayDial)
	if err != nil {
		return
	}
	if !r.track(u) {
		u.Close()
		return
	}
	defer r.untrack(u)
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go pipe(u, c)
	go pipe(c, u)
	<-done
	// One side ended: end the other, so that its copy returns too.
	c.Close()
	u.Close()
	<-done
}
