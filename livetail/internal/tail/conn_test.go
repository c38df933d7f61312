package tail

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// leanServer serves one WebSocket connection through leanWriter and hands
// it to serve, which runs in the handler.
func leanServer(t testing.TB, timeout time.Duration, serve func(*websocket.Conn)) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(leanWriter{w, timeout}, r, nil)
		if err != nil {
			t.Errorf("accept: %v", err)
			return
		}
		defer c.CloseNow()
		serve(c)
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

// Messages of every size reach the client intact through the small write
// buffer, whatever their frame header's length, with pings (control frames
// the library writes itself) in between, and the close handshake works.
func TestLeanConnFrames(t *testing.T) {
	sizes := []int{0, 1, 13, 14, 15, 16, 17, 125, 126, 127, 4000, 65535, 65536, 1 << 20}
	payload := func(n int) []byte { return bytes.Repeat([]byte{'a' + byte(n%26)}, n) }
	url := leanServer(t, 5*time.Second, func(c *websocket.Conn) {
		ctx := c.CloseRead(context.Background())
		for _, n := range sizes {
			if err := c.Write(ctx, websocket.MessageText, payload(n)); err != nil {
				t.Errorf("write %d bytes: %v", n, err)
				return
			}
			if err := c.Ping(ctx); err != nil {
				t.Errorf("ping after %d bytes: %v", n, err)
				return
			}
		}
		c.Close(websocket.StatusNormalClosure, strings.Repeat("r", 100))
	})
	ctx := t.Context()
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.SetReadLimit(2 << 20)
	for _, n := range sizes {
		_, got, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("reading the %d-byte message: %v", n, err)
		}
		if !bytes.Equal(got, payload(n)) {
			t.Fatalf("message of %d bytes arrived as %d bytes", n, len(got))
		}
	}
	_, _, err = c.Read(ctx)
	if code := websocket.CloseStatus(err); code != websocket.StatusNormalClosure {
		t.Fatalf("after the messages: %v, want a normal close", err)
	}
}

// A peer that stops taking frames fails the writes: the server's socket
// buffer fills, and the next write gives up at its deadline.
func TestLeanConnWriteTimeout(t *testing.T) {
	done := make(chan error, 1)
	url := leanServer(t, 200*time.Millisecond, func(c *websocket.Conn) {
		big := make([]byte, 1<<20)
		for {
			if err := c.Write(context.Background(), websocket.MessageBinary, big); err != nil {
				done <- err
				return
			}
		}
	})
	c, _, err := websocket.Dial(t.Context(), url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	// The client reads nothing.
	if err := <-done; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write to a peer that reads nothing failed with %v, want its deadline exceeded", err)
	}
}

func TestFrameSize(t *testing.T) {
	for name, c := range map[string]struct {
		b    []byte
		size int64
		ok   bool
	}{
		"empty":            {nil, 0, false},
		"one byte":         {[]byte{0x81}, 0, false},
		"no payload":       {[]byte{0x81, 0}, 2, true},
		"short":            {[]byte{0x81, 125}, 127, true},
		"16-bit length":    {[]byte{0x81, 126, 0x01, 0x00}, 4 + 256, true},
		"16-bit truncated": {[]byte{0x81, 126, 0x01}, 0, false},
		"64-bit length":    {[]byte{0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0}, 10 + 65536, true},
		"64-bit truncated": {[]byte{0x82, 127, 0, 0, 0, 0, 0, 1, 0}, 0, false},
		"masked":           {[]byte{0x81, 0x85, 1, 2, 3, 4}, 2 + 4 + 5, true},
		"masked truncated": {[]byte{0x81, 0x85, 1, 2, 3}, 0, false},
	} {
		size, ok := frameSize(c.b)
		if size != c.size || ok != c.ok {
			t.Errorf("%s: frameSize = %d, %v, want %d, %v", name, size, ok, c.size, c.ok)
		}
	}
}

// BenchmarkLeanConnWrite writes 1 KiB entries frames to a client over
// loopback TCP: one writev each, and no allocation.
func BenchmarkLeanConnWrite(b *testing.B) {
	frame := bytes.Repeat([]byte("x"), 1024)
	conns := make(chan *websocket.Conn)
	release := make(chan struct{})
	url := leanServer(b, 5*time.Second, func(c *websocket.Conn) {
		c.CloseRead(context.Background())
		conns <- c
		<-release
	})
	client, _, err := websocket.Dial(b.Context(), url, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer client.CloseNow()
	go func() { // the client reads and discards every message
		for {
			_, r, err := client.Reader(context.Background())
			if err != nil {
				return
			}
			io.Copy(io.Discard, r)
		}
	}()
	server := <-conns
	defer close(release)
	b.ReportAllocs()
	for b.Loop() {
		if err := server.Write(context.Background(), websocket.MessageText, frame); err != nil {
			b.Fatal(err)
		}
	}
}
