package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"golang.org/x/sync/errgroup"

	"github.com/logpipe/logpipe/common/diag"
	"github.com/logpipe/logpipe/common/kafkasec"
	"github.com/logpipe/logpipe/common/logging"
	"github.com/logpipe/logpipe/common/memlog"
	"github.com/logpipe/logpipe/livetail/internal/api"
	"github.com/logpipe/logpipe/livetail/internal/archive"
	"github.com/logpipe/logpipe/livetail/internal/auth"
	"github.com/logpipe/logpipe/livetail/internal/catalogue"
	"github.com/logpipe/logpipe/livetail/internal/hub"
	"github.com/logpipe/logpipe/livetail/internal/limit"
	"github.com/logpipe/logpipe/livetail/internal/session"
	"github.com/logpipe/logpipe/livetail/internal/upstream"
	"github.com/logpipe/logpipe/livetail/internal/web"
)

// run starts livetail and serves until ctx is done.
func run(ctx context.Context, cfg Config) error {
	s, err := newServer(ctx, cfg, os.Stderr)
	if err != nil {
		return err
	}
	return s.run(ctx)
}

// server is a livetail process's components, wired.
type server struct {
	log     *logrus.Logger
	kafka   *upstream.Client
	hub     *hub.Hub
	jobs    *catalogue.Catalogue // nil without --jobs-topic
	limiter limit.Limiter
	tail    *api.Handler
	diag    *diag.Server // --metrics-addr: /metrics, /debug/logs, health
	public  *diag.Server // --listen: the viewer, the API, health
	refusal *kafkasec.Prober
	archive *archive.Archive // nil without --es-addresses
	// place is the job placement hook sessions use (session.Engine.Place):
	// the jobs catalogue's Partitions, set by setPlacement; none until then.
	place atomic.Pointer[func(job string) []int32]
}

// setPlacement sets the job placement hook (nil: none).
func (s *server) setPlacement(f func(job string) []int32) {
	if f == nil {
		s.place.Store(nil)
		return
	}
	s.place.Store(&f)
}

// placement is the hook handed to the sessions: the one set, if any.
func (s *server) placement(job string) []int32 {
	if f := s.place.Load(); f != nil {
		return (*f)(job)
	}
	return nil
}

// newServer connects to Kafka (retrying as --upstream-retries says) and
// binds the listener; run serves.
func newServer(ctx context.Context, cfg Config, logOut io.Writer) (*server, error) {
	ring := memlog.New(0)
	log, err := logging.New(cfg.Common.LogLevel.Value, cfg.Common.LogFormat.Value, logOut, ring)
	if err != nil {
		return nil, err
	}
	authn, err := newAuthenticator(cfg)
	if err != nil {
		return nil, err
	}
	reg := diag.NewRegistry()

	for _, w := range cfg.Warnings {
		log.Warn(w)
	}
	// A wrong password or certificate is not retried at start: it is
	// reported in one line and livetail exits 1.
	if err := kafkasec.Check(ctx, cfg.Common.KafkaBrokers, &cfg.Kafka); err != nil {
		return nil, err
	}
	um := upstream.NewMetrics(reg)
	kafka, err := upstream.Dial(ctx, upstream.Config{
		Security:     &cfg.Kafka,
		Brokers:      cfg.Common.KafkaBrokers,
		Topic:        cfg.Common.KafkaTopic,
		Retry:        cfg.Retry,
		StartBack:    cfg.StartBack,
		HistoryConns: cfg.HistoryConns,
		Refresh:      cfg.PartitionRefresh,
		Consume:      consumeMode(cfg.Consume.Value),
		Grace:        cfg.ConsumeGrace,
		JobsTopic:    cfg.JobsTopic,
		MaxScans:     cfg.MaxHistoryScans,
		Log:          log.WithField("component", "upstream"),
		Metrics:      um,
	})
	if err != nil {
		return nil, err
	}
	s := &server{log: log, kafka: kafka, refusal: &kafkasec.Prober{Brokers: cfg.Common.KafkaBrokers, Config: &cfg.Kafka}}
	ok := false
	defer func() {
		if !ok {
			s.close()
		}
	}()

	if s.archive, err = newArchive(ctx, cfg, reg, log); err != nil {
		return nil, err
	}

	s.hub = hub.New(kafka.Partitions(), hub.Options{
		Pending: newGauge(reg, "livetail_pending_messages", "Entries queued to clients and not yet written."),
		Dropped: newCounter(reg, "livetail_entries_dropped_total", "Entries skipped for clients too slow to take them (announced by dropped frames)."),
		JobsTTL: cfg.jobsWindow(),
	})
	if err := kafka.Start(ctx, s.hub); err != nil {
		return nil, err
	}

	switch cfg.Limiter.Value {
	case "redis":
		r := limit.NewRedis(limit.RedisOptions{
			Addr:    cfg.RedisAddr,
			URL:     cfg.RedisURL,
			RootCAs: cfg.redisCAs,
			Max:     cfg.MaxConnsPerUser,
			Log:     log.WithField("component", "limiter"),
			Errors:  newCounter(reg, "livetail_limiter_errors_total", "Redis failures of the connection limiter (connections were admitted)."),
		})
		s.limiter = r
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if err := r.Check(pctx); err != nil {
			cancel()
			return nil, fmt.Errorf("redis %s: %w", cfg.redisEndpoint(), err)
		}
		if err := r.Ping(pctx); err != nil {
			log.WithError(err).WithField("redis", cfg.redisEndpoint()).Warn("Redis does not answer yet; admitting connections without the per-user limit until it does")
		}
		cancel()
	default:
		s.limiter = limit.NewMemory(cfg.MaxConnsPerUser)
	}

	var cat api.Catalogue // a nil *Catalogue would not be a nil Catalogue
	if cfg.JobsTopic != "" {
		s.jobs = catalogue.New(catalogue.Options{
			Brokers:  cfg.Common.KafkaBrokers,
			Security: &cfg.Kafka,
			Topic:    cfg.JobsTopic,
			LogTopic: cfg.Common.KafkaTopic,
			Window:   cfg.jobsWindow(),
			Log:      log.WithField("component", "catalogue"),
			Records:  um.ReadRecords.WithLabelValues(upstream.PurposeCatalogue),
			Bytes:    um.ReadBytes.WithLabelValues(upstream.PurposeCatalogue),
		})
		cat = s.jobs
		// Sessions lease the partitions where the catalogue saw their job,
		// as well as the partitioners' candidates.
		s.setPlacement(s.jobs.Partitions)
	}

	var index api.ContextIndex // a nil *Archive would be neither a nil ContextIndex
	var past session.Archive   // nor a nil session.Archive
	if s.archive != nil {
		index, past = s.archive, s.archive
	}
	s.tail = api.New(s.hub, kafka, api.Options{
		Archive:        past,
		Auth:           authn,
		Limiter:        s.limiter,
		MaxConns:       cfg.MaxConns,
		MaxSession:     cfg.MaxSession,
		PingInterval:   cfg.PingInterval,
		ClientBuffer:   cfg.ClientBuffer,
		BatchSize:      cfg.BatchSize,
		BatchWait:      cfg.BatchWait,
		MaxTail:        cfg.MaxTail,
		MaxScan:        cfg.MaxHistoryScan,
		AllowedOrigins: cfg.AllowedOrigins,
		Watch:          kafka.Watch,
		Place:          s.placement,
		Log:            log.WithField("component", "tail"),
		Metrics:        api.NewMetrics(reg),
	})
	pace := s.tail.Pacer()
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "livetail_frame_gap_seconds",
		Help: "Least time between two live entries frames of a paced client now: --batch-wait while any client is paced because its frames fell behind, 0 while none is.",
	}, func() float64 { return pace.Gap().Seconds() }), prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "livetail_sessions_paced",
		Help: "Sessions paced now: their frames fell behind the lines delivered to them, and they keep --batch-wait between frames for a while.",
	}, func() float64 { return float64(pace.Paced()) }), prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "livetail_frames_held_total",
		Help: "Live entries frames held back by pacing (sent up to --batch-wait later than they could have been).",
	}, func() float64 { return float64(pace.Held()) }))
	s.diag = diag.New(diag.Options{
		Addr:     cfg.Common.MetricsAddr,
		Registry: reg,
		Logs:     ring,
		Ready:    s.ready,
		Log:      log.WithField("component", "diag"),
	})
	if cfg.Pprof {
		s.diag.Handle("/debug/pprof/", http.HandlerFunc(pprof.Index))
		s.diag.Handle("/debug/pprof/profile", http.HandlerFunc(pprof.Profile))
		s.diag.Handle("/debug/pprof/symbol", http.HandlerFunc(pprof.Symbol))
		s.diag.Handle("/debug/pprof/trace", http.HandlerFunc(pprof.Trace))
	}
	s.public = diag.New(diag.Options{
		Addr:   cfg.Listen,
		Name:   "http",
		Ready:  s.ready,
		Log:    log.WithField("component", "http"),
		Public: true,
		TLS:    cfg.serverTLS(),
	})
	s.public.Handle("GET /api/v1/tail", s.tail)
	s.public.Handle("GET /api/v1/jobs", api.JobsHandler(s.hub, kafka, cat, cfg.Jobs, authn))
	s.public.Handle("GET /api/v1/history", s.tail.History())
	s.public.Handle("GET /api/v1/context", api.ContextHandler(kafka, index, authn))
	s.public.Handle("GET /api/v1/config", api.ConfigHandler(api.ViewerConfig{
		KibanaURL: cfg.KibanaURL, Archive: s.archive != nil, MaxJobs: api.MaxJobs, ESIndex: cfg.ESIndex,
	}))
	s.public.Handle("GET /", web.Handler())
	if err := s.public.Listen(); err != nil {
		return nil, err
	}
	if err := s.diag.Listen(); err != nil {
		return nil, err
	}
	log.WithFields(logrus.Fields{
		"addr":       s.public.Addr(),
		"metrics":    s.diag.Addr(),
		"brokers":    cfg.Common.KafkaBrokers.String(),
		"topic":      cfg.Common.KafkaTopic,
		"partitions": kafka.Partitions(),
		"auth":       cfg.Auth.Value,
		"limiter":    cfg.Limiter.Value,
		"archive":    cfg.ESAddresses.String(),
	}).Info("livetail listening")
	ok = true
	return s, nil
}

// Addr returns the bound listen address.
func (s *server) Addr() string { return s.public.Addr() }

// MetricsAddr returns the bound metrics address.
func (s *server) MetricsAddr() string { return s.diag.Addr() }

// ready is /readyz: not ready while a partition is down, with the
// start-up line when the brokers refuse livetail's credential, nor while
// the archive's index (--es-addresses) does not answer.
func (s *server) ready() error {
	if s.archive != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.archive.Health(ctx); err != nil {
			return err
		}
	}
	if down := s.hub.Down(); len(down) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if refused := s.refusal.Refusal(ctx); refused != nil {
			return fmt.Errorf("kafka partitions %v unavailable: %w", down, refused)
		}
		return fmt.Errorf("kafka partitions %v unavailable", down)
	}
	return nil
}

// run serves until ctx is done; then every session is closed with 1001.
func (s *server) run(ctx context.Context) error {
	defer s.close()
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.kafka.Run(ctx, s.hub) })
	if s.jobs != nil {
		g.Go(func() error { return s.jobs.Run(ctx) })
	}
	g.Go(func() error { return s.public.Serve(ctx) })
	g.Go(func() error { return s.diag.Serve(ctx) })
	g.Go(func() error {
		<-ctx.Done()
		s.tail.Shutdown()
		return nil
	})
	err := g.Wait()
	s.log.Info("livetail stopped")
	return err
}

func (s *server) close() {
	if s.archive != nil {
		s.archive.Close()
	}
	if s.limiter != nil {
		s.limiter.Close()
	}
	s.kafka.Close()
}

// newArchive connects to the search index of --es-addresses, if any (nil
// without). A refused credential is an error (livetail exits 1); an index
// that does not answer yet is a warning, and /readyz says so until it does.
func newArchive(ctx context.Context, cfg Config, reg prometheus.Registerer, log logrus.FieldLogger) (*archive.Archive, error) {
	if len(cfg.ESAddresses) == 0 {
		return nil, nil
	}
	a, err := archive.New(cfg.Config, archive.Options{
		Topic:    cfg.Common.KafkaTopic,
		Searches: newCounter(reg, "livetail_archive_searches_total", "Search requests sent to the archive's index (history past Kafka's retention, context)."),
		Docs:     newCounter(reg, "livetail_archive_documents_total", "Documents the archive's searches returned."),
	})
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	switch err := a.Check(cctx); {
	case errors.Is(err, archive.ErrRefused):
		a.Close()
		return nil, err
	case err != nil:
		log.WithError(err).WithField("index", cfg.ESIndex).Warn("the archive's index does not answer yet: history past Kafka's retention and context come from Kafka alone until it does")
	}
	return a, nil
}

func newAuthenticator(cfg Config) (auth.Authenticator, error) {
	if cfg.Auth.Value != "jwt" {
		return auth.None{}, nil
	}
	want := auth.Claims{Audience: cfg.JWTAudience, Issuer: cfg.JWTIssuer}
	if cfg.JWTSecret != "" {
		return auth.NewHS256([]byte(cfg.JWTSecret), want)
	}
	pem, err := os.ReadFile(cfg.JWTPublicKey)
	if err != nil {
		return nil, fmt.Errorf("--jwt-public-key: %w", err)
	}
	a, err := auth.NewPublicKey(pem, want)
	if err != nil {
		return nil, fmt.Errorf("--jwt-public-key %s: %w", cfg.JWTPublicKey, err)
	}
	return a, nil
}

func newGauge(reg prometheus.Registerer, name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	reg.MustRegister(g)
	return g
}

func newCounter(reg prometheus.Registerer, name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	reg.MustRegister(c)
	return c
}

// consumeMode is --consume's mode (Validate allowed only these values).
func consumeMode(v string) upstream.Consume {
	m, _ := upstream.ParseConsume(v)
	return m
}
