// Package api is livetail's HTTP surface: the WebSocket live tail at
// /api/v1/tail, earlier lines at /api/v1/history and the jobs list at
// /api/v1/jobs (DESIGN.md, "livetail
// HTTP API"). It parses and checks a tail request (query parameters,
// authentication, the job allowed, the per-user and per-process connection
// limits), hands the connection to a session (package session), and maps
// every way a session is refused or ends to a close code, preceded by an
// error frame (except when the peer is gone).
//
// Each WebSocket connection has exactly one writer at a time (the
// session's) and is watched from here for the peer leaving (wire.Conn.Watch),
// which also receives its pongs.
package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/logpipe/logpipe/livetail/internal/auth"
	"github.com/logpipe/logpipe/livetail/internal/hub"
	"github.com/logpipe/logpipe/livetail/internal/limit"
	"github.com/logpipe/logpipe/livetail/internal/session"
	"github.com/logpipe/logpipe/livetail/internal/wire"
)

// Close codes beyond RFC 6455's.
const (
	StatusBadRequest   websocket.StatusCode = 4400
	StatusUnauthorized websocket.StatusCode = 4401
	StatusForbidden    websocket.StatusCode = 4403
	StatusMaxSession   websocket.StatusCode = 4408
	StatusTooMany      websocket.StatusCode = 4429
)

// Defaults of Options.
const (
	DefaultMaxConns     = 10000
	DefaultMaxSession   = 24 * time.Hour
	DefaultPingInterval = 5 * time.Second
	DefaultClientBuffer = 1024
	DefaultBatchSize    = 256
	DefaultBatchWait    = 20 * time.Millisecond
	DefaultMaxTail      = 10000
	DefaultMaxScan      = 1_000_000

	// maxClientMessage bounds a frame from the client; the API has no
	// client messages, so anything larger closes the connection (1009).
	maxClientMessage = 4 << 10
)

// Options configures a Handler. Zero values take the defaults above.
type Options struct {
	Auth           auth.Authenticator // auth.None if nil
	Limiter        limit.Limiter      // per-user limit; required
	MaxConns       int                // connections of this process
	MaxSession     time.Duration
	PingInterval   time.Duration // also bounds every write
	ClientBuffer   int           // entries queued per client before dropping
	BatchSize      int           // entries per frame
	BatchWait      time.Duration // under load, the least time between two live frames of a session (see wire.Pacer)
	MaxTail        int
	MaxScan        int64    // records one session's history reads scan at most
	AllowedOrigins []string // origin patterns besides the request's own host
	// Watch makes the live consumers read the partitions a session needs,
	// from before it subscribes until release (upstream.Client.Watch);
	// nil: every partition is read anyway.
	Watch func(ctx context.Context, parts []int32) (release func(), err error)
	// Place is the job placement hook (session.Engine.Place); nil: none.
	Place func(job string) []int32
	// Archive holds what Kafka no longer retains (session.Engine.Archive); nil: none.
	Archive session.Archive
	Log     logrus.FieldLogger
	Metrics *Metrics
}

func (o *Options) defaults() {
	if o.Auth == nil {
		o.Auth = auth.None{}
	}
	if o.MaxConns <= 0 {
		o.MaxConns = DefaultMaxConns
	}
	if o.MaxSession <= 0 {
		o.MaxSession = DefaultMaxSession
	}
	if o.PingInterval <= 0 {
		o.PingInterval = DefaultPingInterval
	}
	if o.ClientBuffer <= 0 {
		o.ClientBuffer = DefaultClientBuffer
	}
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.BatchWait < 0 {
		o.BatchWait = 0
	}
	if o.MaxTail <= 0 {
		o.MaxTail = DefaultMaxTail
	}
	if o.MaxScan <= 0 {
		o.MaxScan = DefaultMaxScan
	}
	if o.Log == nil {
		l := logrus.New()
		l.Out = nopWriter{}
		o.Log = l
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
}

// Rejection reasons of livetail_connections_rejected_total.
const (
	ReasonHandshake     = "handshake" // not a valid WebSocket request, or origin not allowed
	ReasonBadRequest    = "bad_request"
	ReasonUnauthorized  = "unauthenticated"
	ReasonForbidden     = "forbidden"
	ReasonUserLimit     = "user_limit"
	ReasonServerLimit   = "server_limit"
	ReasonUpstream      = "upstream"
	ReasonShuttingDown  = "shutting_down"
	reasonNotWebSockets = "not_websocket"
)

// Metrics are the sessions' Prometheus metrics.
type Metrics struct {
	Connections prometheus.Gauge
	Sent        prometheus.Counter
	Resent      prometheus.Counter // lines the agent sent twice, skipped by a session
	Rejected    *prometheus.CounterVec
	Closed      *prometheus.CounterVec
	Pages       *prometheus.CounterVec // /api/v1/history answers, by HTTP status
}

// NewMetrics creates the metrics and registers them on reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "livetail_connections", Help: "Open live tail sessions.",
		}),
		Sent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "livetail_entries_sent_total", Help: "Entries written to clients (history and live).",
		}),
		Resent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "livetail_resent_lines_skipped_total", Help: "Lines not sent to a client because its session had sent them already: the agent sent them twice (after a crash) and they carry a source position sent before.",
		}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "livetail_connections_rejected_total", Help: "Tail connections refused, by reason.",
		}, []string{"reason"}),
		Closed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "livetail_sessions_closed_total", Help: "Sessions ended, by close code (gone: the peer left without a close frame or stopped answering).",
		}, []string{"code"}),
		Pages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "livetail_history_pages_total", Help: "Pages of earlier lines answered (GET /api/v1/history), by HTTP status.",
		}, []string{"code"}),
	}
	for _, r := range []string{ReasonHandshake, ReasonBadRequest, ReasonUnauthorized, ReasonForbidden, ReasonUserLimit, ReasonServerLimit, ReasonUpstream, ReasonShuttingDown} {
		m.Rejected.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.Connections, m.Sent, m.Resent, m.Rejected, m.Closed, m.Pages)
	}
	return m
}

// Handler serves /api/v1/tail.
type Handler struct {
	opts     Options
	hub      *hub.Hub
	sessions *session.Engine
	log      logrus.FieldLogger
	m        *Metrics

	base context.Context
	stop context.CancelCauseFunc

	mu      sync.Mutex
	closing bool
	wg      sync.WaitGroup
	conns   atomic.Int64
}

// New returns a handler serving sessions from h and hist.
func New(h *hub.Hub, hist session.History, opts Options) *Handler {
	opts.defaults()
	base, stop := context.WithCancelCause(context.Background())
	return &Handler{
		opts: opts, hub: h, log: opts.Log, m: opts.Metrics, base: base, stop: stop,
		sessions: &session.Engine{
			Hub: h, History: hist, Place: opts.Place, Archive: opts.Archive,
			PingInterval: opts.PingInterval, BatchSize: opts.BatchSize, MaxScan: opts.MaxScan,
			Pace: wire.NewPacer(opts.BatchWait),
			Sent: opts.Metrics.Sent, Resent: opts.Metrics.Resent,
		},
	}
}

// Pacer returns the sessions' pacing, for the metrics: how many sessions
// fell behind and are paced (see wire.Pace).
func (h *Handler) Pacer() *wire.Pacer { return h.sessions.Pace }

// Shutdown closes every session with 1001 and waits for them to end; later
// requests are answered 503.
func (h *Handler) Shutdown() {
	h.mu.Lock()
	h.closing = true
	h.mu.Unlock()
	h.stop(session.ErrShutdown)
	h.wg.Wait()
}

func (h *Handler) enter() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closing {
		return false
	}
	h.wg.Add(1)
	return true
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		h.m.Rejected.WithLabelValues(reasonNotWebSockets).Inc()
		http.Error(w, "this is a WebSocket endpoint: connect with a WebSocket client (see /api/v1/tail in the README)", http.StatusUpgradeRequired)
		return
	}
	if !h.enter() {
		h.m.Rejected.WithLabelValues(ReasonShuttingDown).Inc()
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	}
	handedOver := false
	defer func() {
		if !handedOver {
			h.wg.Done()
		}
	}()
	log := h.log.WithFields(logrus.Fields{"remote": r.RemoteAddr, "request": auth.RedactURL(r)})
	c, err := wire.Accept(w, r, h.opts.PingInterval, &websocket.AcceptOptions{OriginPatterns: h.opts.AllowedOrigins})
	if err != nil {
		h.m.Rejected.WithLabelValues(ReasonHandshake).Inc()
		log.WithError(err).Info("WebSocket handshake refused")
		return
	}
	c.SetReadLimit(maxClientMessage)
	handedOver = h.serve(c, r, log)
}

// cleanup is what a session undoes when it ends, last step first.
type cleanup []func()

func (u *cleanup) add(f func()) { *u = append(*u, f) }

func (u cleanup) run() {
	for i := len(u) - 1; i >= 0; i-- {
		u[i]()
	}
}

// serve runs a session on c. Once history is sent it hands the session to
// its live phase, which needs no goroutine while it waits (see goLive), and
// returns true: the session then ends by itself, and calls h.wg.Done. When
// the session ended before, serve returns false.
func (h *Handler) serve(c *wire.Conn, r *http.Request, log logrus.FieldLogger) (handedOver bool) {
	var undo cleanup
	defer func() {
		if !handedOver {
			undo.run()
		}
	}()
	undo.add(func() { c.CloseNow() })
	id, err := h.opts.Auth.Authenticate(r)
	if err != nil {
		h.refuse(c, log, StatusUnauthorized, ReasonUnauthorized, err.Error())
		return false
	}
	log = log.WithField("user", id.User)
	p, err := ParseParams(r.URL.Query(), time.Now(), h.opts.MaxTail)
	if err != nil {
		h.refuse(c, log, StatusBadRequest, ReasonBadRequest, err.Error())
		return false
	}
	if job, ok := allowed(id, p.Jobs); !ok {
		h.refuse(c, log, StatusForbidden, ReasonForbidden, fmt.Sprintf("job: user %s may not tail job %s", id.User, job))
		return false
	}
	if n := h.conns.Add(1); n > int64(h.opts.MaxConns) {
		h.conns.Add(-1)
		h.refuse(c, log, websocket.StatusTryAgainLater, ReasonServerLimit, fmt.Sprintf("this server is at its connection limit (%d): try again later", h.opts.MaxConns))
		return false
	}
	undo.add(func() { h.conns.Add(-1) })
	release, err := h.opts.Limiter.Acquire(h.base, id.User)
	switch {
	case errors.Is(err, limit.ErrLimit):
		h.refuse(c, log, StatusTooMany, ReasonUserLimit, err.Error())
		return false
	case err != nil:
		h.refuse(c, log, websocket.StatusGoingAway, ReasonShuttingDown, session.ErrShutdown.Error())
		return false
	}
	undo.add(release)
	home, deps, err := h.sessions.Partitions(h.base, &p)
	var pe *session.ParamError
	switch {
	case errors.As(err, &pe):
		h.refuse(c, log, StatusBadRequest, ReasonBadRequest, err.Error())
		return false
	case err != nil && h.base.Err() != nil: // the lookup ended with the server
		h.refuse(c, log, websocket.StatusGoingAway, ReasonShuttingDown, session.ErrShutdown.Error())
		return false
	case err != nil:
		h.refuse(c, log, websocket.StatusInternalError, ReasonUpstream, session.UpstreamError{Err: err}.Error())
		return false
	}
	if h.opts.Watch != nil {
		// Before subscribing: the join offsets are then where the
		// partitions' consumers are.
		release, err := h.opts.Watch(h.base, deps)
		if err != nil {
			h.refuse(c, log, websocket.StatusInternalError, ReasonUpstream, session.UpstreamError{Err: err}.Error())
			return false
		}
		undo.add(release)
	}
	sub, joins, err := h.hub.Subscribe(p.Jobs, deps, h.opts.ClientBuffer)
	if err != nil {
		h.refuse(c, log, websocket.StatusInternalError, ReasonUpstream, session.UpstreamError{Err: err}.Error())
		return false
	}
	undo.add(sub.Close)

	h.m.Connections.Inc()
	undo.add(h.m.Connections.Dec)

	ctx, cancel := context.WithCancelCause(h.base)
	undo.add(func() { cancel(nil) })
	// The server cancels request contexts when it shuts down (and when
	// the handler returns, so this holds until the session goes live; then
	// the handler's Shutdown ends it).
	stopAfter := context.AfterFunc(r.Context(), func() { cancel(session.ErrShutdown) })
	undo.add(func() { stopAfter() })
	// One timer for the session's end, whichever comes first: its maximum
	// duration or its token's expiry.
	last, why := h.opts.MaxSession, session.ErrMaxSession
	if !id.Expires.IsZero() && time.Until(id.Expires) < last {
		last, why = time.Until(id.Expires), session.ErrExpired
	}
	ends := time.AfterFunc(last, func() { cancel(why) })
	undo.add(func() { ends.Stop() })

	// Watching the peer only notices it leaving: a close frame, a reset,
	// or the connection closed after a failed write or ping (and reads its
	// pongs). It needs no goroutine while the peer sends nothing.
	stopWatch := c.Watch(func() { cancel(wire.ErrPeerGone) })
	undo.add(func() {
		c.CloseNow()
		stopWatch()
	})

	s := h.sessions.New(c, p, home, deps, sub, joins, cancel)
	// After the session's end closed the connection (h.end), so that an
	// outstanding ping returns at once.
	undo.add(func() {
		c.CloseNow()
		s.Wait()
	})
	if err := s.Open(ctx); err != nil {
		log.WithField("code", h.end(c, err)).WithError(err).Debug("session ended")
		return false
	}
	stopAfter()
	// An idle session keeps what it logs at its end as the strings it needs.
	remote, request, user := r.RemoteAddr, auth.RedactURL(r), id.User
	s.GoLive(ctx, func(cause error) {
		code := h.end(c, cause)
		h.log.WithFields(logrus.Fields{"remote": remote, "request": request, "user": user, "code": code}).WithError(cause).Debug("session ended")
		undo.run()
		h.wg.Done()
	})
	return true
}

// allowed reports whether id may tail every one of jobs; if not, it
// returns the first one refused.
func allowed(id auth.Identity, jobs []string) (refused string, ok bool) {
	for _, job := range jobs {
		if !id.Allows(job) {
			return job, false
		}
	}
	return "", true
}

// end closes the connection as cause says and returns the close code for
// the metric.
func (h *Handler) end(c *wire.Conn, cause error) string {
	var pe *session.ParamError
	var code websocket.StatusCode
	reason := cause.Error()
	switch {
	case errors.Is(cause, wire.ErrPeerGone):
		c.CloseNow()
		h.m.Closed.WithLabelValues("gone").Inc()
		return "gone"
	case errors.Is(cause, session.ErrShutdown):
		code = websocket.StatusGoingAway
	case errors.Is(cause, session.ErrMaxSession):
		code = StatusMaxSession
	case errors.Is(cause, session.ErrExpired):
		code = StatusUnauthorized
	case errors.As(cause, &pe):
		code = StatusBadRequest
	case errors.Is(cause, hub.ErrUnavailable):
		code, reason = websocket.StatusInternalError, session.UpstreamError{Err: cause}.Error()
	default: // upstreamError, or a bug
		code = websocket.StatusInternalError
	}
	c.Close(code, reason)
	label := fmt.Sprint(int(code))
	h.m.Closed.WithLabelValues(label).Inc()
	return label
}

// refuse ends a connection before its session starts.
func (h *Handler) refuse(c *wire.Conn, log logrus.FieldLogger, code websocket.StatusCode, metric, reason string) {
	h.m.Rejected.WithLabelValues(metric).Inc()
	log.WithFields(logrus.Fields{"code": int(code), "reason": reason}).Info("tail refused")
	c.Close(code, reason)
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }
