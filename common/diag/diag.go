// Package diag serves a binary's metrics and health endpoints.
//
// Every logpipe binary runs one diag.Server on its metrics listener:
//
//	GET /metrics     Prometheus exposition of the server's registry
//	GET /healthz     200 "ok" while the process runs
//	GET /readyz      200 "ok" when Options.Ready returns nil, else 503 and the reason
//	GET /debug/logs  the process's recent log lines (memlog), as text or a live WebSocket
//
// Handle adds more routes on the same listener. Listen binds the address
// (so that Addr is known, e.g. for ":0"), Serve runs until its context is
// done and then shuts down gracefully; Run does both.
package diag

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"

	"github.com/logpipe/logpipe/common/logging"
	"github.com/logpipe/logpipe/common/memlog"
)

// DefaultShutdownTimeout bounds the graceful part of a shutdown.
const DefaultShutdownTimeout = 5 * time.Second

// readHeaderTimeout bounds how long a client may take to send request headers.
const readHeaderTimeout = 10 * time.Second

var (
	// ErrAlreadyListening is returned by Listen when the server has already
	// been bound.
	ErrAlreadyListening = errors.New("diag: server already listening")
	// ErrNotListening is returned by Serve when Listen has not succeeded.
	ErrNotListening = errors.New("diag: server not listening")
	// ErrServed is returned by Serve when called a second time: a Server
	// serves once.
	ErrServed = errors.New("diag: server already served")
)

// Options configures a Server.
type Options struct {
	// Addr is the TCP address to listen on, e.g. "127.0.0.1:9101"; a zero
	// port picks a free one (see Server.Addr).
	Addr string
	// Registry is the metrics registry served at /metrics; nil means a new
	// one from NewRegistry, available from Server.Registry.
	Registry *prometheus.Registry
	// Logs is served at /debug/logs; nil leaves that route out.
	Logs *memlog.Ring
	// Ready reports whether the process can do its work; nil means always
	// ready.
	Ready func() error
	// Log receives the server's own messages; nil discards them.
	Log logrus.FieldLogger
	// Name is the listener's name in the line Serve logs when it starts
	// (see logging.Listening); "" means "metrics".
	Name string
	// ShutdownTimeout bounds the graceful shutdown; zero means
	// DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
	// Public leaves /metrics and /debug/logs out, for a listener that
	// serves users (livetail's --listen): only /healthz, /readyz and the
	// routes added with Handle are served.
	Public bool
	// TLS, when set, serves https (and wss) with it instead of http.
	TLS *tls.Config
}

// NewRegistry returns a registry with the Go runtime and process collectors
// registered.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// Server is the metrics and health HTTP server. Create it with New.
type Server struct {
	opts     Options
	mux      *http.ServeMux
	inflight inflight

	mu    sync.Mutex
	ln    net.Listener
	addr  string
	state state
}

type state int

const (
	idle state = iota
	listening
	served
)

// New returns a Server with the standard routes mounted. It does not listen
// yet.
func New(opts Options) *Server {
	if opts.Registry == nil {
		opts.Registry = NewRegistry()
	}
	if opts.Ready == nil {
		opts.Ready = func() error { return nil }
	}
	if opts.Log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		opts.Log = l
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = DefaultShutdownTimeout
	}
	if opts.Name == "" {
		opts.Name = "metrics"
	}
	s := &Server{opts: opts, mux: http.NewServeMux()}

	// Routes name the method, so that a binary may add a catch-all "/" or
	// "GET /" without conflicting with them.
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, http.StatusOK, "ok")
	})
	s.mux.HandleFunc("GET /readyz", s.serveReady)
	if opts.Public {
		return s
	}
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Registry, promhttp.HandlerOpts{
		ErrorLog: opts.Log,
		Registry: opts.Registry,
	}))
	if opts.Logs != nil {
		s.mux.Handle("GET /debug/logs", opts.Logs.Handler())
	}
	return s
}

func (s *Server) serveReady(w http.ResponseWriter, _ *http.Request) {
	if err := s.opts.Ready(); err != nil {
		writeText(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
		return
	}
	writeText(w, http.StatusOK, "ok")
}

func writeText(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	io.WriteString(w, msg+"\n")
}

// Registry returns the registry served at /metrics.
func (s *Server) Registry() *prometheus.Registry {
	return s.opts.Registry
}

// Handle adds a route, with http.ServeMux pattern syntax ("GET /api/v1/jobs",
// "/"). It may be called at any time; it panics, as ServeMux does, when the
// pattern conflicts with one already registered.
//
// Handlers must return once their request context is done: Serve cancels
// it at shutdown and waits for every handler, including those of hijacked
// (WebSocket) connections, before returning.
func (s *Server) Handle(pattern string, h http.Handler) {
	s.mux.Handle(pattern, h)
}

// Handler returns the server's routes, for use without a listener (tests).
func (s *Server) Handler() http.Handler {
	return s.mux
}

// Listen binds Options.Addr. After it returns nil, Addr reports the bound
// address.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != idle {
		return ErrAlreadyListening
	}
	ln, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return fmt.Errorf("diag: listen on %q: %w", s.opts.Addr, err)
	}
	s.addr = ln.Addr().String()
	if s.opts.TLS != nil {
		ln = tls.NewListener(ln, s.opts.TLS)
	}
	s.ln = ln
	s.state = listening
	return nil
}

// Addr returns the bound address ("127.0.0.1:43127"), or "" before Listen.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Run is Listen followed by Serve.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	return s.Serve(ctx)
}

// Serve serves on the listener bound by Listen until ctx is done, then shuts
// down: it stops accepting, cancels the request contexts of running
// handlers, lets requests finish for up to Options.ShutdownTimeout, closes
// what remains, and returns once every handler has returned. It returns nil
// after a clean shutdown.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	switch s.state {
	case idle:
		s.mu.Unlock()
		return ErrNotListening
	case served:
		s.mu.Unlock()
		return ErrServed
	}
	ln, addr := s.ln, s.addr
	s.ln = nil
	s.state = served
	s.mu.Unlock()

	base, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()
	srv := &http.Server{
		Handler:           s.inflight.wrap(s.mux),
		ReadHeaderTimeout: readHeaderTimeout,
		BaseContext:       func(net.Listener) context.Context { return base },
		ErrorLog:          log.New(logWriter{s.opts.Log}, "", 0),
	}
	// Shutdown neither cancels nor waits for hijacked connections: cancel
	// the request contexts so that their handlers return.
	srv.RegisterOnShutdown(cancelBase)

	logger := s.opts.Log.WithField("addr", addr)
	logging.Listening(s.opts.Log, s.opts.Name, addr)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	var err error
	select {
	case err = <-serveErr:
		// The listener failed; stop whatever it had started.
		cancelBase()
		srv.Close()
		err = fmt.Errorf("diag: serve on %s: %w", addr, err)
	case <-ctx.Done():
		shutdownCtx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
		defer cancel()
		if e := srv.Shutdown(shutdownCtx); e != nil {
			logger.WithError(e).Warn("diag: graceful shutdown incomplete; closing connections")
			srv.Close()
			err = fmt.Errorf("diag: shut down %s: %w", addr, e)
		}
		<-serveErr
	}
	<-s.inflight.idle()
	logger.Info("diag: stopped")
	return err
}

// inflight counts running handlers.
type inflight struct {
	mu     sync.Mutex
	n      int
	waiter chan struct{} // closed when n reaches zero
}

func (f *inflight) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.n++
		f.mu.Unlock()
		defer f.done()
		h.ServeHTTP(w, r)
	})
}

func (f *inflight) done() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n--
	if f.n == 0 && f.waiter != nil {
		close(f.waiter)
		f.waiter = nil
	}
}

// idle returns a channel closed once no handler is running.
func (f *inflight) idle() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == 0 {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	if f.waiter == nil {
		f.waiter = make(chan struct{})
	}
	return f.waiter
}

// logWriter turns net/http's error log lines into warnings.
type logWriter struct{ log logrus.FieldLogger }

func (w logWriter) Write(p []byte) (int, error) {
	w.log.Warn(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
