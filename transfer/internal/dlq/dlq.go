// Package dlq writes records that cannot be indexed to the dead-letter
// topic: the original key, value and headers, plus headers that say what
// went wrong and where the record came from.
package dlq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/sirupsen/logrus"

	"github.com/logpipe/logpipe/common/kafkasec"
	"github.com/logpipe/logpipe/transfer/internal/backoff"
	"github.com/logpipe/logpipe/transfer/internal/kafka"
	"github.com/logpipe/logpipe/transfer/internal/metrics"
)

// Headers added to every dead letter.
const (
	HeaderErrorType      = "error.type"             // Elasticsearch's error.type, or TypeInvalidRecord
	HeaderErrorReason    = "error.reason"           // Elasticsearch's error.reason, or why the value is not a record
	HeaderErrorStatus    = "error.status"           // the item's HTTP status; absent for invalid records
	HeaderCausedByType   = "error.caused_by.type"   // present when Elasticsearch gave a cause
	HeaderCausedByReason = "error.caused_by.reason" // present when Elasticsearch gave a cause
	HeaderTopic          = "kafka.topic"            // where the record was read
	HeaderPartition      = "kafka.partition"
	HeaderOffset         = "kafka.offset"
)

// TypeInvalidRecord is the error.type of a value that is not a log record.
const TypeInvalidRecord = "invalid_record"

// Letter is one record for the dead-letter topic.
type Letter struct {
	Msg            *sarama.ConsumerMessage
	Type           string
	Reason         string
	Status         int // 0: not an Elasticsearch answer
	CausedByType   string
	CausedByReason string
}

// Config says where dead letters go.
type Config struct {
	Brokers  []string
	Topic    string
	ClientID string
	Backoff  backoff.Policy
	Security *kafkasec.Config // TLS and SASL; nil: plaintext
}

// ErrClosed is returned by Send after Close.
var ErrClosed = errors.New("dlq: the dead-letter producer is closed")

// Producer sends dead letters with an idempotent producer and acks=all. It
// connects on first use, so that a Kafka outage at start does not stop the
// service. It is safe for concurrent use: the partitions share one
// connection, and a send that fails retires it for a fresh one (a fresh
// idempotent session) without closing it under the others' sends.
type Producer struct {
	cfg     Config
	metrics *metrics.Metrics
	log     logrus.FieldLogger

	mu     sync.Mutex
	cur    *conn // nil until the next send connects
	closed bool
	open   sync.WaitGroup // connections not closed yet
}

// conn is one connection: a client and the producer on it. Senders hold
// it while they send; once retired (after a failed send, or by Close) it
// is closed by whoever lets go of it last, so that no send ever runs on a
// closed producer.
type conn struct {
	client  sarama.Client
	prod    sarama.SyncProducer
	users   int
	retired bool
}

// New returns a Producer; it does not connect yet.
func New(cfg Config, m *metrics.Metrics, log logrus.FieldLogger) *Producer {
	return &Producer{cfg: cfg, metrics: m, log: log}
}

// saramaConfig is the producer configuration: idempotent, acks=all.
func (p *Producer) saramaConfig() *sarama.Config {
	c := kafka.NewConfig(p.cfg.ClientID, p.cfg.Security)
	c.Producer.Idempotent = true
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Return.Successes = true
	c.Producer.Return.Errors = true
	c.Producer.Retry.Max = 5
	c.Net.MaxOpenRequests = 1 // idempotence needs in-order requests
	// Starting the producer asks for a producer id; give up on an
	// unreachable Kafka soon and let Send retry with its own backoff.
	c.Producer.Transaction.Retry.Max = 3
	return c
}

// acquire returns the current connection, connecting first if there is
// none, and holds it for the caller until release.
func (p *Producer) acquire() (*conn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	if p.cur == nil {
		// The client is made apart so that it can be closed when the
		// producer cannot start: NewSyncProducer would leave it running.
		client, err := sarama.NewClient(p.cfg.Brokers, p.saramaConfig())
		if err != nil {
			return nil, fmt.Errorf("connecting the dead-letter producer: %w", err)
		}
		prod, err := sarama.NewSyncProducerFromClient(client)
		if err != nil {
			_ = client.Close()
			return nil, fmt.Errorf("starting the dead-letter producer: %w", err)
		}
		p.cur = &conn{client: client, prod: prod}
		p.open.Add(1)
	}
	p.cur.users++
	return p.cur, nil
}

// release lets go of c. After a failed send (failed), c is retired, so
// that the next send starts from a fresh idempotent session; a retired
// connection is closed when its last sender lets go.
func (p *Producer) release(c *conn, failed bool) {
	p.mu.Lock()
	c.users--
	if failed && p.cur == c {
		p.cur, c.retired = nil, true
	}
	last := c.retired && c.users == 0
	p.mu.Unlock()
	if last {
		if err := p.closeConn(c); err != nil {
			p.log.WithError(err).Debug("dead-letter topic: closing a failed producer")
		}
	}
}

func (p *Producer) closeConn(c *conn) error {
	defer p.open.Done()
	err := c.prod.Close()
	if e := c.client.Close(); err == nil {
		err = e
	}
	return err
}

// Send writes every letter to the dead-letter topic, retrying with backoff
// until Kafka has acknowledged them all or ctx ends (then it returns ctx's
// error, and some letters may have been written already: dead letters are
// delivered at least once).
func (p *Producer) Send(ctx context.Context, letters []Letter) error {
	if len(letters) == 0 {
		return nil
	}
	msgs := make([]*sarama.ProducerMessage, len(letters))
	for i, l := range letters {
		msgs[i] = p.message(l)
	}
	b := p.cfg.Backoff.Start()
	for {
		c, err := p.acquire()
		if errors.Is(err, ErrClosed) {
			return err
		}
		if err == nil {
			err = c.prod.SendMessages(msgs)
			if err == nil {
				p.release(c, false)
				return nil
			}
			var perrs sarama.ProducerErrors
			if errors.As(err, &perrs) && len(perrs) > 0 && len(perrs) < len(msgs) {
				failed := make([]*sarama.ProducerMessage, len(perrs))
				for i, pe := range perrs {
					failed[i] = pe.Msg
				}
				msgs = failed
			}
			p.release(c, true)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		p.metrics.Retries.WithLabelValues(metrics.RetryDLQ).Inc()
		d := b.Next()
		p.log.WithError(err).WithFields(logrus.Fields{
			"topic": p.cfg.Topic, "records": len(msgs), "retry_in": d.Round(time.Millisecond),
		}).Warn("dead-letter topic: produce failed")
		if err := backoff.Sleep(ctx, d); err != nil {
			return err
		}
	}
}

// message builds the dead letter for l.
func (p *Producer) message(l Letter) *sarama.ProducerMessage {
	m := l.Msg
	headers := make([]sarama.RecordHeader, 0, len(m.Headers)+8)
	for _, h := range m.Headers {
		if h != nil {
			headers = append(headers, *h)
		}
	}
	add := func(k, v string) {
		headers = append(headers, sarama.RecordHeader{Key: []byte(k), Value: []byte(v)})
	}
	add(HeaderErrorType, l.Type)
	add(HeaderErrorReason, l.Reason)
	if l.Status != 0 {
		add(HeaderErrorStatus, strconv.Itoa(l.Status))
	}
	if l.CausedByType != "" || l.CausedByReason != "" {
		add(HeaderCausedByType, l.CausedByType)
		add(HeaderCausedByReason, l.CausedByReason)
	}
	add(HeaderTopic, m.Topic)
	add(HeaderPartition, strconv.Itoa(int(m.Partition)))
	add(HeaderOffset, strconv.FormatInt(m.Offset, 10))
	pm := &sarama.ProducerMessage{
		Topic:   p.cfg.Topic,
		Value:   sarama.ByteEncoder(m.Value),
		Headers: headers,
	}
	if m.Key != nil {
		pm.Key = sarama.ByteEncoder(m.Key)
	}
	return pm
}

// Close closes the producer, if it was ever connected, once the sends in
// progress on it have ended; later sends return ErrClosed.
func (p *Producer) Close() error {
	p.mu.Lock()
	p.closed = true
	c := p.cur
	p.cur = nil
	last := false
	if c != nil {
		c.retired = true
		last = c.users == 0
	}
	p.mu.Unlock()
	var err error
	if last {
		err = p.closeConn(c)
	}
	p.open.Wait()
	return err
}
