package memlog_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/logpipe/logpipe/common/memlog"
)

// serve starts an HTTP server for h; cancelling the returned function ends
// the request contexts of its handlers, as a server shutdown does.
func serve(t testing.TB, h http.Handler) (url string, shutdown context.CancelFunc) {
	t.Helper()
	base, cancel := context.WithCancel(context.Background())
	srv := httptest.NewUnstartedServer(h)
	srv.Config.BaseContext = func(net.Listener) context.Context { return base }
	srv.Start()
	t.Cleanup(func() {
		cancel()
		srv.Close()
	})
	return srv.URL, cancel
}

func dial(t testing.TB, url string, opts *websocket.DialOptions) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	if resp.Body != nil {
		resp.Body.Close()
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func read(t testing.TB, c *websocket.Conn) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	typ, p, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if typ != websocket.MessageText {
		t.Fatalf("message type %v, want text", typ)
	}
	return string(p)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(deadline); !cond(); {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestHandlerSendsTailThenLive(t *testing.T) {
	r := memlog.New(1 << 16)
	write(t, r, "one\ntwo\n", "partial")
	url, _ := serve(t, r.Handler())

	c := dial(t, url, nil)
	// Dial has returned: the handler is subscribed, so nothing written from
	// here on can be missed.
	write(t, r, " three\n")
	for i := range 100 {
		write(t, r, fmt.Sprintf("live %d\n", i))
	}

	want := []string{"one", "two", "partial three"}
	for i := range 100 {
		want = append(want, fmt.Sprintf("live %d", i))
	}
	for _, w := range want {
		if got := read(t, c); got != w {
			t.Fatalf("received %q, want %q", got, w)
		}
	}
	c.Close(websocket.StatusNormalClosure, "")
	waitFor(t, "the subscription to end", func() bool { return r.Subscribers() == 0 })
}

func TestHandlerCleansUpWhenClientVanishes(t *testing.T) {
	r := memlog.New(1 << 16)
	url, _ := serve(t, r.Handler())

	var conns []*websocket.Conn
	for range 3 {
		conns = append(conns, dial(t, url, nil))
	}
	if n := r.Subscribers(); n != 3 {
		t.Fatalf("Subscribers() = %d, want 3", n)
	}
	// No close frame: the TCP connection just goes away.
	for _, c := range conns {
		c.CloseNow()
	}
	waitFor(t, "subscriptions to end", func() bool { return r.Subscribers() == 0 })
}

func TestHandlerClosesOnShutdown(t *testing.T) {
	r := memlog.New(1 << 16)
	url, shutdown := serve(t, r.Handler())
	c := dial(t, url, nil)
	write(t, r, "hello\n")
	if got := read(t, c); got != "hello" {
		t.Fatalf("received %q, want hello", got)
	}

	shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	_, _, err := c.Read(ctx)
	if got := websocket.CloseStatus(err); got != websocket.StatusGoingAway {
		t.Fatalf("read after shutdown: %v (status %d), want status %d", err, got, websocket.StatusGoingAway)
	}
	waitFor(t, "the subscription to end", func() bool { return r.Subscribers() == 0 })
}

func TestHandlerClientThatDoesNotReadDoesNotBlockWriters(t *testing.T) {
	r := memlog.New(1 << 16)
	url, _ := serve(t, r.HandlerWith(memlog.HandlerOptions{Buffer: 4, WriteTimeout: 100 * time.Millisecond}))
	dial(t, url, nil) // never read

	done := make(chan struct{})
	go func() {
		defer close(done)
		line := strings.Repeat("x", 1000) + "\n"
		for range 20000 {
			write(t, r, line)
		}
	}()
	select {
	case <-done:
	case <-time.After(deadline):
		t.Fatal("writers blocked by a WebSocket client that does not read")
	}
}

func TestHandlerOrigin(t *testing.T) {
	r := memlog.New(1 << 16)
	tests := map[string]struct {
		patterns []string
		origin   string
		wantErr  bool
	}{
		"no origin header":      {},
		"cross origin rejected": {origin: "http://elsewhere.test", wantErr: true},
		"allowed by pattern":    {patterns: []string{"elsewhere.test"}, origin: "http://elsewhere.test"},
		"other origin rejected": {patterns: []string{"elsewhere.test"}, origin: "http://evil.test", wantErr: true},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			url, _ := serve(t, r.HandlerWith(memlog.HandlerOptions{OriginPatterns: tt.patterns}))
			h := http.Header{}
			if tt.origin != "" {
				h.Set("Origin", tt.origin)
			}
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: h})
			if resp != nil && resp.Body != nil {
				resp.Body.Close()
			}
			if err == nil {
				c.CloseNow()
			}
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Fatalf("dial error %v, want error: %v", err, tt.wantErr)
			}
			if tt.wantErr && resp.StatusCode != http.StatusForbidden {
				t.Fatalf("status %d, want %d", resp.StatusCode, http.StatusForbidden)
			}
		})
	}
	waitFor(t, "subscriptions to end", func() bool { return r.Subscribers() == 0 })
}

func TestHandlerPlainGet(t *testing.T) {
	r := memlog.New(1 << 16)
	write(t, r, "one\ntwo\n", "partial")
	url, _ := serve(t, r.Handler())

	tests := map[string]struct {
		method     string
		wantStatus int
		wantBody   string
	}{
		"GET":  {method: http.MethodGet, wantStatus: http.StatusOK, wantBody: "one\ntwo\n"},
		"HEAD": {method: http.MethodHead, wantStatus: http.StatusOK},
		"POST": {method: http.MethodPost, wantStatus: http.StatusMethodNotAllowed, wantBody: "Method Not Allowed\n"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, url, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.wantStatus || string(body) != tt.wantBody {
				t.Fatalf("%s = %d %q, want %d %q", tt.method, resp.StatusCode, body, tt.wantStatus, tt.wantBody)
			}
			if tt.wantStatus == http.StatusOK {
				if ct := resp.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
					t.Errorf("Content-Type %q", ct)
				}
			}
		})
	}
}

func TestHandlerManyClients(t *testing.T) {
	const clients, lines = 5, 200
	r := memlog.New(1 << 20)
	url, _ := serve(t, r.HandlerWith(memlog.HandlerOptions{Buffer: lines}))

	conns := make([]*websocket.Conn, clients)
	for i := range conns {
		conns[i] = dial(t, url, nil)
	}
	for i := range lines {
		write(t, r, fmt.Sprintf("%d\n", i))
	}
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for _, c := range conns {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			for i := range lines {
				_, p, err := c.Read(ctx)
				if err != nil {
					errs <- err
					return
				}
				if want := fmt.Sprint(i); string(p) != want {
					errs <- fmt.Errorf("received %q, want %q", p, want)
					return
				}
			}
			c.Close(websocket.StatusNormalClosure, "")
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	waitFor(t, "subscriptions to end", func() bool { return r.Subscribers() == 0 })
}

func TestHandlerPingsDoNotDisturbTheStream(t *testing.T) {
	r := memlog.New(1 << 16)
	url, _ := serve(t, r.HandlerWith(memlog.HandlerOptions{PingInterval: time.Millisecond}))
	c := dial(t, url, nil)
	for i := range 200 {
		write(t, r, fmt.Sprintf("%d\n", i))
		if got, want := read(t, c), fmt.Sprint(i); got != want {
			t.Fatalf("received %q, want %q", got, want)
		}
	}
}
