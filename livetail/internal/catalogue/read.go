package catalogue

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/rcrowley/go-metrics"
)

func init() {
	// sarama's go-metrics meters start a goroutine that never ends;
	// livetail exports its own metrics.
	metrics.UseNilMetrics = true
}

// errMissing is read's error when the topic does not exist.
var errMissing = errors.New("catalogue: the jobs topic does not exist")

// errStopped is a partition consumer's error when sarama closed it (its
// offset went out of range, the topic was deleted): read starts over.
var errStopped = errors.New("catalogue: partition consumer stopped")

// Run reads the topic from its start and follows it until ctx ends; it
// returns nil. A missing topic is looked up again every Recheck (said once
// in the log); Kafka being unreachable is retried with backoff.
func (c *Catalogue) Run(ctx context.Context) error {
	log := c.opts.Log.WithField("topic", c.opts.Topic)
	delay := c.opts.BackoffMin
	said := false
	for {
		err := c.read(ctx, func() {
			if said {
				log.Info("jobs catalogue: topic found")
			}
			said = false
			delay = c.opts.BackoffMin
		})
		if ctx.Err() != nil {
			return nil
		}
		var wait time.Duration
		switch {
		case errors.Is(err, errMissing):
			if !said {
				log.Info("jobs catalogue: topic missing (transfer creates it); listing only the jobs this replica reads until it appears")
				said = true
			}
			wait = c.opts.Recheck
		default:
			wait = jitter(delay)
			delay = min(2*delay, c.opts.BackoffMax)
			log.WithError(err).WithField("retry_in", wait.Round(time.Millisecond)).Warn("jobs catalogue: reading failed")
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// jitter returns a delay between d/2 and d.
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

func (c *Catalogue) saramaConfig() *sarama.Config {
	sc := sarama.NewConfig()
	if c.opts.Security != nil {
		_ = c.opts.Security.Apply(sc) // fails only for what Validate refuses
	}
	sc.ClientID = "livetail"
	sc.Net.DialTimeout = 5 * time.Second
	sc.Net.ReadTimeout = 10 * time.Second
	sc.Metadata.Full = false
	sc.Metadata.Retry.Max = 1
	sc.Metadata.Retry.Backoff = 100 * time.Millisecond
	// Looking up a missing topic must not create it: transfer creates it
	// compacted.
	sc.Metadata.AllowAutoTopicCreation = false
	sc.Consumer.Return.Errors = false // sarama retries a lost leader itself
	sc.Consumer.MaxWaitTime = 500 * time.Millisecond
	return sc
}

// read connects, reads every partition of the topic from where it stopped
// (its start, the first time) and follows it until ctx ends or something
// fails. connected is called once the topic is found.
func (c *Catalogue) read(ctx context.Context, connected func()) error {
	client, err := sarama.NewClient(c.opts.Brokers, c.saramaConfig())
	if err != nil {
		return err
	}
	defer client.Close()
	parts, err := client.Partitions(c.opts.Topic)
	switch {
	case errors.Is(err, sarama.ErrUnknownTopicOrPartition):
		return errMissing
	case err != nil:
		return err
	}
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return err
	}
	defer consumer.Close()
	connected()

	pcs := make([]sarama.PartitionConsumer, 0, len(parts))
	defer func() {
		for _, pc := range pcs {
			_ = pc.Close()
		}
	}()
	for _, p := range parts {
		pc, err := c.consume(consumer, p)
		if err != nil {
			return fmt.Errorf("partition %d: %w", p, err)
		}
		pcs = append(pcs, pc)
	}

	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(pcs))
	var wg sync.WaitGroup
	for i, pc := range pcs {
		wg.Go(func() { errs <- c.follow(fctx, parts[i], pc) })
	}
	select {
	case <-ctx.Done():
	case err = <-errs:
	}
	cancel()
	wg.Wait()
	return err
}

// consume starts reading partition p where the last read stopped, or at
// its start when that offset is gone (compacted or deleted since).
func (c *Catalogue) consume(consumer sarama.Consumer, p int32) (sarama.PartitionConsumer, error) {
	c.mu.Lock()
	next, ok := c.next[p]
	c.mu.Unlock()
	if !ok {
		next = sarama.OffsetOldest
	}
	pc, err := consumer.ConsumePartition(c.opts.Topic, p, next)
	if errors.Is(err, sarama.ErrOffsetOutOfRange) {
		pc, err = consumer.ConsumePartition(c.opts.Topic, p, sarama.OffsetOldest)
	}
	return pc, err
}

// follow applies the records of one partition until ctx ends.
func (c *Catalogue) follow(ctx context.Context, p int32, pc sarama.PartitionConsumer) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-pc.Messages():
			if !ok {
				return fmt.Errorf("partition %d: %w", p, errStopped)
			}
			c.apply(m.Key, m.Value)
			c.mu.Lock()
			c.next[p] = m.Offset + 1
			c.mu.Unlock()
			if c.opts.Records != nil {
				c.opts.Records.Inc()
			}
			if c.opts.Bytes != nil {
				c.opts.Bytes.Add(float64(len(m.Key) + len(m.Value)))
			}
		}
	}
}
