package wire

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
)

// A held connection must notice its peer's pongs and its leaving (a close
// frame, a reset), but the peer sends almost nothing: a pong a ping
// interval. The WebSocket library reads only from a goroutine blocked in
// Read, and such a goroutine parked for each idle connection costs its
// stack (4 KiB) and, through the collector's goal, as much heap again.
// Instead, where the connection is a socket (not TLS) and the system tells
// of readable sockets (Linux), one goroutine waits for all of them (poller)
// and a read runs only when the peer sent something: the connection below
// the library (netConn) then reads without waiting between frames, and the
// library's Read returns errNoData once every frame that came is handled.
// Within a frame, reads wait as usual. Elsewhere a goroutine per connection
// reads, as the library expects.

// errNoData is what a watched connection's read returns at a frame's
// boundary when the peer sent nothing more.
var errNoData = errors.New("no data from the peer yet")

// Watch reads what the peer sends (pongs, its close frame) whenever it
// sends something, and calls gone once, when the peer closed the
// connection or left. stop ends the watch and returns once no read runs;
// call it once the connection is closed (CloseNow or Close).
func (c *Conn) Watch(gone func()) (stop func()) {
	var once sync.Once
	w := &watch{c: c, gone: func() { once.Do(gone) }}
	if c.nc.raw != nil {
		// Watched before the first read the poller may start.
		c.nc.watched.Store(true)
		if err := peers.add(w); err == nil {
			return w.stop
		}
		c.nc.watched.Store(false)
	}
	// A goroutine reads, as the library expects.
	w.wg.Go(func() {
		for c.read() == nil {
		}
		w.gone()
	})
	return w.wg.Wait
}

// read reads and discards the peer's next message; pongs and close frames
// are handled by the library meanwhile.
func (c *Conn) read() error {
	_, _, err := c.ws.Read(context.Background())
	return err
}

// watch is one connection watched by the poller.
type watch struct {
	c    *Conn
	gone func()
	id   uint64      // the poller's number for it
	busy atomic.Bool // a read runs
	wg   sync.WaitGroup
}

// readable is the poller's call, under its lock: the peer sent something,
// or left. It starts a read unless one runs.
func (w *watch) readable() {
	if !w.busy.CompareAndSwap(false, true) {
		return
	}
	w.wg.Go(w.readAll)
}

// readAll reads until every frame that came is handled, then has the
// poller watch the socket again.
func (w *watch) readAll() {
	for {
		err := w.c.read()
		if err == nil {
			continue // a message from the client: the API has none, so it is dropped
		}
		if errors.Is(err, errNoData) {
			w.busy.Store(false)
			// Data that came since the last read makes the socket readable
			// at once again.
			if peers.rearm(w) == nil {
				return
			}
		}
		w.gone()
		return
	}
}

// stop removes the watch and waits for its read.
func (w *watch) stop() {
	peers.remove(w)
	w.wg.Wait()
}

// frameCounter follows the frames a client sends, byte by byte as they
// are read, to tell whether the reader is between two frames (RFC 6455,
// section 5.2: 2 header bytes, 0, 2 or 8 bytes of length, 4 of mask, the
// payload).
type frameCounter struct {
	hdr     [14]byte
	n       int    // header bytes read of the current frame
	payload uint64 // payload bytes still to come
}

// between reports whether the bytes read so far end at a frame's end.
func (f *frameCounter) between() bool { return f.n == 0 && f.payload == 0 }

// read follows the bytes in b.
func (f *frameCounter) read(b []byte) {
	for len(b) > 0 {
		if f.payload > 0 {
			k := min(uint64(len(b)), f.payload)
			f.payload -= k
			b = b[k:]
			continue
		}
		f.hdr[f.n] = b[0]
		f.n++
		b = b[1:]
		if f.n < 2 || f.n < headerLen(f.hdr[1]) {
			continue
		}
		f.payload, f.n = payloadLen(f.hdr[:f.n]), 0
	}
}

// headerLen is a frame's header length from its second byte.
func headerLen(b1 byte) int {
	n := 2
	switch b1 & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&0x80 != 0 { // masked
		n += 4
	}
	return n
}

// payloadLen is a frame's payload length from its header.
func payloadLen(h []byte) uint64 {
	switch n := uint64(h[1] & 0x7f); n {
	case 126:
		return uint64(h[2])<<8 | uint64(h[3])
	case 127:
		var v uint64
		for _, b := range h[2:10] {
			v = v<<8 | uint64(b)
		}
		return v
	default:
		return n
	}
}
