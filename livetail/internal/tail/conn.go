package tail

import (
	"bufio"
	"encoding/binary"
	"net"
	"net/http"
	"time"
)

// A live tail connection is mostly idle, and there are many: the buffers
// below keep an idle connection small and a busy one cheap. The WebSocket
// library writes each frame through a bufio.Writer and reads through a
// bufio.Reader that the HTTP server hands over with the connection (4 KiB
// each, held for the connection's life). leanWriter hands it smaller ones
// instead: clients send only pongs and close frames, and frames are written
// by frameWriter, which needs no buffer of its own for a frame's payload.
const (
	// readBufferSize holds a client's control frame (pong, close) in one read.
	readBufferSize = 128
	// writeBufferSize holds the longest WebSocket frame header; a larger
	// payload goes past the buffer, straight to frameWriter.
	writeBufferSize = 16
)

// leanWriter wraps a ResponseWriter whose connection is about to become a
// WebSocket: its Hijack returns the connection with small buffers, the
// writing one over a frameWriter whose writes time out after writeTimeout.
type leanWriter struct {
	http.ResponseWriter
	writeTimeout time.Duration
}

// Unwrap lets http.ResponseController reach the server's ResponseWriter.
func (w leanWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack implements http.Hijacker.
func (w leanWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
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
	fw := &frameWriter{conn: c, timeout: writeTimeout(w.writeTimeout)}
	return c, bufio.NewReadWriter(r, bufio.NewWriterSize(fw, writeBufferSize)), nil
}

func writeTimeout(d time.Duration) time.Duration {
	if d <= 0 {
		return DefaultPingInterval
	}
	return d
}

// frameWriter writes the WebSocket frames that reach it through a small
// bufio.Writer, each with a single write (writev) to the connection, and
// gives every write a deadline: a peer that does not take a frame within
// the timeout fails the write, and the session ends.
//
// The bufio.Writer hands over a frame's start (header and the first payload
// bytes) when its buffer is full and then the rest of the payload directly;
// frameWriter holds the start, which names the frame's length, until the
// rest comes, and writes both together. Anything it does not recognise as a
// frame's start or rest is written through at once: holding bytes is only
// ever a way to save a write, never a condition for sending them.
type frameWriter struct {
	conn    net.Conn
	timeout time.Duration

	head    [writeBufferSize]byte // a frame's start, held
	held    int                   // bytes held in head
	rest    int64                 // bytes of the current frame after those written or held
	through bool                  // out of step with the frames: write everything through
	bufs    [2][]byte
	vec     net.Buffers
}

// Write implements io.Writer for the bufio.Writer above it.
func (w *frameWriter) Write(p []byte) (int, error) {
	if w.through {
		return w.write(nil, p)
	}
	if w.rest == 0 { // p starts a frame
		size, ok := frameSize(p)
		switch {
		case ok && size > int64(len(p)) && len(p) <= len(w.head):
			w.held = copy(w.head[:], p)
			w.rest = size - int64(len(p))
			return len(p), nil
		case ok && size == int64(len(p)):
			return w.write(nil, p)
		default:
			w.through = true
			return w.write(nil, p)
		}
	}
	// p continues the current frame.
	if int64(len(p)) > w.rest {
		w.through = true
	} else {
		w.rest -= int64(len(p))
	}
	head := w.head[:w.held]
	w.held = 0
	return w.write(head, p)
}

// write writes head and p with one system call and reports p's bytes.
func (w *frameWriter) write(head, p []byte) (int, error) {
	w.conn.SetWriteDeadline(time.Now().Add(w.timeout))
	if len(head) == 0 {
		return w.conn.Write(p)
	}
	w.bufs[0], w.bufs[1] = head, p
	w.vec = w.bufs[:]
	n, err := w.vec.WriteTo(w.conn)
	w.bufs[0], w.bufs[1] = nil, nil
	n = max(0, n-int64(len(head)))
	if err == nil && n < int64(len(p)) {
		// Cannot happen with a nil error; keep io.Writer's contract anyway.
		err = net.ErrClosed
	}
	return int(n), err
}

// frameSize returns the length of the WebSocket frame that b starts with,
// header included, or false when b is shorter than the frame's header.
func frameSize(b []byte) (int64, bool) {
	if len(b) < 2 {
		return 0, false
	}
	n := int64(2)
	if b[1]&0x80 != 0 { // masked
		n += 4
	}
	var payload int64
	switch l := b[1] & 0x7f; l {
	case 126:
		if len(b) < 4 {
			return 0, false
		}
		n += 2
		payload = int64(binary.BigEndian.Uint16(b[2:]))
	case 127:
		if len(b) < 10 {
			return 0, false
		}
		n += 8
		payload = int64(binary.BigEndian.Uint64(b[2:]) & (1<<63 - 1))
	default:
		payload = int64(l)
	}
	if int64(len(b)) < n {
		return 0, false
	}
	return n + payload, true
}
