// Package upstream reads the log topic from Kafka for livetail: one partition
// consumer per partition for the whole process, publishing into a hub, and
// history reads (by offset range, by time) for sessions that ask for them,
// spread over a small pool of connections so that one long scan does not
// hold up the others.
//
// The topic's partitions are looked up again every Config.Refresh, and at
// once when a session names a partition this process does not follow yet
// (RefreshPartitions): the consumers follow partitions added to the topic.
//
// When a partition consumer fails it is reopened at the next offset to
// publish, after a jittered delay, up to Policy.Tries times; sessions notice
// nothing when that succeeds. When the tries are exhausted the partition is
// marked down in the hub, which ends its sessions, and reopening goes on in
// the background.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"slices"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/rcrowley/go-metrics"
	"github.com/sirupsen/logrus"

	"github.com/logpipe/logpipe/common/kafkasec"
	"github.com/logpipe/logpipe/common/partition"
)

// Defaults of Config.
const (
	DefaultHistoryConns = 4
	DefaultRefresh      = 30 * time.Second
	// progressEvery is how many records a history read scans between two
	// progress calls (fn(nil)), so that a session can ping its client
	// during a long scan that finds nothing.
	progressEvery = 1024
)

func init() {
	// sarama's go-metrics meters start a global goroutine and cost CPU on
	// every request; livetail exports its own metrics instead.
	metrics.UseNilMetrics = true
}

// ErrUnavailable is returned when Kafka could not be reached within the
// retry policy.
var ErrUnavailable = errors.New("kafka unavailable")

// Config configures a Client.
type Config struct {
	Brokers []string
	// Security is the TLS and SASL of every connection; nil: plaintext.
	Security *kafkasec.Config
	Topic    string
	Retry    Policy
	// StartBack is how many records before the end of each partition the
	// live consumers start at, so that the jobs list is filled after a
	// restart.
	StartBack int64
	// HistoryConns is the number of Kafka clients (each with its own
	// connections) that history reads are spread over.
	HistoryConns int
	// Refresh is how often the topic's partitions are looked up again.
	Refresh time.Duration
	// Consume says which partitions the live consumers read (--consume);
	// Grace is how long a partition nobody watches any more is still read
	// (--consume-grace, default DefaultGrace); JobsTopic is the topic
	// whose presence makes ConsumeAuto watch (--jobs-topic; empty: auto
	// consumes all).
	Consume   Consume
	Grace     time.Duration
	JobsTopic string
	// MaxScans bounds the partition scans for history under way at once
	// in this process (--max-history-scans, default DefaultMaxScans).
	MaxScans int
	Log      logrus.FieldLogger
	Metrics  *Metrics
}

// Client is livetail's connection to Kafka: the live partition consumers
// and the history reader, each on its own connections.
type Client struct {
	cfg        Config
	live       sarama.Client
	consumer   sarama.Consumer
	hist       []*histConn
	partitions atomic.Int32
	lookups    *lookups       // sessions' requests for a lookup of the partitions, served by Run
	follow     chan *follower // holds Run's follower once Run has started
	scans      *scans         // history reads, shared by partition
	oldest     oldestTimes    // per partition, when its oldest record was written
}

// histConn is one history client of the pool and the reads it serves.
type histConn struct {
	c    sarama.Client
	busy atomic.Int32
}

// pick returns the history client with the fewest reads under way.
func (c *Client) pick() *histConn {
	best := c.hist[0]
	for _, h := range c.hist[1:] {
		if h.busy.Load() < best.busy.Load() {
			best = h
		}
	}
	return best
}

func saramaConfig(sec *kafkasec.Config) *sarama.Config {
	c := sarama.NewConfig()
	if sec != nil {
		_ = sec.Apply(c) // fails only for what Validate refuses
	}
	c.ClientID = "livetail"
	c.Net.DialTimeout = 5 * time.Second
	c.Net.ReadTimeout = 10 * time.Second
	c.Net.WriteTimeout = 5 * time.Second
	c.Metadata.Retry.Max = 1
	c.Metadata.Retry.Backoff = 100 * time.Millisecond
	c.Metadata.Full = false
	c.Consumer.Return.Errors = true
	c.Consumer.MaxWaitTime = 250 * time.Millisecond
	c.Consumer.Retry.Backoff = 500 * time.Millisecond
	c.ChannelBufferSize = 256
	return c
}

// Dial connects to Kafka, retrying per cfg.Retry, and looks up the topic's
// partitions.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.Log == nil {
		l := logrus.New()
		l.Out = discard{}
		cfg.Log = l
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	if cfg.HistoryConns < 1 {
		cfg.HistoryConns = DefaultHistoryConns
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = DefaultRefresh
	}
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultGrace
	}
	if cfg.MaxScans <= 0 {
		cfg.MaxScans = DefaultMaxScans
	}
	c := &Client{cfg: cfg, lookups: newLookups(), follow: make(chan *follower, 1)}
	c.scans = newScans(c)
	err := cfg.Retry.Do(ctx, func() error {
		err := c.connect()
		if err != nil {
			cfg.Log.WithError(err).WithField("brokers", cfg.Brokers).Warn("connecting to Kafka")
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("kafka %v topic %s: %w", cfg.Brokers, cfg.Topic, err)
	}
	return c, nil
}

func (c *Client) connect() error {
	live, err := sarama.NewClient(c.cfg.Brokers, saramaConfig(c.cfg.Security))
	if err != nil {
		return err
	}
	parts, err := live.Partitions(c.cfg.Topic)
	if err == nil && len(parts) == 0 {
		err = fmt.Errorf("topic %s has no partitions", c.cfg.Topic)
	}
	if err != nil {
		live.Close()
		return err
	}
	consumer, err := sarama.NewConsumerFromClient(live)
	if err != nil {
		live.Close()
		return err
	}
	hist := make([]*histConn, 0, c.cfg.HistoryConns)
	for range c.cfg.HistoryConns {
		hc, err := sarama.NewClient(c.cfg.Brokers, saramaConfig(c.cfg.Security))
		if err != nil {
			for _, h := range hist {
				h.c.Close()
			}
			consumer.Close()
			live.Close()
			return err
		}
		hist = append(hist, &histConn{c: hc})
	}
	c.live, c.consumer, c.hist = live, consumer, hist
	c.partitions.Store(int32(len(parts)))
	return nil
}

// Close closes the connections. Call it after Run has returned.
func (c *Client) Close() error {
	c.scans.wg.Wait()
	errs := []error{c.consumer.Close(), c.live.Close()}
	for _, h := range c.hist {
		errs = append(errs, h.c.Close())
	}
	return errors.Join(errs...)
}

// Partitions returns the topic's number of partitions, as last looked up.
func (c *Client) Partitions() int { return int(c.partitions.Load()) }

// Home returns the partition that DESIGN.md's partitioner (Kafka's Java
// default, murmur2 of the key) gives job: where the agent puts its lines.
func (c *Client) Home(job string) int32 {
	return partition.ForJob(job, c.partitions.Load())
}

// Candidates returns the partitions where standard producers keyed by job
// put its lines, the home partition first: murmur2 (Java clients, the
// agent, librdkafka's murmur2 partitioners), CRC32 (librdkafka's default,
// consistent_random, as kcat, rsyslog, Fluent Bit use) and FNV-1a (sarama's
// default).
func (c *Client) Candidates(job string) []int32 {
	return candidates(job, c.partitions.Load())
}

func candidates(job string, n int32) []int32 {
	if n <= 0 {
		return nil
	}
	key := []byte(job)
	out := []int32{partition.ForKey(key, n)}
	add := func(p int32) {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	add(int32(crc32.ChecksumIEEE(key) % uint32(n)))
	add(saramaPartition(key, n))
	return out
}

// saramaPartition is the partition sarama's default partitioner
// (NewHashPartitioner) gives key: FNV-1a, as a signed number, modulo n,
// made positive. It is computed here because sarama's partitioner builds a
// random source (5 KiB) with every instance, and one is needed per call.
func saramaPartition(key []byte, n int32) int32 {
	h := fnv.New32a()
	h.Write(key)
	p := int32(h.Sum32()) % n
	if p < 0 {
		p = -p
	}
	return p
}

// Bounds returns the oldest offset still retained and the next offset to be
// written (the high watermark) of partition p.
func (c *Client) Bounds(ctx context.Context, p int32) (oldest, newest int64, err error) {
	hc := c.pick()
	err = c.cfg.Retry.Do(ctx, func() error {
		var e error
		if oldest, e = hc.c.GetOffset(c.cfg.Topic, p, sarama.OffsetOldest); e != nil {
			return e
		}
		newest, e = hc.c.GetOffset(c.cfg.Topic, p, sarama.OffsetNewest)
		return e
	})
	return oldest, newest, err
}

// OffsetAt returns the first offset of partition p whose record was written
// at t or later, or the high watermark when there is none.
func (c *Client) OffsetAt(ctx context.Context, p int32, t time.Time) (int64, error) {
	var off int64
	hc := c.pick()
	err := c.cfg.Retry.Do(ctx, func() error {
		var e error
		off, e = offsetAt(func(at int64) (int64, error) { return hc.c.GetOffset(c.cfg.Topic, p, at) }, t)
		return e
	})
	return off, err
}

// offsetAt is OffsetAt's answer from Kafka's offset lookups (get): the
// offset by time, or when no record was written at t or later, the end as
// it was before that lookup. The end is looked up first: every record
// before it was there when Kafka found none at t or later, while a record
// that comes between the two lookups is later than t, and an end looked up
// after them would put it before the answer, unread.
func offsetAt(get func(at int64) (int64, error), t time.Time) (int64, error) {
	end, err := get(sarama.OffsetNewest)
	if err != nil {
		return 0, err
	}
	off, err := get(t.UnixMilli())
	if err != nil {
		return 0, err
	}
	if off < 0 {
		return end, nil
	}
	return off, nil
}

// closePartition closes pc and drains what it still holds.
func closePartition(pc sarama.PartitionConsumer) {
	pc.AsyncClose()
	msgs, errs := pc.Messages(), pc.Errors()
	for msgs != nil || errs != nil {
		select {
		case _, ok := <-msgs:
			if !ok {
				msgs = nil
			}
		case _, ok := <-errs:
			if !ok {
				errs = nil
			}
		}
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
