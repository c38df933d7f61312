package upstream

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/logpipe/logpipe/livetail/internal/hub"
)

// maxPublish bounds the entries handed to the hub at once.
const maxPublish = 256

// Metrics are the upstream's Prometheus metrics.
type Metrics struct {
	Consumed       prometheus.Counter
	Undecodable    prometheus.Counter
	Reconnects     prometheus.Counter
	Down           prometheus.Gauge
	Partitions     prometheus.Gauge
	HistoryReads   prometheus.Gauge
	HistoryScanned prometheus.Counter
}

// NewMetrics creates the metrics and registers them on reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Consumed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "livetail_records_consumed_total", Help: "Records read from Kafka by the live partition consumers.",
		}),
		Undecodable: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "livetail_records_undecodable_total", Help: "Records whose value is not a logpipe record (sent as raw text).",
		}),
		Reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "livetail_upstream_reconnects_total", Help: "Attempts to reopen a failed partition consumer.",
		}),
		Down: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "livetail_upstream_partitions_down", Help: "Partitions whose consumer failed for good (their sessions were closed with 1011).",
		}),
		Partitions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "livetail_partitions", Help: "Partitions of the topic that livetail consumes.",
		}),
		HistoryReads: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "livetail_history_reads", Help: "History reads (tail, since, cursor) under way.",
		}),
		HistoryScanned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "livetail_history_records_scanned_total", Help: "Records read from Kafka for history, of every job.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.Consumed, m.Undecodable, m.Reconnects, m.Down, m.Partitions, m.HistoryReads, m.HistoryScanned)
	}
	return m
}

// source is what a partition's supervisor needs from Kafka; an interface so
// that the reconnect logic is tested without a broker.
type source interface {
	// consume reads partition p from offset from and hands batches to
	// deliver, until the partition consumer fails (the error) or ctx ends.
	// It calls opened once the partition consumer is established.
	consume(ctx context.Context, p int32, from int64, opened func(), deliver func([]*hub.Entry, int64)) error
	// bounds returns the oldest and next offsets of p, in one attempt.
	bounds(p int32) (oldest, newest int64, err error)
	// partitions looks the topic's number of partitions up again.
	partitions() (int, error)
}

// Start sets where each partition's live consumer begins: StartBack records
// before the end, or the oldest retained record.
func (c *Client) Start(ctx context.Context, h *hub.Hub) error {
	for p := range c.partitions.Load() {
		oldest, newest, err := c.Bounds(ctx, p)
		if err != nil {
			return err
		}
		h.SetNext(p, max(oldest, newest-c.cfg.StartBack))
	}
	return nil
}

// Run runs one consumer per partition, publishing into h, until ctx is done.
// It looks the topic's partitions up every Config.Refresh, and when a
// session asks (RefreshPartitions), and starts consumers for those added,
// from their oldest record.
func (c *Client) Run(ctx context.Context, h *hub.Hub) error {
	runPartitions(ctx, saramaSource{c}, h, c.cfg, c.lookups, func(n int) { c.partitions.Store(int32(n)) })
	return nil
}

// RefreshPartitions looks the topic's partitions up in Kafka now, with
// the lookups other sessions ask for at the same time, and returns once
// the partitions added to the topic are in the hub and consumed: a session
// whose cursor names a partition this process does not follow yet (another
// replica looked the partitions up before it) calls it before it gives up
// on that partition. Lookups asked for this way start at most once a
// second. It returns an error when Kafka could not be asked or a partition
// added could not be followed, or when ctx ends first; it needs Run.
func (c *Client) RefreshPartitions(ctx context.Context) error {
	return c.lookups.wait(ctx)
}

// runPartitions supervises a consumer per partition of h and follows
// partitions added to the topic: it looks them up every cfg.Refresh and
// when asks asks, and answers asks once the partitions found are in h and
// their consumers started. It is the only one that adds partitions to h.
// grown, when not nil, learns the new count.
func runPartitions(ctx context.Context, src source, h *hub.Hub, cfg Config, asks *lookups, grown func(int)) {
	var wg sync.WaitGroup
	defer wg.Wait()
	defer asks.stop()
	started := 0
	startNew := func() {
		for ; started < h.Partitions(); started++ {
			p := int32(started)
			wg.Go(func() { supervise(ctx, src, h, p, cfg) })
		}
		cfg.Metrics.Partitions.Set(float64(started))
	}
	// lookUp adds the partitions Kafka has and h lacks, from their oldest
	// records, and starts their consumers.
	lookUp := func() error {
		n, err := src.partitions()
		if err != nil {
			return fmt.Errorf("looking up the partitions of topic %s: %w", cfg.Topic, err)
		}
		have := h.Partitions()
		if n <= have {
			return nil
		}
		starts := make([]int64, 0, n-have)
		var failed error // a partition whose start could not be read: it and those after it wait for the next lookup
		for p := have; p < n; p++ {
			oldest, _, err := src.bounds(int32(p))
			if err != nil {
				failed = fmt.Errorf("partition %d added to topic %s: reading its bounds: %w", p, cfg.Topic, err)
				break
			}
			starts = append(starts, oldest)
		}
		if len(starts) > 0 {
			h.AddPartitions(starts)
			if grown != nil {
				grown(have + len(starts))
			}
			cfg.Log.WithFields(logrus.Fields{"from": have, "to": have + len(starts)}).Info("partitions added to the topic; consuming them")
			startNew()
		}
		return failed
	}
	startNew()
	refresh := cfg.Refresh
	if refresh <= 0 {
		refresh = DefaultRefresh
	}
	t := time.NewTicker(refresh)
	defer t.Stop()
	var last time.Time       // when the last lookup started
	var gap <-chan time.Time // a lookup asked for waits for minLookupGap
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-asks.kick:
			if !asks.pending() {
				continue // answered by the lookup that ran meanwhile
			}
			if wait := time.Until(last.Add(minLookupGap)); wait > 0 {
				if gap == nil {
					gap = time.After(wait)
				}
				continue
			}
		case <-gap:
			if !asks.pending() {
				gap = nil
				continue
			}
		}
		gap = nil
		last = time.Now()
		err := lookUp()
		if err != nil {
			cfg.Log.WithError(err).Warn("following partitions added to the topic")
		}
		asks.answer(err)
	}
}

// supervise keeps partition p's consumer running: after a failure it waits a
// jittered delay and reopens at the hub's next offset, so subscribers see
// neither a gap nor a duplicate. After cfg.Retry.Tries failed attempts in a
// row the partition is marked down (its sessions end with an error); attempts
// continue, and the first success brings it back.
func supervise(ctx context.Context, src source, h *hub.Hub, p int32, cfg Config) {
	log := cfg.Log.WithField("partition", p)
	tries := 0 // failed attempts since the partition was last open
	down := false
	for {
		opened := false
		err := src.consume(ctx, p, h.Next(p), func() {
			opened = true
			if down {
				h.Recover(p)
				cfg.Metrics.Down.Dec()
				down = false
			}
			if tries > 0 {
				log.WithField("attempts", tries).Info("Kafka partition consumer reconnected")
			}
			tries = 0
		}, func(entries []*hub.Entry, next int64) {
			h.Publish(p, entries, next)
			cfg.Metrics.Consumed.Add(float64(len(entries)))
		})
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, sarama.ErrOffsetOutOfRange) && reposition(src, h, p, log) {
			continue
		}
		if err == nil {
			err = errors.New("partition consumer stopped")
		}
		if opened {
			log.WithError(err).Warn("Kafka partition consumer failed; reconnecting")
		} else {
			tries++
			log.WithError(err).WithFields(logrus.Fields{"attempt": tries, "of": cfg.Retry.Tries}).Warn("reconnecting Kafka partition consumer failed")
			if tries >= cfg.Retry.Tries && !down {
				down = true
				cfg.Metrics.Down.Inc()
				h.Fail(p, err)
				log.WithError(err).Error("Kafka partition unavailable after retries; its sessions were closed; still retrying")
			}
		}
		if sleep(ctx, cfg.Retry.Delay()) != nil {
			return
		}
		cfg.Metrics.Reconnects.Inc()
	}
}

// reposition moves the hub's next offset for p back inside the retained
// range after Kafka answered "offset out of range".
func reposition(src source, h *hub.Hub, p int32, log logrus.FieldLogger) bool {
	oldest, newest, err := src.bounds(p)
	if err != nil {
		return false
	}
	next := h.Next(p)
	switch {
	case next < oldest:
		log.WithFields(logrus.Fields{"from": next, "to": oldest}).Warn("records were deleted by retention before livetail read them")
		h.SetNext(p, oldest)
	case next > newest:
		log.WithFields(logrus.Fields{"from": next, "to": newest}).Warn("partition is shorter than the next offset; continuing at its end")
		h.SetNext(p, newest)
	default:
		return false
	}
	return true
}

type saramaSource struct{ c *Client }

func (s saramaSource) partitions() (int, error) {
	if err := s.c.live.RefreshMetadata(s.c.cfg.Topic); err != nil {
		return 0, err
	}
	parts, err := s.c.live.Partitions(s.c.cfg.Topic)
	return len(parts), err
}

func (s saramaSource) bounds(p int32) (oldest, newest int64, err error) {
	if oldest, err = s.c.live.GetOffset(s.c.cfg.Topic, p, sarama.OffsetOldest); err != nil {
		return 0, 0, err
	}
	newest, err = s.c.live.GetOffset(s.c.cfg.Topic, p, sarama.OffsetNewest)
	return oldest, newest, err
}

var errClosed = errors.New("partition consumer closed")

func (s saramaSource) consume(ctx context.Context, p int32, from int64, opened func(), deliver func([]*hub.Entry, int64)) error {
	pc, err := s.c.consumer.ConsumePartition(s.c.cfg.Topic, p, from)
	if err != nil {
		return err
	}
	defer closePartition(pc)
	opened()
	batch := make([]*hub.Entry, 0, maxPublish)
	msgs := pc.Messages()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-pc.Errors():
			if !ok {
				return errClosed
			}
			return e.Err
		case m, ok := <-msgs:
			if !ok {
				return errClosed
			}
			batch = append(batch, s.entry(m))
			next := m.Offset + 1
		more:
			for len(batch) < maxPublish {
				select {
				case m, ok := <-msgs:
					if !ok {
						break more
					}
					batch = append(batch, s.entry(m))
					next = m.Offset + 1
				default:
					break more
				}
			}
			deliver(batch, next)
			clear(batch)
			batch = batch[:0]
		}
	}
}

func (s saramaSource) entry(m *sarama.ConsumerMessage) *hub.Entry {
	e, ok := hub.NewEntry(m.Partition, m.Offset, m.Key, m.Value, m.Timestamp)
	if !ok {
		s.c.cfg.Metrics.Undecodable.Inc()
	}
	return e
}
