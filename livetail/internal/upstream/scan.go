package upstream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/logpipe/logpipe/livetail/internal/hub"
)

// DefaultMaxScans is the default of Config.MaxScans.
const DefaultMaxScans = 8

// History reads share scans. A scan reads one partition forward from the
// smallest start among its readers and hands each reader the records of
// its jobs in its range; every record is decoded at most once.
// There is at most one scan of a partition at a time in a process:
//
//   - a read whose range starts at or after the record the running scan
//     reads next joins it (unless reads wait: they go first);
//   - any other read waits, and when the running scan ends, one scan starts
//     for every read that waited, from the smallest start.
//
// So N sessions asking for the same history at once (a reconnect storm of
// since=1h) cost at most two scans of it, not N; the records a process
// reads for history per partition are bounded by one scan running at a
// time, whatever the number of sessions; and at most Config.MaxScans
// partitions are scanned at once. A scan goes at the pace of its slowest
// reader (each reader's session writes to its client with a timeout).
type scans struct {
	c     *Client
	sem   chan struct{} // a token per scan under way
	mu    sync.Mutex
	parts map[int32]*partScans
	wg    sync.WaitGroup // the scans' goroutines; Client.Close waits
}

// partScans is a partition's running scan and the reads waiting for the next.
type partScans struct {
	running *scan
	waiting []*reader
}

// scan is one pass over a partition. Its fields are guarded by scans.mu.
type scan struct {
	next    int64 // the next offset it reads
	readers []*reader
	cancel  context.CancelFunc
	ended   bool      // no reader joins any more
	held    []*reader // the last readers, done, answered when the scan has ended
}

// reader is one Read call. The scan hands it entries through ch; Read
// calls fn with them on its caller's goroutine.
type reader struct {
	from, to int64
	jobs     []string
	ch       chan *hub.Entry // entries, and nil for progress
	left     chan struct{}   // closed when Read returned
	done     chan error      // receives the read's result once its entries are in ch; capacity 1
}

// Bounds of a reader's queue. A scan waits at most readerWait for a
// reader whose queue is full; then it goes on without it, and the reader
// reads the rest of its range on its own scan (see detached): one slow or
// stuck session does not hold up the others, and two sessions sharing two
// scans, each waiting on the other's partition to merge by time, cannot
// hold each other up for good.
const (
	readerQueue = 1024
	readerWait  = time.Second
)

// detached ends a read that a scan left behind at offset next.
type detached struct{ next int64 }

func (d detached) Error() string {
	return fmt.Sprintf("history read left behind by its scan at offset %d", d.next)
}

func newScans(c *Client) *scans {
	return &scans{c: c, sem: make(chan struct{}, c.cfg.MaxScans), parts: map[int32]*partScans{}}
}

// Read reads partition p from offset from up to (not including) offset to,
// and calls fn with each entry of one of jobs (keyed by the job, or keyless
// and naming it, as live), in offset order, and with nil after every so many
// records scanned (progress, so that the caller may ping its client). The
// scan may be shared with other reads of p (see scans). It reopens the
// partition after a failure as the retry policy allows. It stops when ctx
// ends; fn is not called after Read returned. An error from fn ends the
// read and is returned.
func (c *Client) Read(ctx context.Context, p int32, from, to int64, jobs []string, fn func(*hub.Entry) error) error {
	if from >= to {
		return nil
	}
	c.cfg.Metrics.HistoryReads.Inc()
	defer c.cfg.Metrics.HistoryReads.Dec()
	r := &reader{from: from, to: to, jobs: jobs, ch: make(chan *hub.Entry, readerQueue), left: make(chan struct{}), done: make(chan error, 1)}
	defer close(r.left)
	c.scans.enqueue(p, r)
	for {
		select {
		case e := <-r.ch:
			if err := fn(e); err != nil {
				c.scans.leave(p, r)
				return err
			}
		case err := <-r.done:
			for range len(r.ch) { // what the scan queued before it ended the read
				if err := fn(<-r.ch); err != nil {
					return err
				}
			}
			var d detached
			if errors.As(err, &d) {
				return c.readAlone(ctx, p, d.next, to, jobs, fn)
			}
			return err
		case <-ctx.Done():
			c.scans.leave(p, r)
			return ctx.Err()
		}
	}
}

// readAlone reads p from from to to on a scan of its own, for a read its
// shared scan left behind.
func (c *Client) readAlone(ctx context.Context, p int32, from, to int64, jobs []string, fn func(*hub.Entry) error) error {
	select {
	case c.scans.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-c.scans.sem }()
	c.cfg.Metrics.HistoryScans.Inc()
	hc := c.pick()
	hc.busy.Add(1)
	defer hc.busy.Add(-1)
	next := from
	return c.cfg.Retry.Do(ctx, func() error {
		if next >= to {
			return nil
		}
		return c.readOnce(ctx, hc.c, p, &next, to, jobs, fn)
	})
}

// readOnce reads p from *next up to to for readAlone.
func (c *Client) readOnce(ctx context.Context, client sarama.Client, p int32, next *int64, to int64, jobs []string, fn func(*hub.Entry) error) error {
	consumer, err := sarama.NewConsumerFromClient(client)
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
	m := c.cfg.Metrics
	bytes, records := m.ReadBytes.WithLabelValues(PurposeHistory), m.ReadRecords.WithLabelValues(PurposeHistory)
	var scanned int64
	for {
		msg, err := receive(ctx, pc)
		if err != nil {
			return err
		}
		if msg.Offset >= to {
			*next = to
			return nil
		}
		*next = msg.Offset + 1
		bytes.Add(float64(len(msg.Key) + len(msg.Value)))
		records.Inc()
		m.HistoryScanned.Inc()
		if scanned++; scanned%progressEvery == 0 {
			if err := fn(nil); err != nil {
				return permanent(err)
			}
		}
		if e := c.entryOfAny(p, msg, jobs); e != nil {
			if err := fn(e); err != nil {
				return permanent(err)
			}
		}
		if *next >= to {
			return nil
		}
	}
}

// receive waits for pc's next message; it fails when ctx ends (for good)
// or when the consumer fails or closes.
func receive(ctx context.Context, pc sarama.PartitionConsumer) (*sarama.ConsumerMessage, error) {
	select {
	case <-ctx.Done():
		return nil, permanent(ctx.Err())
	case e := <-pc.Errors():
		if e == nil {
			return nil, errClosed
		}
		return nil, e.Err
	case msg, ok := <-pc.Messages():
		if !ok {
			return nil, errClosed
		}
		return msg, nil
	}
}

// enqueue joins r to p's running scan, or makes it wait for the next one.
func (s *scans) enqueue(p int32, r *reader) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := s.parts[p]
	if ps == nil {
		ps = &partScans{}
		s.parts[p] = ps
	}
	if sc := ps.running; sc != nil && !sc.ended && len(ps.waiting) == 0 && r.from >= sc.next {
		sc.readers = append(sc.readers, r)
		return
	}
	ps.waiting = append(ps.waiting, r)
	if ps.running == nil {
		s.startLocked(p, ps)
	}
}

// startLocked starts a scan for the reads waiting on ps. s.mu is held.
func (s *scans) startLocked(p int32, ps *partScans) {
	sc := &scan{readers: ps.waiting, next: ps.waiting[0].from}
	for _, r := range ps.waiting {
		sc.next = min(sc.next, r.from)
	}
	ps.waiting = nil
	ps.running = sc
	ctx, cancel := context.WithCancel(context.Background())
	sc.cancel = cancel
	s.wg.Go(func() { s.run(ctx, p, sc) })
}

// leave removes r from p's scans; a scan left without readers stops.
func (s *scans) leave(p int32, r *reader) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := s.parts[p]
	if ps == nil {
		return
	}
	ps.waiting = remove(ps.waiting, r)
	if sc := ps.running; sc != nil {
		sc.readers = remove(sc.readers, r)
		if len(sc.readers) == 0 {
			sc.ended = true
			sc.cancel()
		}
	}
}

func remove(rs []*reader, r *reader) []*reader {
	for i, x := range rs {
		if x == r {
			return append(rs[:i:i], rs[i+1:]...)
		}
	}
	return rs
}

// run scans p for sc's readers; then it starts the next scan for the reads
// that waited.
func (s *scans) run(ctx context.Context, p int32, sc *scan) {
	var err error
	select {
	case s.sem <- struct{}{}:
		s.c.cfg.Metrics.HistoryScans.Inc()
		hc := s.c.pick()
		hc.busy.Add(1)
		err = s.c.cfg.Retry.Do(ctx, func() error { return s.scanOnce(ctx, hc.c, p, sc) })
		hc.busy.Add(-1)
		<-s.sem
	case <-ctx.Done():
		err = ctx.Err()
	}
	sc.cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	sc.ended = true
	for _, r := range slices.Clone(sc.readers) {
		s.endLocked(sc, r, err)
	}
	for _, r := range sc.held {
		r.done <- nil
	}
	ps := s.parts[p]
	ps.running = nil
	if len(ps.waiting) > 0 {
		s.startLocked(p, ps)
	} else {
		delete(s.parts, p)
	}
}

// scanOnce reads p from sc.next until sc has no readers left; it returns
// nil then, and the error that stopped it otherwise.
func (s *scans) scanOnce(ctx context.Context, client sarama.Client, p int32, sc *scan) error {
	s.mu.Lock()
	from := sc.next
	s.mu.Unlock()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return err
	}
	defer consumer.Close()
	pc, err := consumer.ConsumePartition(s.c.cfg.Topic, p, from)
	if err != nil {
		if errors.Is(err, sarama.ErrOffsetOutOfRange) {
			return permanent(fmt.Errorf("partition %d offset %d: %w", p, from, err))
		}
		return err
	}
	defer closePartition(pc)
	m := s.c.cfg.Metrics
	bytes, records := m.ReadBytes.WithLabelValues(PurposeHistory), m.ReadRecords.WithLabelValues(PurposeHistory)
	var scanned int64
	var in []*reader
	for {
		msg, err := receive(ctx, pc)
		if err != nil {
			return err
		}
		bytes.Add(float64(len(msg.Key) + len(msg.Value)))
		records.Inc()
		m.HistoryScanned.Inc()
		scanned++
		in = s.inRange(sc, msg.Offset, in[:0])
		if scanned%progressEvery == 0 {
			for _, r := range in {
				s.call(sc, r, nil, msg.Offset)
			}
		}
		s.deliver(p, sc, msg, in)
		if s.finish(sc, msg.Offset+1) {
			return nil
		}
	}
}

// inRange records that sc reached offset off and returns its readers whose
// range holds it.
func (s *scans) inRange(sc *scan, off int64, out []*reader) []*reader {
	s.mu.Lock()
	defer s.mu.Unlock()
	sc.next = off + 1
	for _, r := range sc.readers {
		if off >= r.from && off < r.to {
			out = append(out, r)
		}
	}
	return out
}

// deliver hands msg to the readers of its job among in, decoding it once.
func (s *scans) deliver(p int32, sc *scan, msg *sarama.ConsumerMessage, in []*reader) {
	job := hub.RecordJob(msg.Key, msg.Value)
	var e *hub.Entry
	decoded := false
	for _, r := range in {
		if !slices.Contains(r.jobs, job) {
			continue
		}
		if !decoded {
			e, decoded = s.c.entryOf(p, msg, job), true
		}
		if e != nil {
			s.call(sc, r, e, msg.Offset)
		}
	}
}

// call queues e (nil: progress) to r, waiting up to readerWait while r's
// queue is full; then r is left behind (detached at e's offset off). A
// progress call never waits.
func (s *scans) call(sc *scan, r *reader, e *hub.Entry, off int64) {
	select {
	case r.ch <- e:
		return
	case <-r.left:
		return
	default:
	}
	if e == nil {
		return
	}
	t := time.NewTimer(readerWait)
	defer t.Stop()
	select {
	case r.ch <- e:
	case <-r.left:
	case <-t.C:
		s.mu.Lock()
		s.endLocked(sc, r, detached{next: off})
		s.mu.Unlock()
	}
}

// finish ends the reads of sc whose range ends at or before next, and
// reports whether sc has no reader left (then it has ended: no read
// joins it any more).
func (s *scans) finish(sc *scan, next int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ended []*reader
	for _, r := range sc.readers {
		if r.to <= next {
			ended = append(ended, r)
		}
	}
	if len(ended) < len(sc.readers) {
		for _, r := range ended {
			s.endLocked(sc, r, nil)
		}
		return false
	}
	// The last ones: they are answered once the scan has let go of its
	// connection (run), so that a read that follows finds it idle.
	sc.readers = nil
	sc.held = ended
	sc.ended = true
	return true
}

// endLocked ends r's read with err, once. s.mu is held.
func (s *scans) endLocked(sc *scan, r *reader, err error) {
	if !slices.Contains(sc.readers, r) {
		return
	}
	sc.readers = remove(sc.readers, r)
	r.done <- err
}

// entryOfAny returns the entry of record m when it is a line of one of jobs
// (see entryOf).
func (c *Client) entryOfAny(p int32, m *sarama.ConsumerMessage, jobs []string) *hub.Entry {
	job := hub.RecordJob(m.Key, m.Value)
	if !slices.Contains(jobs, job) {
		return nil
	}
	return c.entryOf(p, m, job)
}

// entryOf returns the entry of record m when it is one of job's lines, as
// the live consumers route it (hub.Deliver): a record keyed by the job, or
// a record without a key (other producers) whose value names the job.
// Records are told apart by their key, or the value's top-level "job"
// found without decoding (hub.RecordJob); only job's records are decoded.
func (c *Client) entryOf(p int32, m *sarama.ConsumerMessage, job string) *hub.Entry {
	if hub.RecordJob(m.Key, m.Value) != job {
		return nil
	}
	e, ok := hub.NewEntry(p, m.Offset, m.Key, m.Value, m.Timestamp)
	if !ok {
		c.cfg.Metrics.Undecodable.Inc()
	}
	if e.Job != job { // a keyless value that names the job but is not a record
		return nil
	}
	return e
}
