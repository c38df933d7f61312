package wire

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// server serves one WebSocket connection through Accept and hands it to
// serve, which runs in the handler while the connection is watched (which
// receives pongs and the close).
func server(t testing.TB, timeout time.Duration, serve func(*Conn)) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Accept(w, r, timeout, nil)
		if err != nil {
			t.Errorf("accept: %v", err)
			return
		}
		stop := c.Watch(func() {})
		defer stop()
		defer c.CloseNow()
		serve(c)
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

// readAll dials url and reads every message until the close; it fails the
// test if the close is not normal.
func readAll(t *testing.T, url string) [][]byte {
	t.Helper()
	c, _, err := websocket.Dial(t.Context(), url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.SetReadLimit(2 << 20)
	var got [][]byte
	for {
		_, b, err := c.Read(t.Context())
		if err != nil {
			if code := websocket.CloseStatus(err); code != websocket.StatusNormalClosure {
				t.Fatalf("after %d messages: %v, want a normal close", len(got), err)
			}
			return got
		}
		got = append(got, b)
	}
}

func payload(n int) []byte { return bytes.Repeat([]byte{'a' + byte(n%26)}, n) }

// Messages of every size reach the client intact through the small write
// buffer, whatever their frame header's length, with pings (control frames
// the library writes itself) in between, and the close handshake works.
func TestConnFrames(t *testing.T) {
	sizes := []int{0, 1, 13, 14, 15, 16, 17, 125, 126, 127, 4000, 65535, 65536, 1 << 20}
	url := server(t, 5*time.Second, func(c *Conn) {
		ctx := t.Context()
		for _, n := range sizes {
			if err := c.Write(payload(n)); err != nil {
				t.Errorf("write %d bytes: %v", n, err)
				return
			}
			if err := c.Ping(ctx); err != nil {
				t.Errorf("ping after %d bytes: %v", n, err)
				return
			}
		}
		c.ws.Close(websocket.StatusNormalClosure, strings.Repeat("r", 100))
	})
	got := readAll(t, url)
	if len(got) != len(sizes) {
		t.Fatalf("%d messages, want %d", len(got), len(sizes))
	}
	for i, n := range sizes {
		if !bytes.Equal(got[i], payload(n)) {
			t.Fatalf("message of %d bytes arrived as %d bytes", n, len(got[i]))
		}
	}
}

// Pings run beside the writes (a Pinger's goroutine): every frame still
// arrives whole and in order.
func TestConnPingsBesideWrites(t *testing.T) {
	const n = 300
	url := server(t, 5*time.Second, func(c *Conn) {
		var wg sync.WaitGroup
		stop := make(chan struct{})
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := c.Ping(ctx)
				cancel()
				if err != nil {
					t.Errorf("ping: %v", err)
					return
				}
			}
		})
		for i := range n {
			if err := c.Write(payload(i * 37)); err != nil {
				t.Errorf("write %d: %v", i, err)
				break
			}
		}
		close(stop)
		wg.Wait()
		c.Close(websocket.StatusNormalClosure, "done")
	})
	got := readAll(t, url)
	if len(got) != n+1 { // and the error frame before the close
		t.Fatalf("%d messages, want %d", len(got), n+1)
	}
	for i := range n {
		if !bytes.Equal(got[i], payload(i*37)) {
			t.Fatalf("message %d: %d bytes, want %d", i, len(got[i]), i*37)
		}
	}
	if !bytes.Contains(got[n], []byte(`"type":"error"`)) {
		t.Fatalf("last message %s, want the error frame", got[n])
	}
}

// A frame is written to the connection with one write, header and payload
// together, whatever pieces the library writes it in.
func TestConnOneWritePerFrame(t *testing.T) {
	var mu sync.Mutex
	var writes []int
	url := server(t, 5*time.Second, func(c *Conn) {
		c.nc.mu.Lock()
		c.nc.Conn = countingConn{c.nc.Conn, func(n int) {
			mu.Lock()
			writes = append(writes, n)
			mu.Unlock()
		}}
		c.nc.mu.Unlock()
		for _, n := range []int{5, 200, 70000} {
			if err := c.Write(payload(n)); err != nil {
				t.Errorf("write: %v", err)
			}
		}
		c.CloseNow()
	})
	c, _, err := websocket.Dial(t.Context(), url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	for range 3 {
		if _, _, err := c.Read(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []int{2 + 5, 4 + 200, 10 + 70000}; !slices.Equal(writes, want) {
		t.Fatalf("writes of %v bytes, want %v", writes, want)
	}
}

// countingConn reports the length of every write.
type countingConn struct {
	net.Conn
	wrote func(int)
}

func (c countingConn) Write(p []byte) (int, error) {
	c.wrote(len(p))
	return c.Conn.Write(p)
}

// A peer that stops taking frames fails the writes: the server's socket
// buffer fills, and the next write gives up at its deadline.
func TestConnWriteTimeout(t *testing.T) {
	done := make(chan error, 1)
	url := server(t, 200*time.Millisecond, func(c *Conn) {
		big := make([]byte, 1<<20)
		for {
			if err := c.Write(big); err != nil {
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

// BenchmarkConnWrite writes 1 KiB entries frames to a client over
// loopback TCP: one write each, and no allocation.
func BenchmarkConnWrite(b *testing.B) {
	frame := bytes.Repeat([]byte("x"), 1024)
	conns := make(chan *Conn)
	release := make(chan struct{})
	url := server(b, 5*time.Second, func(c *Conn) {
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
		if err := server.Write(frame); err != nil {
			b.Fatal(err)
		}
	}
}
