// Package upstream reads the log topic from Kafka for livetail: one partition
// consumer per partition for the whole process, publishing into a hub, and
// history reads (by offset range, by time) for sessions that ask for them.
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
	"time"

	"github.com/IBM/sarama"
	"github.com/rcrowley/go-metrics"
	"github.com/sirupsen/logrus"

	"github.com/logpipe/logpipe/livetail/internal/hub"
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
	Topic   string
	Retry   Policy
	// StartBack is how many records before the end of each partition the
	// live consumers start at, so that the jobs list is filled after a
	// restart.
	StartBack int64
	Log       logrus.FieldLogger
	Metrics   *Metrics
}

// Client is livetail's connection to Kafka: the live partition consumers
// and the history reader, each on its own connections.
type Client struct {
	cfg        Config
	live       sarama.Client
	consumer   sarama.Consumer
	hist       sarama.Client
	partitions int32
}

func saramaConfig() *sarama.Config {
	c := sarama.NewConfig()
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
	c := &Client{cfg: cfg}
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
	live, err := sarama.NewClient(c.cfg.Brokers, saramaConfig())
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
	hist, err := sarama.NewClient(c.cfg.Brokers, saramaConfig())
	if err != nil {
		live.Close()
		return err
	}
	c.live, c.consumer, c.hist, c.partitions = live, consumer, hist, int32(len(parts))
	return nil
}

// Close closes the connections. Call it after Run has returned.
func (c *Client) Close() error {
	return errors.Join(c.consumer.Close(), c.live.Close(), c.hist.Close())
}

// Partitions returns the topic's number of partitions.
func (c *Client) Partitions() int { return int(c.partitions) }

// Partition returns the partition that holds job's records. The agent
// produces with sarama's default partitioner (the hash partitioner, FNV-1a of
// the key), so the same partitioner computes it here.
func (c *Client) Partition(job string) int32 {
	// A hash partitioner holds its hash state: one per call, as they are
	// not safe for concurrent use.
	p, err := sarama.NewHashPartitioner(c.cfg.Topic).Partition(&sarama.ProducerMessage{Topic: c.cfg.Topic, Key: sarama.StringEncoder(job)}, c.partitions)
	if err != nil { // only for zero partitions, which Dial rules out
		return 0
	}
	return p
}

// Bounds returns the oldest offset still retained and the next offset to be
// written (the high watermark) of partition p.
func (c *Client) Bounds(ctx context.Context, p int32) (oldest, newest int64, err error) {
	err = c.cfg.Retry.Do(ctx, func() error {
		var e error
		if oldest, e = c.hist.GetOffset(c.cfg.Topic, p, sarama.OffsetOldest); e != nil {
			return e
		}
		newest, e = c.hist.GetOffset(c.cfg.Topic, p, sarama.OffsetNewest)
		return e
	})
	return oldest, newest, err
}

// OffsetAt returns the first offset of partition p whose record was written
// at t or later, or the high watermark when there is none.
func (c *Client) OffsetAt(ctx context.Context, p int32, t time.Time) (int64, error) {
	var off int64
	err := c.cfg.Retry.Do(ctx, func() error {
		var e error
		off, e = c.hist.GetOffset(c.cfg.Topic, p, t.UnixMilli())
		if e == nil && off < 0 {
			off, e = c.hist.GetOffset(c.cfg.Topic, p, sarama.OffsetNewest)
		}
		return e
	})
	return off, err
}

// Read reads partition p from offset from up to (not including) offset to,
// and calls fn with each entry of job, in offset order. It reopens the
// partition after a failure as the retry policy allows. An error from fn
// ends the read and is returned.
func (c *Client) Read(ctx context.Context, p int32, from, to int64, job string, fn func(*hub.Entry) error) error {
	next := from
	return c.cfg.Retry.Do(ctx, func() error {
		if next >= to {
			return nil
		}
		return c.readOnce(ctx, p, &next, to, job, fn)
	})
}

func (c *Client) readOnce(ctx context.Context, p int32, next *int64, to int64, job string, fn func(*hub.Entry) error) error {
	consumer, err := sarama.NewConsumerFromClient(c.hist)
	if err != nil {
		return err
	}
	defer consumer.Close()
	pc, err := consumer.ConsumePartition(c.cfg.Topic, p, *next)
	if err != nil {
		if errors.Is(err, sarama.ErrOffsetOutOfRange) {
			return permanent(fmt.Errorf("partition %d offset %d: %w", p, *next, err))
		}
		return err
	}
	defer closePartition(pc)
	for {
		select {
		case <-ctx.Done():
			return permanent(ctx.Err())
		case e := <-pc.Errors():
			if e == nil {
				return errors.New("partition consumer closed")
			}
			return e.Err
		case m, ok := <-pc.Messages():
			if !ok {
				return errors.New("partition consumer closed")
			}
			if m.Offset >= to {
				*next = to
				return nil
			}
			*next = m.Offset + 1
			if string(m.Key) == job {
				e, ok := hub.NewEntry(m.Offset, m.Key, m.Value, m.Timestamp)
				if !ok {
					c.cfg.Metrics.Undecodable.Inc()
				}
				if err := fn(e); err != nil {
					return permanent(err)
				}
			}
			if *next >= to {
				return nil
			}
		}
	}
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
