package wire

import (
	"context"
	"encoding/binary"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// clientFrame returns a client frame's header (masked) for a payload of n bytes,
// followed by its payload.
func clientFrame(n int) []byte {
	var h []byte
	switch {
	case n < 126:
		h = []byte{0x8a, 0x80 | byte(n)}
	case n < 1<<16:
		h = binary.BigEndian.AppendUint16([]byte{0x82, 0x80 | 126}, uint16(n))
	default:
		h = binary.BigEndian.AppendUint64([]byte{0x82, 0x80 | 127}, uint64(n))
	}
	h = append(h, 1, 2, 3, 4) // mask key
	return append(h, make([]byte, n)...)
}

// The counter is between frames exactly where a frame ends, whatever the
// pieces the bytes come in.
func TestFrameCounter(t *testing.T) {
	tests := map[string]struct {
		frames []int // payload lengths
		piece  int   // bytes per read
	}{
		"pong, whole":                {[]int{0}, 100},
		"pongs byte by byte":         {[]int{4, 0, 125}, 1},
		"16-bit length, in pieces":   {[]int{126, 3000}, 7},
		"64-bit length, in pieces":   {[]int{70000}, 4096},
		"small and large, together":  {[]int{2, 65536, 1}, 1 << 20},
		"header split after 3 bytes": {[]int{300, 300}, 3},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var stream []byte
			ends := map[int]bool{0: true}
			for _, n := range tc.frames {
				stream = append(stream, clientFrame(n)...)
				ends[len(stream)] = true
			}
			var f frameCounter
			for at := 0; at < len(stream); {
				k := min(tc.piece, len(stream)-at)
				for i := range k { // the counter is told byte by byte here
					f.read(stream[at+i : at+i+1])
					if got := f.between(); got != ends[at+i+1] {
						t.Fatalf("after %d bytes: between %v, want %v", at+i+1, got, ends[at+i+1])
					}
				}
				at += k
			}
			// And in pieces of tc.piece at once.
			var g frameCounter
			for at := 0; at < len(stream); at += tc.piece {
				g.read(stream[at:min(at+tc.piece, len(stream))])
				if end := min(at+tc.piece, len(stream)); g.between() != ends[end] {
					t.Fatalf("after %d bytes in pieces: between %v, want %v", end, g.between(), ends[end])
				}
			}
		})
	}
}

// A watched connection that waits for its peer has no goroutine of its
// own (on Linux: the poller's one goroutine waits for all), its pings are
// answered through it, and the peer's close is noticed at once.
func TestWatchNoGoroutineWhileIdle(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("no poller on this system: a goroutine reads each connection")
	}
	const conns = 50
	gone := make(chan struct{}, conns)
	pinged := make(chan error, conns)
	release := make(chan struct{})
	srvConns := make(chan *Conn, conns)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Accept(w, r, time.Minute, nil)
		if err != nil {
			t.Errorf("accept: %v", err)
			return
		}
		stop := c.Watch(func() { gone <- struct{}{} })
		defer stop()
		defer c.CloseNow()
		srvConns <- c
		<-release
	}))
	defer srv.Close()
	defer close(release)
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	before := runtime.NumGoroutine()
	clients := make([]*websocket.Conn, conns)
	for i := range clients {
		c, _, err := websocket.Dial(t.Context(), url, nil)
		if err != nil {
			t.Fatal(err)
		}
		clients[i] = c
		c.CloseRead(context.Background()) // answers pings
	}
	servers := make([]*Conn, conns)
	for i := range servers {
		servers[i] = <-srvConns
	}
	time.Sleep(100 * time.Millisecond)
	// Per connection: the HTTP handler's goroutine (serve), the client's
	// CloseRead; the server's read has none.
	if n := runtime.NumGoroutine() - before; n > 2*conns+5 {
		t.Errorf("%d goroutines for %d watched connections, want at most %d", n, conns, 2*conns+5)
	}
	for _, s := range servers {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			pinged <- s.Ping(ctx)
		}()
	}
	for range servers {
		if err := <-pinged; err != nil {
			t.Fatalf("ping of a watched connection: %v", err)
		}
	}
	for _, c := range clients {
		c.Close(websocket.StatusNormalClosure, "")
	}
	for i := range clients {
		select {
		case <-gone:
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d peers' close noticed", i, conns)
		}
	}
}
