// Package group consumes the log topics as a Kafka consumer group and feeds
// each claimed partition, in offset order, through the sink in batches
// bounded by count, size and time. Partitions run in parallel. An offset is
// marked for commit only after the sink has indexed or dead-lettered every
// record below it, so committed offsets never pass a record that is not in
// Elasticsearch or the dead-letter topic.
package group

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/sirupsen/logrus"

	"github.com/logpipe/logpipe/common/kafkasec"
	"github.com/logpipe/logpipe/transfer/internal/backoff"
	"github.com/logpipe/logpipe/transfer/internal/kafka"
	"github.com/logpipe/logpipe/transfer/internal/metrics"
	"github.com/logpipe/logpipe/transfer/internal/sink"
)

// ErrConfig is returned by Config.Validate.
var ErrConfig = errors.New("group: bad config")

// Config is the consumer group's configuration.
type Config struct {
	Brokers  []string `yaml:"brokers"`
	Topics   []string `yaml:"topics"`
	Group    string   `yaml:"group"`
	ClientID string   `yaml:"client_id"`
	// InstanceID, when set, makes this a static member (KIP-345): after a
	// restart it gets its partitions back at once instead of after the
	// session timeout. Each instance needs its own.
	InstanceID string `yaml:"instance_id"`

	BatchDocs  int           `yaml:"batch_docs"`  // records per batch, at most
	BatchBytes int           `yaml:"batch_bytes"` // bulk body size per batch, about (a record may cross it)
	BatchWait  time.Duration `yaml:"batch_wait"`  // how long the first record of a batch may wait for more

	// DrainTimeout is how long a partition that is being given up (rebalance
	// or shutdown) may take to finish its batch in progress before it is
	// abandoned, uncommitted.
	DrainTimeout time.Duration `yaml:"drain_timeout"`

	Backoff backoff.Policy `yaml:"backoff"` // reconnecting to Kafka

	Security *kafkasec.Config `yaml:"-"` // TLS and SASL; nil: plaintext

	// Claimed, when set, is called as a partition is claimed; the function
	// it returns is called once the claim is released and its batches are
	// done (the jobs catalogue keeps counts only for partitions it owns).
	Claimed func(topic string, partition int32) (released func()) `yaml:"-"`
}

// Validate checks the bounds.
func (c *Config) Validate() error {
	switch {
	case len(c.Brokers) == 0:
		return fmt.Errorf("%w: no Kafka broker", ErrConfig)
	case len(c.Topics) == 0:
		return fmt.Errorf("%w: no topic", ErrConfig)
	case c.Group == "":
		return fmt.Errorf("%w: empty group", ErrConfig)
	case c.BatchDocs < 1:
		return fmt.Errorf("%w: batch docs %d is below 1", ErrConfig, c.BatchDocs)
	case c.BatchBytes < 1:
		return fmt.Errorf("%w: batch bytes %d is below 1", ErrConfig, c.BatchBytes)
	case c.BatchWait <= 0:
		return fmt.Errorf("%w: batch wait %s is not positive", ErrConfig, c.BatchWait)
	case c.DrainTimeout < 0:
		return fmt.Errorf("%w: drain timeout %s is negative", ErrConfig, c.DrainTimeout)
	}
	return c.Backoff.Validate()
}

// Group runs the consumer group.
type Group struct {
	cfg      Config
	sink     *sink.Sink
	newBatch func() *sink.Batch
	m        *metrics.Metrics
	log      logrus.FieldLogger

	mu      sync.Mutex
	joined  bool
	lastErr error
}

// New returns a Group that writes through s, with batches from newBatch.
func New(cfg Config, s *sink.Sink, newBatch func() *sink.Batch, m *metrics.Metrics, log logrus.FieldLogger) *Group {
	return &Group{cfg: cfg, sink: s, newBatch: newBatch, m: m, log: log}
}

// Ready is nil while the group has a session with the Kafka coordinator.
func (g *Group) Ready() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.joined {
		return nil
	}
	if g.lastErr != nil {
		if g.cfg.Security != nil {
			if refused := g.cfg.Security.Refused(g.cfg.Brokers, g.lastErr); refused != nil {
				return fmt.Errorf("kafka: not in consumer group %s: %w", g.cfg.Group, refused)
			}
		}
		return fmt.Errorf("kafka: not in consumer group %s: %w", g.cfg.Group, g.lastErr)
	}
	return fmt.Errorf("kafka: not in consumer group %s yet", g.cfg.Group)
}

func (g *Group) setJoined(joined bool, err error) {
	g.mu.Lock()
	g.joined = joined
	if err != nil {
		g.lastErr = err
	}
	g.mu.Unlock()
}

// saramaConfig is the consumer configuration.
//
// The session timeout and heartbeat interval are sarama's (10 s and 3 s).
// A dynamic member that dies without leaving (SIGKILL) keeps its partitions
// until its session ends; one killed inside a rebalance is still handed
// partitions when that rebalance completes, and keeps them for one more
// session. The rebalance timeout only bounds how long the group waits for
// live members to drain and rejoin: Kafka expires dead members by their
// session, not by it. transfer's TestRecoveryAfterTwoSIGKILLs shows both.
func (g *Group) saramaConfig() *sarama.Config {
	c := kafka.NewConfig(g.cfg.ClientID, g.cfg.Security)
	c.Consumer.Return.Errors = true
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	c.Consumer.Offsets.AutoCommit.Enable = true // commits marked offsets only
	c.Consumer.Offsets.AutoCommit.Interval = time.Second
	c.Consumer.Group.Rebalance.Timeout = g.cfg.DrainTimeout + 30*time.Second
	c.Consumer.Group.InstanceId = g.cfg.InstanceID
	c.Consumer.Fetch.Default = 4 << 20         // a fetch can fill several batches
	c.Consumer.MaxProcessingTime = time.Second // a reader waits for the writer
	c.ChannelBufferSize = max(256, min(g.cfg.BatchDocs, 4096))
	return c
}

// Run consumes until ctx ends, then leaves the group and returns nil.
// Kafka being unreachable is retried, never returned.
func (g *Group) Run(ctx context.Context) error {
	bo := g.cfg.Backoff.Start()
	var cg sarama.ConsumerGroup
	for {
		var err error
		cg, err = sarama.NewConsumerGroup(g.cfg.Brokers, g.cfg.Group, g.saramaConfig())
		if err == nil {
			break
		}
		g.setJoined(false, err)
		d := bo.Next()
		g.log.WithError(err).WithField("retry_in", d.Round(time.Millisecond)).Warn("kafka: cannot connect yet")
		if backoff.Sleep(ctx, d) != nil {
			return nil
		}
	}
	errs := make(chan struct{})
	go func() {
		defer close(errs)
		for err := range cg.Errors() {
			g.log.WithError(err).Warn("kafka: consumer error")
			g.mu.Lock()
			g.lastErr = err // why the group cannot join, for /readyz
			g.mu.Unlock()
		}
	}()
	defer func() {
		if err := cg.Close(); err != nil {
			g.log.WithError(err).Warn("kafka: leaving the consumer group")
		}
		<-errs
	}()

	h := &handler{g: g}
	bo.Reset()
	for ctx.Err() == nil {
		err := cg.Consume(ctx, g.cfg.Topics, h)
		g.setJoined(false, err)
		if err == nil {
			bo.Reset()
			continue // a rebalance: join again
		}
		if errors.Is(err, sarama.ErrClosedConsumerGroup) || ctx.Err() != nil {
			break
		}
		d := bo.Next()
		g.log.WithError(err).WithField("retry_in", d.Round(time.Millisecond)).Warn("kafka: consumer group session failed")
		if backoff.Sleep(ctx, d) != nil {
			break
		}
	}
	return nil
}
