// Package producer sends log records to Kafka with sarama's AsyncProducer:
// idempotent, acks from all in-sync replicas, one request in flight per
// broker, lz4 by default, key = job.
//
// Memory is bounded by bytes: a record can only be sent with a Message
// taken from a fixed pool, its value is written into a buffer the producer
// hands out, and the capacity of the buffers of the records in flight is
// counted against a budget (MaxInflightSize), so a reader blocks when Kafka
// is slow or down. Released buffers are kept for reuse up to an eighth of
// the budget, whatever the lengths of the lines (buffers.go). Every Message
// reports its outcome to its Owner (the file it came from); the Owner
// decides when the Message goes back to the pool, and may send a failed
// one again as it is (Resend).
//
// Batching is sarama's: with no flush thresholds a batch leaves as soon as
// the previous request to that broker has been answered, so a lone line goes
// out at once and, under load, records pile up into batches of up to
// MaxMessageBytes per partition while the request before them is in flight.
package producer

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/eapache/go-resiliency/breaker"
	"github.com/rcrowley/go-metrics"

	"github.com/logpipe/logpipe/common/kafkasec"
)

func init() {
	// sarama records its own metrics with go-metrics, whose meters start a
	// process-wide goroutine that never ends and cost time on every
	// message. The agent exports Prometheus metrics instead.
	metrics.UseNilMetrics = true
}

// Config configures a Producer.
type Config struct {
	Brokers         []string
	ClientID        string
	Compression     sarama.CompressionCodec
	MaxMessageBytes int           // largest record value; see Encoded limits in the caller
	MaxInflight     int           // records taken from the pool and not yet released
	MaxInflightSize int64         // bytes of those records: the capacity of their value buffers
	Linger          time.Duration // sarama Producer.Flush.Frequency; 0 sends as soon as possible
	DialTimeout     time.Duration
	Security        *kafkasec.Config // TLS and SASL; nil: plaintext
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Brokers:         []string{"127.0.0.1:9092"},
		ClientID:        "logpipe-agent",
		Compression:     sarama.CompressionLZ4,
		MaxMessageBytes: 1000000,
		MaxInflight:     16384,
		MaxInflightSize: 64 << 20,
		DialTimeout:     5 * time.Second,
	}
}

// Owner follows the Messages it sends. Sent is called just before a
// Message enters the producer, Done with its outcome, from the producer's
// goroutines; the Owner must eventually call Release.
type Owner interface {
	Sent(m *Message)
	Done(m *Message, err error)
}

// Message is one record on its way to Kafka.
type Message struct {
	pm    sarama.ProducerMessage
	key   bytesEncoder
	val   bytesEncoder
	p     *Producer
	owner Owner
	size  int64

	// Start and End are the byte range of the file the record came from.
	Start, End int64
	// Timestamp is the Kafka record's timestamp; zero means now.
	Timestamp time.Time
	// Acked and Failed are kept by the Owner, under its own lock.
	Acked, Failed bool
}

// Buffer returns an empty buffer with room for n bytes, to append the
// record value to and pass to Send. A value that outgrows it is fine.
func (m *Message) Buffer(n int) []byte {
	if m.p == nil {
		return make([]byte, 0, n)
	}
	if m.val == nil || cap(m.val) < n {
		if m.val != nil {
			m.p.bufs.put(m.val)
		}
		m.val = m.p.bufs.get(n)
	}
	return m.val[:0]
}

// Release returns m to the pool, its value buffer to the kept buffers, and
// frees its bytes from the budget. A Message made outside a Producer (in
// tests) has no pool: Release only resets it.
func (m *Message) Release() {
	p := m.p
	if p == nil {
		m.Acked, m.Failed = false, false
		return
	}
	if m.size > 0 {
		p.budget.Release(m.size)
		m.size = 0
	}
	if m.val != nil {
		p.bufs.put(m.val)
		m.val = nil
	}
	m.pm = sarama.ProducerMessage{Metadata: m}
	m.owner, m.key = nil, nil
	m.Acked, m.Failed, m.Timestamp = false, false, time.Time{}
	p.inflight.Add(-1)
	p.free <- m
}

// bytesEncoder is sarama.Encoder for a byte slice held in the Message, so
// that setting Key and Value boxes a pointer and allocates nothing.
type bytesEncoder []byte

func (b *bytesEncoder) Encode() ([]byte, error) { return *b, nil }
func (b *bytesEncoder) Length() int             { return len(*b) }

// Stats are counters for metrics.
type Stats struct {
	Acked, Failed uint64
	Inflight      int64
	InflightBytes int64
	KeptBytes     int64 // value buffers kept for reuse
}

// Producer is an AsyncProducer with a bounded pool of Messages.
type Producer struct {
	cfg    Config
	ap     sarama.AsyncProducer
	free   chan *Message // released Messages; more are made up to MaxInflight
	made   atomic.Int64
	budget *budget
	bufs   *buffers

	inflight  atomic.Int64
	bytes     atomic.Int64
	acked     atomic.Int64
	failed    atomic.Int64
	lastErr   atomic.Pointer[error] // of the last failed send; nil once one succeeds
	done      chan struct{}         // closed when Close starts
	sending   sync.RWMutex          // Send holds it for reading while it may write to the input
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// SaramaConfig is the sarama configuration the Producer uses.
func SaramaConfig(cfg Config) *sarama.Config {
	sc := sarama.NewConfig()
	sc.ClientID = cfg.ClientID
	sc.Version = sarama.V3_0_0_0
	sc.Net.MaxOpenRequests = 1
	sc.Net.DialTimeout = cfg.DialTimeout
	sc.Net.ReadTimeout = 30 * time.Second
	sc.Net.WriteTimeout = 30 * time.Second
	sc.Metadata.Retry.Max = 2
	sc.Metadata.Retry.Backoff = 100 * time.Millisecond
	sc.Producer.Idempotent = true
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Compression = cfg.Compression
	sc.Producer.MaxMessageBytes = cfg.MaxMessageBytes
	sc.Producer.Partitioner = NewMurmur2Partitioner
	sc.Producer.Return.Successes = true
	sc.Producer.Return.Errors = true
	sc.Producer.Flush.Frequency = cfg.Linger
	// sarama keeps per-partition state proportional to Retry.Max, so it
	// cannot be "forever" there: what sarama gives up on comes back as an
	// error, and the Owner rewinds and sends it again (see registry.Track).
	sc.Producer.Retry.Max = 20
	sc.Producer.Retry.BackoffFunc = Backoff
	// Room for a whole batch of acknowledgements, so that sarama unmutes a
	// partition (and sends its next batch) without waiting for the owners.
	sc.ChannelBufferSize = 4096
	return sc
}

// Backoff is sarama's retry backoff: none before the first retry, so that
// messages fail fast while a partition has no leader, then exponential with
// jitter up to a second.
func Backoff(retries, _ int) time.Duration {
	if retries <= 0 {
		return 0
	}
	d := 50 * time.Millisecond << min(retries-1, 5)
	d = min(d, time.Second)
	return d/2 + rand.N(d/2+1)
}

// New connects to Kafka. It fails when no broker answers; the caller retries.
func New(cfg Config) (*Producer, error) {
	if cfg.MaxInflight < 1 {
		cfg.MaxInflight = 1
	}
	if cfg.MaxInflightSize < int64(cfg.MaxMessageBytes) {
		cfg.MaxInflightSize = int64(cfg.MaxMessageBytes)
	}
	sc := SaramaConfig(cfg)
	if cfg.Security != nil {
		if err := cfg.Security.Apply(sc); err != nil {
			return nil, err
		}
	}
	ap, err := sarama.NewAsyncProducer(cfg.Brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("connecting to Kafka %v: %w", cfg.Brokers, err)
	}
	p := &Producer{
		cfg:    cfg,
		ap:     ap,
		free:   make(chan *Message, cfg.MaxInflight),
		budget: newBudget(cfg.MaxInflightSize),
		bufs:   newBuffers(max(cfg.MaxInflightSize/8, 1<<20)),
		done:   make(chan struct{}),
	}
	p.wg.Add(2)
	go p.successes()
	go p.errors()
	return p, nil
}

// ErrClosed is returned by Acquire and Send after Close.
var ErrClosed = errors.New("producer: closed")

// Acquire takes a Message from the pool, waiting while all are in flight.
// Messages are made as needed, up to MaxInflight.
func (p *Producer) Acquire(ctx context.Context) (*Message, error) {
	select {
	case m := <-p.free:
		p.inflight.Add(1)
		return m, nil
	default:
	}
	if p.made.Add(1) <= int64(p.cfg.MaxInflight) {
		m := &Message{p: p}
		m.pm.Metadata = m
		p.inflight.Add(1)
		return m, nil
	}
	p.made.Add(-1)
	select {
	case m := <-p.free:
		p.inflight.Add(1)
		return m, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	case <-p.done:
		return nil, ErrClosed
	}
}

// Send sends m with value val (from m.Buffer, appended to) and key to
// topic. It waits while the bytes in flight (the capacity of the value
// buffers) are over budget. On error m has not been sent (nor reported to
// owner) and still belongs to the caller, who must Release it.
func (p *Producer) Send(ctx context.Context, m *Message, owner Owner, topic string, key, val []byte) error {
	if cap(m.val) > 0 && (cap(val) == 0 || &m.val[:1][0] != &val[:1][0]) {
		// The value outgrew the buffer Buffer gave.
		p.bufs.put(m.val)
	}
	m.val = val
	size := min(int64(cap(val)+len(key)), p.cfg.MaxInflightSize)
	if err := p.budget.Acquire(ctx, size); err != nil {
		return err
	}
	m.size = size
	m.owner = owner
	m.key = key
	m.pm = sarama.ProducerMessage{Topic: topic, Key: &m.key, Value: &m.val, Metadata: m, Timestamp: m.Timestamp}
	p.bytes.Add(size)
	owner.Sent(m)
	return p.input(ctx, m, false)
}

// Resend sends again, as it is, a Message that its Owner got back as
// failed and has not released. It keeps the bytes it holds in the budget
// and waits for nothing but room in sarama's input. When ctx ends or the
// producer closes first, the Owner gets m back as failed and Resend returns
// the reason.
func (p *Producer) Resend(ctx context.Context, m *Message) error {
	m.pm = sarama.ProducerMessage{Topic: m.pm.Topic, Key: &m.key, Value: &m.val, Metadata: m, Timestamp: m.Timestamp}
	p.bytes.Add(m.size)
	return p.input(ctx, m, true)
}

// input hands m to sarama. Send (resend false) does not give up when ctx
// ends, only when the producer closes: the owner already counts m.
func (p *Producer) input(ctx context.Context, m *Message, resend bool) error {
	wait := ctx.Done()
	if !resend {
		wait = nil
	}
	err := ErrClosed
	p.sending.RLock()
	select {
	case <-p.done:
	default:
		select {
		case p.ap.Input() <- &m.pm:
			p.sending.RUnlock()
			return nil
		case <-p.done:
		case <-wait:
			err = context.Cause(ctx)
		}
	}
	p.sending.RUnlock()
	// Not sent: the owner gets its message back as failed.
	p.bytes.Add(-m.size)
	m.owner.Done(m, err)
	if resend {
		return err
	}
	return nil
}

func (p *Producer) successes() {
	defer p.wg.Done()
	for pm := range p.ap.Successes() {
		m := pm.Metadata.(*Message)
		p.bytes.Add(-m.size)
		p.acked.Add(1)
		p.lastErr.Store(nil)
		m.owner.Done(m, nil)
	}
}

func (p *Producer) errors() {
	defer p.wg.Done()
	for pe := range p.ap.Errors() {
		m := pe.Msg.Metadata.(*Message)
		p.bytes.Add(-m.size)
		p.failed.Add(1)
		// An open circuit breaker is the consequence of earlier failures:
		// keep their cause, which says why.
		if err := pe.Err; !errors.Is(err, breaker.ErrBreakerOpen) || p.lastErr.Load() == nil {
			p.lastErr.Store(&err)
		}
		m.owner.Done(m, pe.Err)
	}
}

// Err is the error of the last send Kafka failed, until one succeeds: why
// records do not get through (readiness and the status key).
func (p *Producer) Err() error {
	if e := p.lastErr.Load(); e != nil {
		return *e
	}
	return nil
}

// Stats returns counters for metrics.
func (p *Producer) Stats() Stats {
	return Stats{
		Acked:         uint64(p.acked.Load()),
		Failed:        uint64(p.failed.Load()),
		Inflight:      p.inflight.Load(),
		InflightBytes: p.bytes.Load(),
		KeptBytes:     p.bufs.held(),
	}
}

// Close stops accepting messages, waits up to timeout for those in flight
// to be acknowledged, and closes the connections. When Kafka does not answer
// in time it returns an error without waiting further: sarama's goroutines
// keep retrying until the process exits, and the records they hold were
// never acknowledged, so the offset registry does not count them.
func (p *Producer) Close(timeout time.Duration) error {
	var err error
	p.closeOnce.Do(func() {
		close(p.done)
		p.sending.Lock()
		p.ap.AsyncClose()
		p.sending.Unlock()
		finished := make(chan struct{})
		go func() { p.wg.Wait(); close(finished) }()
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case <-finished:
		case <-t.C:
			err = fmt.Errorf("producer: %d records still unacknowledged after %v", p.inflight.Load(), timeout)
		}
	})
	return err
}

// budget counts bytes in flight against a limit. Taking room is an atomic
// add when there is room; only a full budget waits, woken by releases.
type budget struct {
	max     int64
	used    atomic.Int64
	waiting atomic.Int32
	wake    chan struct{}
}

func newBudget(max int64) *budget { return &budget{max: max, wake: make(chan struct{}, 1)} }

// Acquire takes n bytes (at most max), waiting while the budget is full.
func (b *budget) Acquire(ctx context.Context, n int64) error {
	for {
		if b.used.Add(n) <= b.max {
			return nil
		}
		b.waiting.Add(1)
		if b.used.Add(-n)+n <= b.max {
			// Room appeared between the two adds: try again.
			b.waiting.Add(-1)
			continue
		}
		select {
		case <-b.wake:
			b.waiting.Add(-1)
		case <-ctx.Done():
			b.waiting.Add(-1)
			return context.Cause(ctx)
		}
	}
}

// Release returns n bytes and wakes a waiter.
func (b *budget) Release(n int64) {
	b.used.Add(-n)
	if b.waiting.Load() > 0 {
		select {
		case b.wake <- struct{}{}:
		default:
		}
	}
}
