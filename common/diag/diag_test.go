package diag_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/logpipe/logpipe/common/diag"
	"github.com/logpipe/logpipe/common/logging"
	"github.com/logpipe/logpipe/common/memlog"
)

// deadline is how long an operation that should finish promptly may take
// before a test gives up; it is not a performance assertion.
const deadline = 10 * time.Second

// running is a Server serving on a loopback port.
type running struct {
	*diag.Server
	url  string
	stop context.CancelFunc
	done chan error // receives Serve's result
}

// start serves a Server built from opts on 127.0.0.1:0 until the test ends.
func start(t testing.TB, opts diag.Options) *running {
	t.Helper()
	opts.Addr = "127.0.0.1:0"
	s := diag.New(opts)
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	r := &running{Server: s, url: "http://" + s.Addr(), stop: stop, done: make(chan error, 1)}
	go func() { r.done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		stop()
		select {
		case <-r.done:
		case <-time.After(deadline):
			t.Error("Serve did not return after its context was cancelled")
		}
	})
	return r
}

// get fetches url and returns the status and body.
func get(t testing.TB, url string) (int, string) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: deadline}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func dial(t testing.TB, url string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func read(t testing.TB, c *websocket.Conn) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	_, p, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(p)
}

func TestMetrics(t *testing.T) {
	s := start(t, diag.Options{})
	lines := prometheus.NewCounter(prometheus.CounterOpts{Name: "agent_lines_read_total", Help: "Lines read."})
	s.Registry().MustRegister(lines)
	lines.Add(3)

	code, body := get(t, s.url+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics = %d", code)
	}
	for _, want := range []string{"go_goroutines ", "process_cpu_seconds_total ", "agent_lines_read_total 3\n"} {
		if !strings.Contains(body, want) {
			t.Errorf("GET /metrics lacks %q", want)
		}
	}
}

func TestMetricsUsesGivenRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "transfer_docs_indexed_total", Help: "Docs."})
	reg.MustRegister(c)
	s := start(t, diag.Options{Registry: reg})
	if s.Registry() != reg {
		t.Fatal("Registry() is not the registry given in Options")
	}
	_, body := get(t, s.url+"/metrics")
	if !strings.Contains(body, "transfer_docs_indexed_total 0\n") {
		t.Errorf("GET /metrics lacks the custom counter:\n%s", body)
	}
	if strings.Contains(body, "go_goroutines") {
		t.Errorf("GET /metrics has Go collector metrics not registered in the given registry")
	}
}

func TestHealthAndReadiness(t *testing.T) {
	tests := map[string]struct {
		ready      func() error
		path       string
		wantStatus int
		wantBody   string
	}{
		"healthz":                {path: "/healthz", wantStatus: http.StatusOK, wantBody: "ok\n"},
		"healthz when not ready": {ready: func() error { return errors.New("x") }, path: "/healthz", wantStatus: http.StatusOK, wantBody: "ok\n"},
		"readyz without check":   {path: "/readyz", wantStatus: http.StatusOK, wantBody: "ok\n"},
		"readyz ready":           {ready: func() error { return nil }, path: "/readyz", wantStatus: http.StatusOK, wantBody: "ok\n"},
		"readyz not ready": {
			ready:      func() error { return errors.New("kafka: no broker reachable at 127.0.0.1:9092") },
			path:       "/readyz",
			wantStatus: http.StatusServiceUnavailable,
			wantBody:   "not ready: kafka: no broker reachable at 127.0.0.1:9092\n",
		},
		"no logs ring":  {path: "/debug/logs", wantStatus: http.StatusNotFound, wantBody: "404 page not found\n"},
		"unknown route": {path: "/nope", wantStatus: http.StatusNotFound, wantBody: "404 page not found\n"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			s := start(t, diag.Options{Ready: tt.ready})
			code, body := get(t, s.url+tt.path)
			if code != tt.wantStatus || body != tt.wantBody {
				t.Errorf("GET %s = %d %q, want %d %q", tt.path, code, body, tt.wantStatus, tt.wantBody)
			}
		})
	}
}

func TestDebugLogs(t *testing.T) {
	ring := memlog.New(1 << 16)
	fmt.Fprintln(ring, "started")
	s := start(t, diag.Options{Logs: ring})

	if code, body := get(t, s.url+"/debug/logs"); code != http.StatusOK || body != "started\n" {
		t.Errorf("GET /debug/logs = %d %q", code, body)
	}

	c := dial(t, "ws://"+s.Addr()+"/debug/logs")
	fmt.Fprintln(ring, "live")
	for _, want := range []string{"started", "live"} {
		if got := read(t, c); got != want {
			t.Fatalf("received %q, want %q", got, want)
		}
	}
}

// A public server answers health and readiness but serves neither the
// metrics nor the process's own log, not even to a catch-all route.
func TestPublicLeavesOutMetricsAndLogs(t *testing.T) {
	ring := memlog.New(1 << 16)
	fmt.Fprintln(ring, "secret client address")
	s := start(t, diag.Options{Logs: ring, Public: true})
	s.Handle("GET /", http.NotFoundHandler())
	for _, path := range []string{"/metrics", "/debug/logs"} {
		if code, body := get(t, s.url+path); code != http.StatusNotFound || strings.Contains(body, "secret") || strings.Contains(body, "go_goroutines") {
			t.Errorf("GET %s = %d %q, want 404", path, code, body)
		}
	}
	if code, _ := get(t, s.url+"/healthz"); code != http.StatusOK {
		t.Errorf("GET /healthz = %d", code)
	}
	if code, _ := get(t, s.url+"/readyz"); code != http.StatusOK {
		t.Errorf("GET /readyz = %d", code)
	}
}

func TestHandleAddsRoutes(t *testing.T) {
	// A binary may add a catch-all with or without a method.
	for _, catchAll := range []string{"/", "GET /"} {
		t.Run(catchAll, func(t *testing.T) {
			s := start(t, diag.Options{})
			s.Handle(catchAll, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				io.WriteString(w, "viewer")
			}))
			s.Handle("GET /api/v1/jobs", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				io.WriteString(w, "[]")
			}))
			tests := map[string]string{
				"/index.html":  "viewer",
				"/api/v1/jobs": "[]",
				"/healthz":     "ok\n",
			}
			for path, want := range tests {
				if _, body := get(t, s.url+path); body != want {
					t.Errorf("GET %s = %q, want %q", path, body, want)
				}
			}
		})
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	ring := memlog.New(1 << 16)
	s := start(t, diag.Options{Logs: ring})
	c := dial(t, "ws://"+s.Addr()+"/debug/logs")
	fmt.Fprintln(ring, "hello")
	if got := read(t, c); got != "hello" {
		t.Fatalf("received %q, want hello", got)
	}

	// The client keeps reading, as a real one does, and so answers the
	// server's close frame.
	streamErr := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		_, _, err := c.Read(ctx)
		streamErr <- err
	}()

	s.stop()
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("Serve after cancel = %v, want nil", err)
		}
	case <-time.After(deadline):
		t.Fatal("Serve did not return after its context was cancelled")
	}
	s.done <- nil // for the cleanup

	if err := <-streamErr; websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Errorf("log stream ended with %v, want close status %d", err, websocket.StatusGoingAway)
	}
	if n := ring.Subscribers(); n != 0 {
		t.Errorf("Subscribers() after shutdown = %d, want 0", n)
	}
	if _, err := net.Dial("tcp", s.Addr()); err == nil {
		t.Error("still accepting connections after shutdown")
	}
}

func TestRun(t *testing.T) {
	s := diag.New(diag.Options{Addr: "127.0.0.1:0"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	// Addr is set once Run has bound the listener.
	for end := time.Now().Add(deadline); s.Addr() == ""; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("Run did not listen")
		}
	}
	if code, _ := get(t, "http://"+s.Addr()+"/healthz"); code != http.StatusOK {
		t.Errorf("GET /healthz = %d", code)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
	case <-time.After(deadline):
		t.Fatal("Run did not return after its context was cancelled")
	}
}

// TestServeLogsListening checks the line that tells a process's starter
// which port it got.
func TestServeLogsListening(t *testing.T) {
	for name, want := range map[string]string{"": "metrics", "http": "http"} {
		t.Run(want, func(t *testing.T) {
			log, err := logging.New("info", "json", io.Discard, nil)
			if err != nil {
				t.Fatal(err)
			}
			hook := logtest.NewLocal(log)
			r := start(t, diag.Options{Name: name, Log: log})
			for end := time.Now().Add(deadline); ; time.Sleep(5 * time.Millisecond) {
				if e := hook.LastEntry(); e != nil {
					line, err := e.String()
					if err != nil {
						t.Fatal(err)
					}
					gotName, addr, ok := logging.ParseListening(strings.TrimSpace(line))
					if !ok || gotName != want || addr != r.Addr() {
						t.Fatalf("first line %q: listener %q on %s, want %q on %s", line, gotName, addr, want, r.Addr())
					}
					return
				}
				if time.Now().After(end) {
					t.Fatal("nothing logged")
				}
			}
		})
	}
}

func TestShutdownWaitsForHandlers(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	s := diag.New(diag.Options{Addr: "127.0.0.1:0", ShutdownTimeout: 50 * time.Millisecond})
	s.Handle("GET /stuck", http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		close(entered)
		<-release // ignores its context
	}))
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()

	clientDone := make(chan struct{})
	go func() {
		defer close(clientDone)
		client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		if resp, err := client.Get("http://" + s.Addr() + "/stuck"); err == nil {
			resp.Body.Close()
		}
	}()
	<-entered
	cancel()

	select {
	case err := <-done:
		t.Fatalf("Serve returned %v while a handler was still running", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), s.Addr()) {
			t.Fatalf("Serve = %v, want a deadline error naming %s", err, s.Addr())
		}
	case <-time.After(deadline):
		t.Fatal("Serve did not return after the handler did")
	}
	<-clientDone
}

func TestListenErrors(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()

	tests := map[string]string{
		"address in use": taken.Addr().String(),
		"bad port":       "127.0.0.1:http-ish",
	}
	for name, addr := range tests {
		t.Run(name, func(t *testing.T) {
			err := diag.New(diag.Options{Addr: addr}).Run(context.Background())
			if err == nil || !strings.Contains(err.Error(), addr) {
				t.Fatalf("Run = %v, want an error naming %s", err, addr)
			}
		})
	}
}

func TestLifecycleErrors(t *testing.T) {
	s := diag.New(diag.Options{Addr: "127.0.0.1:0"})
	if err := s.Serve(context.Background()); !errors.Is(err, diag.ErrNotListening) {
		t.Fatalf("Serve before Listen = %v, want %v", err, diag.ErrNotListening)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); !errors.Is(err, diag.ErrAlreadyListening) {
		t.Fatalf("second Listen = %v, want %v", err, diag.ErrAlreadyListening)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Serve(ctx); err != nil {
		t.Fatalf("Serve = %v", err)
	}
	if err := s.Serve(ctx); !errors.Is(err, diag.ErrServed) {
		t.Fatalf("second Serve = %v, want %v", err, diag.ErrServed)
	}
}
