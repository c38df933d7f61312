package catalogue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/logpipe/logpipe/common/kafkasec"
	"github.com/logpipe/logpipe/transfer/internal/backoff"
	"github.com/logpipe/logpipe/transfer/internal/kafka"
)

// Retention is the topic's retention.ms: a key no transfer writes any
// more (a job gone quiet for good) is deleted after it.
const Retention = 7 * 24 * time.Hour

// TopicConfigs are the configs the topic is created with: compacted, so
// that it holds about one record per key, and deleted past Retention.
var TopicConfigs = map[string]string{
	"cleanup.policy": "compact,delete",
	"retention.ms":   strconv.FormatInt(Retention.Milliseconds(), 10),
}

// Results of a write, the result label of transfer_jobs_catalogue_writes_total.
const (
	ResultOK    = "ok"
	ResultError = "error"
)

// ErrForbidden is returned when the topic is missing and this client may
// not create it.
var ErrForbidden = errors.New("catalogue: may not create the jobs topic")

// Config says where the catalogue goes and how often.
type Config struct {
	Brokers  []string
	Topic    string
	Interval time.Duration
	ClientID string
	Backoff  backoff.Policy
	Security *kafkasec.Config // TLS and SASL; nil: plaintext
}

// Metrics are the writer's metrics.
type Metrics struct {
	Writes *prometheus.CounterVec // records, by result
}

// NewMetrics creates the metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{Writes: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "transfer_jobs_catalogue_writes_total",
		Help: "Jobs catalogue records written (ok) or whose write failed and is retried (error).",
	}, []string{"result"})}
	m.Writes.WithLabelValues(ResultOK)
	m.Writes.WithLabelValues(ResultError)
	reg.MustRegister(m.Writes)
	return m
}

// Writer writes the entries of Counts to the catalogue topic every
// interval, with an idempotent producer. It runs beside indexing and never
// holds it up: a write that fails keeps its entries (newer ones replace
// them) and is tried again with backoff.
type Writer struct {
	cfg    Config
	counts *Counts
	m      *Metrics
	log    logrus.FieldLogger

	pending map[string]Entry // by key: entries not written yet
	client  sarama.Client    // nil until connected
	prod    sarama.SyncProducer
	failing bool // the last write failed (logged once per outage)
}

// NewWriter returns a Writer of c's entries; it connects in Run.
func NewWriter(cfg Config, c *Counts, m *Metrics, log logrus.FieldLogger) *Writer {
	return &Writer{cfg: cfg, counts: c, m: m, log: log.WithField("topic", cfg.Topic), pending: map[string]Entry{}}
}

// Run makes sure the topic exists, then writes every interval until ctx
// ends. When the topic is missing and may not be created, it says so in
// one line and returns nil: transfer goes on without the catalogue.
func (w *Writer) Run(ctx context.Context) error {
	defer w.disconnect()
	if err := w.ensureTopic(ctx); err != nil {
		if errors.Is(err, ErrForbidden) {
			w.log.WithError(err).Warn("jobs catalogue off: create the topic or grant Create on it")
		}
		return nil
	}
	bo := w.cfg.Backoff.Start()
	t := time.NewTimer(w.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := w.flush(); err != nil {
			t.Reset(min(bo.Next(), w.cfg.Interval))
			continue
		}
		bo.Reset()
		t.Reset(w.cfg.Interval)
	}
}

// flush takes the new entries and writes every pending one.
func (w *Writer) flush() error {
	for _, e := range w.counts.collect(time.Now()) {
		w.pending[e.Key()] = e
	}
	if len(w.pending) == 0 {
		return nil
	}
	msgs := make([]*sarama.ProducerMessage, 0, len(w.pending))
	for k, e := range w.pending {
		v, err := json.Marshal(e)
		if err != nil { // cannot happen: plain fields
			delete(w.pending, k)
			continue
		}
		msgs = append(msgs, &sarama.ProducerMessage{Topic: w.cfg.Topic, Key: sarama.StringEncoder(k), Value: sarama.ByteEncoder(v)})
	}
	err := w.send(msgs)
	if err != nil {
		w.m.Writes.WithLabelValues(ResultError).Add(float64(len(msgs)))
		if !w.failing {
			w.log.WithError(err).WithField("records", len(msgs)).Warn("jobs catalogue: write failed; retrying (indexing goes on)")
		}
		w.failing = true
		return err
	}
	w.m.Writes.WithLabelValues(ResultOK).Add(float64(len(msgs)))
	if w.failing {
		w.log.Info("jobs catalogue: writing again")
	}
	w.failing = false
	clear(w.pending)
	return nil
}

// send writes msgs; after a failure the connection is dropped so that the
// next try starts a fresh idempotent session.
func (w *Writer) send(msgs []*sarama.ProducerMessage) error {
	if w.prod == nil {
		if err := w.connect(); err != nil {
			return err
		}
	}
	if err := w.prod.SendMessages(msgs); err != nil {
		w.disconnect()
		return err
	}
	return nil
}

func (w *Writer) saramaConfig() *sarama.Config {
	c := kafka.NewConfig(w.cfg.ClientID, w.cfg.Security)
	c.Producer.Idempotent = true
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Return.Successes = true
	c.Producer.Return.Errors = true
	c.Producer.Retry.Max = 5
	c.Net.MaxOpenRequests = 1 // idempotence needs in-order requests
	c.Producer.Transaction.Retry.Max = 3
	// A topic deleted under transfer is not made again without its
	// compaction configs by a write.
	c.Metadata.AllowAutoTopicCreation = false
	return c
}

// adminConfig is the configuration of the client that creates the topic.
func (w *Writer) adminConfig() *sarama.Config {
	c := kafka.NewConfig(w.cfg.ClientID, w.cfg.Security)
	c.Metadata.Full = true // the admin client looks up the cluster first
	c.Metadata.AllowAutoTopicCreation = false
	return c
}

func (w *Writer) connect() error {
	client, err := sarama.NewClient(w.cfg.Brokers, w.saramaConfig())
	if err != nil {
		return fmt.Errorf("connecting the catalogue producer: %w", err)
	}
	prod, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		_ = client.Close()
		return fmt.Errorf("starting the catalogue producer: %w", err)
	}
	w.client, w.prod = client, prod
	return nil
}

func (w *Writer) disconnect() {
	if w.prod != nil {
		_ = w.prod.Close()
		_ = w.client.Close()
		w.client, w.prod = nil, nil
	}
}

// ensureTopic creates the topic when it is missing, retrying while Kafka
// cannot be reached. It returns ErrForbidden when it may not, and ctx's
// error when ctx ends first.
func (w *Writer) ensureTopic(ctx context.Context) error {
	bo := w.cfg.Backoff.Start()
	for {
		err := w.createTopic()
		if err == nil || errors.Is(err, ErrForbidden) {
			return err
		}
		d := bo.Next()
		w.log.WithError(err).WithField("retry_in", d.Round(time.Millisecond)).Warn("jobs catalogue: cannot look up the topic yet")
		if err := backoff.Sleep(ctx, d); err != nil {
			return err
		}
	}
}

// createTopic creates the topic, with one partition and TopicConfigs,
// unless it exists.
func (w *Writer) createTopic() error {
	admin, err := sarama.NewClusterAdmin(w.cfg.Brokers, w.adminConfig())
	if err != nil {
		return err
	}
	defer admin.Close()
	meta, err := admin.DescribeTopics([]string{w.cfg.Topic})
	if err != nil {
		return err
	}
	if len(meta) == 1 {
		switch {
		case errors.Is(meta[0].Err, sarama.ErrNoError):
			return nil
		case errors.Is(meta[0].Err, sarama.ErrTopicAuthorizationFailed):
			return fmt.Errorf("%w: %s: %w", ErrForbidden, w.cfg.Topic, meta[0].Err)
		}
	}
	configs := make(map[string]*string, len(TopicConfigs))
	for k, v := range TopicConfigs {
		configs[k] = &v
	}
	err = admin.CreateTopic(w.cfg.Topic, &sarama.TopicDetail{
		NumPartitions:     1,
		ReplicationFactor: -1, // the broker's default
		ConfigEntries:     configs,
	}, false)
	switch {
	case err == nil:
		w.log.Info("jobs catalogue: topic created")
		return nil
	case errors.Is(err, sarama.ErrTopicAlreadyExists):
		return nil
	case errors.Is(err, sarama.ErrTopicAuthorizationFailed), errors.Is(err, sarama.ErrClusterAuthorizationFailed),
		errors.Is(err, sarama.ErrPolicyViolation):
		return fmt.Errorf("%w: %s: %w", ErrForbidden, w.cfg.Topic, err)
	}
	return fmt.Errorf("creating %s: %w", w.cfg.Topic, err)
}
