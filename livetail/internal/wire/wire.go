// Package wire writes livetail's frames to a WebSocket connection: the
// frames' JSON (DESIGN.md, "livetail HTTP API"), one write system call per
// frame with a deadline, pings beside the frames, the reading of what the
// peer sends (pongs, its close) with no goroutine per idle connection, and
// the pacing of live frames under load. It knows nothing of jobs, Kafka or
// HTTP routes.
package wire

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

// ErrPeerGone is the cause of a session's end when its peer left: it closed
// the connection, reset it, did not take a frame or answer a ping in time.
var ErrPeerGone = errors.New("peer gone")

// A live tail connection is mostly idle, and there are many: the buffers
// below keep an idle connection small and a busy one cheap. The WebSocket
// library writes each frame through a bufio.Writer and reads through a
// bufio.Reader that the HTTP server hands over with the connection (4 KiB
// each, held for the connection's life). Accept hands it smaller ones
// instead: clients send only pongs and close frames, and what the library
// writes during one of Conn.Write's frames is gathered by the connection
// below it (netConn) and written at once, so the library's buffer saves no
// system call and may be small.
const (
	// readBufferSize holds a client's control frame (pong, close) in one read.
	readBufferSize = 128
	// writeBufferSize is the library's write buffer: any size works.
	writeBufferSize = 16
	// maxHeldBuffer is the largest frame buffer kept for the next frame.
	maxHeldBuffer = 256 << 10
)

// Conn is a server's WebSocket connection to a client, written by one
// writer at a time (Write) and pinged beside it (Ping). Every write gives
// up after the timeout given to Accept: a peer that does not take a frame
// within it fails the write.
type Conn struct {
	ws *websocket.Conn
	nc *netConn
}

// Accept accepts a WebSocket connection (see websocket.Accept) whose
// writes time out after timeout.
func Accept(w http.ResponseWriter, r *http.Request, timeout time.Duration, opts *websocket.AcceptOptions) (*Conn, error) {
	lw := &leanWriter{ResponseWriter: w, timeout: timeout}
	ws, err := websocket.Accept(lw, r, opts)
	if err != nil {
		return nil, err
	}
	return &Conn{ws: ws, nc: lw.nc}, nil
}

// Write writes b as one text frame with one write system call. Its
// deadline is the connection's timeout, not a context: cancelling a
// library write closes the connection, and a session that ends must still
// be able to send its close frame.
func (c *Conn) Write(b []byte) error {
	c.nc.hold()
	err := c.ws.Write(context.Background(), websocket.MessageText, b)
	if ferr := c.nc.flush(); err == nil {
		err = ferr
	}
	return err
}

// Ping pings the peer and waits for its pong, which the connection's
// reader (Read) receives. It may run beside Write.
func (c *Conn) Ping(ctx context.Context) error { return c.ws.Ping(ctx) }

// SetReadLimit bounds a message from the peer: a larger one closes the
// connection (1009).
func (c *Conn) SetReadLimit(n int64) { c.ws.SetReadLimit(n) }

// Close sends an error frame with code and reason and closes the
// connection with them.
func (c *Conn) Close(code websocket.StatusCode, reason string) {
	// The library waits for the peer's close frame: its reads wait too.
	c.nc.watched.Store(false)
	if err := c.Write(ErrorFrame(code, reason)); err != nil {
		c.ws.CloseNow()
		return
	}
	c.ws.Close(code, CloseReason(reason))
}

// CloseNow closes the connection without a close frame.
func (c *Conn) CloseNow() { c.ws.CloseNow() }

// leanWriter wraps a ResponseWriter whose connection is about to become a
// WebSocket: its Hijack returns the connection as a netConn, with small
// buffers.
type leanWriter struct {
	http.ResponseWriter
	timeout time.Duration
	nc      *netConn
}

// Unwrap lets http.ResponseController reach the server's ResponseWriter.
func (w *leanWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack implements http.Hijacker.
func (w *leanWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	r := brw.Reader
	if r.Buffered() == 0 {
		// Nothing read ahead: the small buffer loses nothing. (A client
		// waits for the handshake's answer before it sends a frame.)
		r = bufio.NewReaderSize(c, readBufferSize)
	}
	w.nc = &netConn{Conn: c, timeout: w.timeout}
	if sc, ok := c.(syscall.Conn); ok {
		w.nc.raw, _ = sc.SyscallConn()
	}
	return w.nc, bufio.NewReadWriter(r, bufio.NewWriterSize(w.nc, writeBufferSize)), nil
}

// netConn is the connection under the WebSocket library. Between hold and
// flush (one frame of Conn.Write) it keeps what the library writes, in
// whatever pieces, and flush writes it with one system call; outside them
// (the library's pings and close frames) it writes through. Every write
// has a deadline: the timeout from now. While watched (Watch), a read
// between two of the peer's frames does not wait: it returns errNoData
// when the peer sent nothing more.
type netConn struct {
	net.Conn
	timeout time.Duration
	raw     syscall.RawConn // nil: not a socket (TLS)
	watched atomic.Bool
	in      frameCounter // under the library's read lock

	mu   sync.Mutex
	held *[]byte // while a frame is held; from frameBuffers
}

// frameBuffers hold frames between hold and flush: an idle connection
// holds none.
var frameBuffers = sync.Pool{New: func() any { return new([]byte) }}

// Read implements io.Reader for the library's bufio.Reader.
func (c *netConn) Read(p []byte) (n int, err error) {
	if c.watched.Load() && c.in.between() {
		n, err = readNow(c.raw, p)
	} else {
		n, err = c.Conn.Read(p)
	}
	c.in.read(p[:n])
	return n, err
}

// Write implements io.Writer for the library's bufio.Writer.
func (c *netConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.held != nil {
		*c.held = append(*c.held, p...)
		return len(p), nil
	}
	return c.write(p)
}

func (c *netConn) write(p []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// hold starts keeping what is written.
func (c *netConn) hold() {
	b := frameBuffers.Get().(*[]byte)
	c.mu.Lock()
	c.held = b
	c.mu.Unlock()
}

// flush writes what was kept since hold, and writes through again.
func (c *netConn) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.held
	c.held = nil
	var err error
	if len(*b) > 0 {
		if _, err = c.write(*b); err != nil {
			err = fmt.Errorf("writing a frame: %w", err)
		}
	}
	if cap(*b) <= maxHeldBuffer {
		*b = (*b)[:0]
		frameBuffers.Put(b)
	}
	return err
}
