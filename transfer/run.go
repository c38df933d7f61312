package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sync/errgroup"

	"github.com/logpipe/logpipe/common/diag"
	"github.com/logpipe/logpipe/common/kafkasec"
	"github.com/logpipe/logpipe/common/logging"
	"github.com/logpipe/logpipe/common/memlog"
	"github.com/logpipe/logpipe/transfer/internal/catalogue"
	"github.com/logpipe/logpipe/transfer/internal/dlq"
	"github.com/logpipe/logpipe/transfer/internal/document"
	"github.com/logpipe/logpipe/transfer/internal/esbulk"
	"github.com/logpipe/logpipe/transfer/internal/group"
	"github.com/logpipe/logpipe/transfer/internal/metrics"
	"github.com/logpipe/logpipe/transfer/internal/sink"
)

// Wiring constants.
const (
	logRingBytes = 1 << 20         // recent log lines kept for /debug/logs
	esPingEvery  = 5 * time.Second // how long Elasticsearch may go unasked before a health ping
)

// run serves until ctx ends, then drains and returns.
func run(ctx context.Context, cfg Config) error {
	s, err := newService(cfg, os.Stderr)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

// service is transfer's components, wired.
type service struct {
	cfg   Config
	log   *logrus.Logger
	diag  *diag.Server
	es    *esbulk.Client
	dlq   *dlq.Producer
	sink  *sink.Sink
	group *group.Group
	jobs  *catalogue.Writer // nil without --jobs-topic
}

// newService builds the components and binds the metrics listener, so that
// a bad --metrics-addr fails at once. Nothing is contacted yet.
func newService(cfg Config, logOut io.Writer) (*service, error) {
	ring := memlog.New(logRingBytes)
	log, err := logging.New(cfg.Common.LogLevel.Value, cfg.Common.LogFormat.Value, logOut, ring)
	if err != nil {
		return nil, err
	}
	reg := diag.NewRegistry()
	m := metrics.New(reg)

	es, err := esbulk.New(cfg.Config)
	if err != nil {
		return nil, err
	}
	dl := dlq.New(dlq.Config{
		Brokers:  cfg.Common.KafkaBrokers,
		Topic:    cfg.DLQTopic,
		ClientID: "logpipe-" + binary,
		Backoff:  cfg.backoff(),
		Security: &cfg.Kafka,
	}, m, log)
	builder := document.Builder{ParseJSON: cfg.ParseJSON}
	gcfg := cfg.groupConfig()
	var jobs *catalogue.Writer
	if cfg.JobsTopic != "" {
		counts := catalogue.NewCounts()
		builder.Seen = func(src document.Source, job string, ts time.Time) {
			counts.Seen(src.Topic, src.Partition, src.Key, job, ts)
		}
		gcfg.Claimed = counts.Claimed
		jobs = catalogue.NewWriter(cfg.catalogueConfig(), counts, catalogue.NewMetrics(reg), log)
	}
	sk := sink.New(es, dl, cfg.backoff(), m, log)
	grp := group.New(gcfg, sk, func() *sink.Batch { return sink.NewBatch(cfg.ESIndex, builder) }, m, log)

	s := &service{cfg: cfg, log: log, es: es, dlq: dl, sink: sk, group: grp, jobs: jobs}
	s.diag = diag.New(diag.Options{
		Addr:     cfg.Common.MetricsAddr,
		Registry: reg,
		Logs:     ring,
		Ready:    s.ready,
		Log:      log,
	})
	if err := s.diag.Listen(); err != nil {
		es.Close()
		return nil, err
	}
	return s, nil
}

// ready is /readyz: Elasticsearch has the template, answers and takes the
// documents (no block, privilege or missing-index refusal is being
// retried), and the consumer group has a session.
func (s *service) ready() error {
	return errors.Join(s.es.Ready(), s.sink.Ready(), s.group.Ready())
}

// Run serves until ctx ends. Consuming starts once the index template is
// installed; until then, and whenever Elasticsearch is unreachable, the
// service stays up and /readyz says why it is not ready.
func (s *service) Run(ctx context.Context) error {
	defer s.es.Close()
	defer func() {
		if err := s.dlq.Close(); err != nil {
			s.log.WithError(err).Warn("closing the dead-letter producer")
		}
	}()
	s.log.WithFields(logrus.Fields{
		"topics": s.cfg.Topics, "group": s.cfg.Group, "es": s.cfg.ESAddresses,
		"index": s.cfg.ESIndex, "dlq": s.cfg.DLQTopic, "jobs": s.cfg.JobsTopic,
	}).Info("transfer starting")
	for _, w := range s.cfg.Warnings {
		s.log.Warn(w)
	}
	// A wrong password or certificate is not retried at start: it is
	// reported in one line and transfer exits 1.
	if err := kafkasec.Check(ctx, s.cfg.Common.KafkaBrokers, &s.cfg.Kafka); err != nil {
		return err
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.diag.Serve(gctx) })
	if s.jobs != nil {
		g.Go(func() error { return s.jobs.Run(gctx) })
	}
	g.Go(func() error {
		return s.es.Maintain(gctx, esbulk.Setup{
			Index:        s.cfg.ESIndex,
			TemplateName: s.cfg.ESIndex,
			ManagedBy:    document.ManagedBy,
			Template: func(i esbulk.Info) []byte {
				return document.Template(s.cfg.ESIndex, document.EngineOf(i.Distribution))
			},
			Component:     document.CustomTemplate,
			ComponentBody: document.CustomTemplateBody(),
			Backoff:       s.cfg.backoff(),
			PingEvery:     esPingEvery,
		}, s.log)
	})
	g.Go(func() error {
		select {
		case <-s.es.Installed():
		case <-gctx.Done():
			return nil
		}
		return s.group.Run(gctx)
	})
	err := g.Wait()
	s.log.Info("transfer stopped")
	if err != nil {
		return fmt.Errorf("transfer: %w", err)
	}
	return nil
}

// Addr is the bound metrics address.
func (s *service) Addr() string { return s.diag.Addr() }
