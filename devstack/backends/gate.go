package backends

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logpipe/logpipe/devstack/internal/listener"
	"github.com/logpipe/logpipe/devstack/internal/splice"
)

// listen binds addr; see listener.Listen.
var listen = listener.Listen

// gate is a net.Listener whose address can be taken off the network (Down:
// connections are refused, and every accepted connection is cut) and put
// back (Up), while whoever calls Accept keeps waiting through the outage. It
// is how the stack fakes a backend outage without losing the backend's
// state.
//
// The socket stays bound through the outage, so that no other process can
// take the port meanwhile (as one could between a close and a new bind):
// Down pauses it and Up resumes it (package listener).
type gate struct {
	addr net.Addr
	ln   *net.TCPListener

	mu      sync.Mutex
	down    bool
	closed  bool
	changed chan struct{} // closed and replaced when down or closed changes
	conns   map[*gateConn]struct{}

	busy atomic.Int64 // Accept, Read and Write calls in progress
}

// newGate binds addr (see listen) and returns the gate, up.
func newGate(addr string) (*gate, error) {
	ln, err := listen(addr)
	if err != nil {
		return nil, err
	}
	return &gate{
		addr:    ln.Addr(),
		ln:      ln,
		changed: make(chan struct{}),
		conns:   map[*gateConn]struct{}{},
	}, nil
}

// signal wakes Accept callers waiting for a change; mu must be held.
func (g *gate) signal() {
	close(g.changed)
	g.changed = make(chan struct{})
}

// Accept waits for a connection, through outages, until Close.
func (g *gate) Accept() (net.Conn, error) {
	g.busy.Add(1)
	defer g.busy.Add(-1)
	for {
		g.mu.Lock()
		if g.closed {
			g.mu.Unlock()
			return nil, net.ErrClosed
		}
		down, changed := g.down, g.changed
		g.mu.Unlock()
		if down {
			<-changed
			continue
		}
		c, err := g.ln.Accept()
		g.mu.Lock()
		up := !g.down && !g.closed
		if err != nil {
			g.mu.Unlock()
			if up {
				return nil, err
			}
			continue // taken down or closed while accepting
		}
		if !up {
			g.mu.Unlock()
			c.Close()
			continue
		}
		gc := &gateConn{Conn: c, g: g}
		g.conns[gc] = struct{}{}
		g.mu.Unlock()
		return gc, nil
	}
}

// Addr is the address, the same through Down and Up.
func (g *gate) Addr() net.Addr { return g.addr }

// Down stops listening, so that connections are refused, and cuts every
// accepted connection.
func (g *gate) Down() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return net.ErrClosed
	}
	var err error
	if !g.down {
		err = listener.Pause(g.ln)
		g.down = true
		g.signal()
	}
	conns := g.takeConns()
	g.mu.Unlock()
	closeAll(conns)
	return err
}

// Up listens again after Down.
func (g *gate) Up() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return net.ErrClosed
	}
	if !g.down {
		return nil
	}
	if err := listener.Resume(g.ln); err != nil {
		return err
	}
	g.down = false
	g.signal()
	return nil
}

// Close closes the socket and every accepted connection for good.
func (g *gate) Close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	err := g.ln.Close()
	g.signal()
	conns := g.takeConns()
	g.mu.Unlock()
	closeAll(conns)
	return err
}

// Quiet waits up to limit until no Accept, Read or Write call on the gate
// or its connections is in progress, that is until whoever served them has
// noticed that they are closed.
func (g *gate) Quiet(limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for g.busy.Load() > 0 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// takeConns empties the connection set; mu must be held.
func (g *gate) takeConns() []*gateConn {
	conns := make([]*gateConn, 0, len(g.conns))
	for c := range g.conns {
		conns = append(conns, c)
	}
	clear(g.conns)
	return conns
}

func closeAll(conns []*gateConn) {
	for _, c := range conns {
		c.Conn.Close()
	}
}

// gateConn is a connection accepted through a gate.
type gateConn struct {
	net.Conn
	g    *gate
	once sync.Once
}

func (c *gateConn) Read(p []byte) (int, error) {
	c.g.busy.Add(1)
	defer c.g.busy.Add(-1)
	return c.Conn.Read(p)
}

func (c *gateConn) Write(p []byte) (int, error) {
	c.g.busy.Add(1)
	defer c.g.busy.Add(-1)
	return c.Conn.Write(p)
}

func (c *gateConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.g.mu.Lock()
		delete(c.g.conns, c)
		c.g.mu.Unlock()
	})
	return err
}

// handshakeLimit bounds a TLS handshake on a forwarded connection.
const handshakeLimit = 10 * time.Second

// forwarder serves a gate by relaying each connection to target. It puts a
// backend that cannot be handed a listener (etcd) behind a gate. With a TLS
// configuration it serves TLS and relays what the TLS connection carries.
type forwarder struct {
	g      *gate
	target net.Addr
	tls    *tls.Config // nil: plain TCP
	wg     sync.WaitGroup
}

// startForwarder starts relaying connections accepted by g to target, over
// TLS with tc unless it is nil; Close stops it.
func startForwarder(g *gate, target net.Addr, tc *tls.Config) *forwarder {
	f := &forwarder{g: g, target: target, tls: tc}
	f.wg.Go(f.serve)
	return f
}

func (f *forwarder) serve() {
	for {
		c, err := f.g.Accept()
		if err != nil {
			return
		}
		f.wg.Go(func() { f.relay(c) })
	}
}

func (f *forwarder) relay(c net.Conn) {
	defer c.Close()
	if f.tls != nil {
		tc := tls.Server(c, f.tls)
		hctx, cancel := context.WithTimeout(context.Background(), handshakeLimit)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			return // no certificate of the CA, or not TLS at all
		}
		c = tc
	}
	u, err := net.Dial(f.target.Network(), f.target.String())
	if err != nil {
		return
	}
	defer u.Close()
	splice.Join(c, u)
}

// Close closes the gate and waits for every relay to end.
func (f *forwarder) Close() error {
	err := f.g.Close()
	f.wg.Wait()
	return err
}
