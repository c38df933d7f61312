package upstream

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
	Consumed           prometheus.Counter
	Undecodable        prometheus.Counter
	Reconnects         prometheus.Counter
	Down               prometheus.Gauge
	Partitions         prometheus.Gauge
	PartitionsConsumed prometheus.Gauge
	HistoryReads       prometheus.Gauge
	HistoryScanned     prometheus.Counter
	HistoryScans       prometheus.Counter
	SkippedUndecoded   prometheus.Counter
	// ReadBytes and ReadRecords count, by purpose (live, history,
	// catalogue), the records read from Kafka and their key and value bytes.
	ReadBytes   *prometheus.CounterVec
	ReadRecords *prometheus.CounterVec
}

// Purposes of ReadBytes and ReadRecords.
const (
	PurposeLive      = "live"
	PurposeHistory   = "history"
	PurposeCatalogue = "catalogue"
)

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
			Name: "livetail_partitions", Help: "Partitions of the topic that livetail follows (consumed or not: see livetail_partitions_consumed).",
		}),
		PartitionsConsumed: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "livetail_partitions_consumed", Help: "Partitions of the topic read by a live consumer now (--consume).",
		}),
		HistoryReads: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "livetail_history_reads", Help: "History reads (tail, since, cursor) under way.",
		}),
		HistoryScanned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "livetail_history_records_scanned_total", Help: "Records read from Kafka for history, of every job.",
		}),
		HistoryScans: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "livetail_history_scans_total", Help: "Scans of a partition started for history reads (concurrent reads of a partition share one).",
		}),
		SkippedUndecoded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "livetail_records_skipped_undecoded_total", Help: "Records read from Kafka and skipped without decoding their value: no session watches their job.",
		}),
		ReadBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "livetail_kafka_read_bytes_total", Help: "Key and value bytes of the records read from Kafka, by purpose (live, history, catalogue).",
		}, []string{"purpose"}),
		ReadRecords: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "livetail_kafka_read_records_total", Help: "Records read from Kafka, by purpose (live, history, catalogue).",
		}, []string{"purpose"}),
	}
	for _, p := range []string{PurposeLive, PurposeHistory} {
		m.ReadBytes.WithLabelValues(p)
		m.ReadRecords.WithLabelValues(p)
	}
	if reg != nil {
		reg.MustRegister(m.Consumed, m.Undecodable, m.Reconnects, m.Down, m.Partitions, m.PartitionsConsumed,
			m.HistoryReads, m.HistoryScanned, m.HistoryScans, m.SkippedUndecoded, m.ReadBytes, m.ReadRecords)
	}
	return m
}

// source is what a partition's supervisor needs from Kafka; an interface so
// that the reconnect logic is tested without a broker.
type source interface {
	// consume reads partition p from offset from and hands batches to
	// deliver, until the partition consumer fails (the error) or ctx ends.
	// It calls opened once the partition consumer is established.
	consume(ctx context.Context, p int32, from int64, opened func(), deliver func([]hub.Record, int64)) error
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

// Run runs the partition consumers, publishing into h, until ctx is done:
// one per partition in mode all, else one per partition that sessions
// watch (Watch). It looks the topic's partitions up every Config.Refresh,
// and when a session asks (RefreshPartitions), and follows those added,
// from their oldest record; in mode auto it checks then whether the jobs
// topic exists.
func (c *Client) Run(ctx context.Context, h *hub.Hub) error {
	f := newFollower(saramaSource{c}, h, c.cfg)
	if c.cfg.Consume == ConsumeAuto {
		f.modeCheck = c.jobsTopicMissing
	}
	c.follow <- f
	defer func() { <-c.follow }()
	runPartitions(ctx, f, c.lookups, func(n int) { c.partitions.Store(int32(n)) })
	return nil
}

// Watch makes the live consumers read parts (partitions a session needs)
// until release is called, and for Config.Grace after. A partition that
// was not read starts at its end before Watch returns, so that a
// subscription made next joins it exactly. It waits for Run to start.
func (c *Client) Watch(ctx context.Context, parts []int32) (release func(), err error) {
	var f *follower
	select {
	case f = <-c.follow:
		c.follow <- f
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return f.watch(ctx, parts)
}

// jobsTopicMissing reports whether the jobs topic does not exist (mode
// auto then consumes every partition). It asks for the metadata of every
// topic, which creates none.
func (c *Client) jobsTopicMissing() (bool, error) {
	if c.cfg.JobsTopic == "" {
		return true, nil
	}
	if err := c.live.RefreshMetadata(); err != nil {
		return false, err
	}
	topics, err := c.live.Topics()
	if err != nil {
		return false, err
	}
	return !slices.Contains(topics, c.cfg.JobsTopic), nil
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

// runPartitions runs f (the partition consumers) and follows partitions
// added to the topic: it looks them up every cfg.Refresh and when asks
// asks, and answers asks once the partitions found are in the hub and may
// be consumed. It is the only one that adds partitions to the hub. grown,
// when not nil, learns the new count. In mode auto, each refresh checks
// the mode again (f.modeCheck).
func runPartitions(ctx context.Context, f *follower, asks *lookups, grown func(int)) {
	src, h, cfg := f.src, f.h, f.cfg
	var wg sync.WaitGroup
	defer wg.Wait()
	defer asks.stop()
	checkMode := func() {
		if f.modeCheck == nil {
			return
		}
		all, err := f.modeCheck()
		if err != nil {
			cfg.Log.WithError(err).Warn("looking up the jobs topic; consuming as before")
			return
		}
		f.setAll(all)
	}
	checkMode()
	wg.Go(func() { f.run(ctx) })
	cfg.Metrics.Partitions.Set(float64(h.Partitions()))
	// lookUp adds the partitions Kafka has and h lacks, from their oldest
	// records, and lets f consume them.
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
			cfg.Log.WithFields(logrus.Fields{"from": have, "to": have + len(starts)}).Info("partitions added to the topic; following them")
			cfg.Metrics.Partitions.Set(float64(h.Partitions()))
			f.grown(h.Partitions())
		}
		return failed
	}
	refresh := cfg.Refresh
	if refresh <= 0 {
		refresh = DefaultRefresh
	}
	t := time.NewTicker(refresh)
	defer t.Stop()
	var last time.Time       // when the last lookup started
	var gap <-chan time.Time // a lookup asked for waits for minLookupGap
	asked := false           // the lookup is a session's, not the refresh
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			asked = false
		case <-asks.kick:
			asked = true
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
		if !asked {
			checkMode()
		}
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
		}, func(recs []hub.Record, next int64) {
			d := h.Deliver(p, recs, next)
			cfg.Metrics.Consumed.Add(float64(len(recs)))
			cfg.Metrics.SkippedUndecoded.Add(float64(d.Skipped))
			cfg.Metrics.Undecodable.Add(float64(d.Undecodable))
		})
		if ctx.Err() != nil {
			if down { // nobody reads it now: a consumer started later tells again
				h.Recover(p)
				cfg.Metrics.Down.Dec()
			}
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

func (s saramaSource) consume(ctx context.Context, p int32, from int64, opened func(), deliver func([]hub.Record, int64)) error {
	pc, err := s.c.consumer.ConsumePartition(s.c.cfg.Topic, p, from)
	if err != nil {
		return err
	}
	defer closePartition(pc)
	opened()
	bytes := s.c.cfg.Metrics.ReadBytes.WithLabelValues(PurposeLive)
	records := s.c.cfg.Metrics.ReadRecords.WithLabelValues(PurposeLive)
	batch := make([]hub.Record, 0, maxPublish)
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
			size := 0
			add := func(m *sarama.ConsumerMessage) {
				batch = append(batch, hub.Record{Offset: m.Offset, Key: m.Key, Value: m.Value, Time: m.Timestamp})
				size += len(m.Key) + len(m.Value)
			}
			add(m)
			next := m.Offset + 1
		more:
			for len(batch) < maxPublish {
				select {
				case m, ok := <-msgs:
					if !ok {
						break more
					}
					add(m)
					next = m.Offset + 1
				default:
					break more
				}
			}
			bytes.Add(float64(size))
			records.Add(float64(len(batch)))
			deliver(batch, next)
			clear(batch)
			batch = batch[:0]
		}
	}
}
