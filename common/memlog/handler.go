package memlog

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"
)

// Handler defaults.
const (
	DefaultWriteTimeout = 5 * time.Second
	DefaultPingInterval = 30 * time.Second
)

// HandlerOptions configures the handler returned by Ring.HandlerWith.
// The zero value is what Ring.Handler uses.
type HandlerOptions struct {
	// OriginPatterns lists the origins, besides the request's own host,
	// allowed to open the WebSocket (websocket.AcceptOptions.OriginPatterns).
	OriginPatterns []string
	// Buffer is the number of lines queued for one connection before lines
	// are dropped for it (DefaultBuffer if below 1).
	Buffer int
	// WriteTimeout bounds each message write and each ping round trip
	// (DefaultWriteTimeout if zero).
	WriteTimeout time.Duration
	// PingInterval is how often the connection is pinged, so that a peer
	// that vanished without closing is noticed (DefaultPingInterval if zero).
	PingInterval time.Duration
}

// Handler returns an http.Handler for the ring with default options.
// See HandlerWith.
func (r *Ring) Handler() http.Handler {
	return r.HandlerWith(HandlerOptions{})
}

// HandlerWith returns an http.Handler that serves the ring's lines.
//
// A WebSocket request receives the retained lines, then every new line, one
// text message per line without its newline. Any line completed after the
// handshake is delivered unless the connection is too slow, in which case a
// DroppedNotice takes the place of the skipped lines. The connection ends
// when the peer leaves, a write or ping times out, or the request context
// is done; in the last case the handler closes with status 1001 (going away).
//
// Any other GET or HEAD request receives the retained lines as text/plain,
// one per line.
func (r *Ring) HandlerWith(opts HandlerOptions) http.Handler {
	if opts.Buffer < 1 {
		opts.Buffer = DefaultBuffer
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = DefaultWriteTimeout
	}
	if opts.PingInterval <= 0 {
		opts.PingInterval = DefaultPingInterval
	}
	return &handler{ring: r, opts: opts}
}

type handler struct {
	ring *Ring
	opts HandlerOptions
}

func (h *handler) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if !strings.EqualFold(req.Header.Get("Upgrade"), "websocket") {
		h.servePlain(w, req)
		return
	}

	// Subscribe before the handshake completes, so that a client that sees
	// the connection open misses no line written after that.
	past, lines, cancel := h.ring.SnapshotAndSubscribe(h.opts.Buffer)
	defer cancel()

	c, err := websocket.Accept(w, req, &websocket.AcceptOptions{OriginPatterns: h.opts.OriginPatterns})
	if err != nil {
		return // Accept has answered the request.
	}
	defer c.CloseNow()

	// peer is done when the client closes or the connection breaks. It is
	// not derived from the request context, so that a server shutdown can
	// still send a close frame.
	peer := c.CloseRead(context.Background())
	done := req.Context().Done()

	for _, line := range past {
		select {
		case <-done:
			c.Close(websocket.StatusGoingAway, "server shutting down")
			return
		case <-peer.Done():
			return
		default:
		}
		if err := h.write(peer, c, line); err != nil {
			return
		}
	}

	ping := time.NewTicker(h.opts.PingInterval)
	defer ping.Stop()
	for {
		select {
		case <-done:
			c.Close(websocket.StatusGoingAway, "server shutting down")
			return
		case <-peer.Done():
			return
		case line, ok := <-lines:
			if !ok {
				return
			}
			if err := h.write(peer, c, line); err != nil {
				return
			}
		case <-ping.C:
			ctx, stop := context.WithTimeout(peer, h.opts.WriteTimeout)
			err := c.Ping(ctx)
			stop()
			if err != nil {
				return
			}
		}
	}
}

func (h *handler) write(ctx context.Context, c *websocket.Conn, line string) error {
	ctx, cancel := context.WithTimeout(ctx, h.opts.WriteTimeout)
	defer cancel()
	return c.Write(ctx, websocket.MessageText, []byte(line))
}

func (h *handler) servePlain(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if req.Method == http.MethodHead {
		return
	}
	bw := bufio.NewWriter(w)
	for _, line := range h.ring.Lines() {
		bw.WriteString(line)
		bw.WriteByte('\n')
	}
	bw.Flush()
}
