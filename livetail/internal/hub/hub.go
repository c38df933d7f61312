// Package hub fans the records of a topic out by job to live subscribers.
//
// One partition consumer per partition (package upstream) publishes entries
// in offset order. A subscriber follows its jobs (one or more) on every
// partition of the topic, since a job's lines are wherever their producers' partitioners put
// them (several partitions when producers differ, a new one after partitions
// were added), and gets them through its own bounded queue. Publishing never
// blocks and runs no per-subscriber filter: when a subscriber's queue is full
// the entry is dropped for that subscriber only, and the subscriber later
// receives a drop marker with the count and offset range of what it missed.
// Filtering (grep) is the subscriber's own work, done when it takes entries.
//
// A new subscriber starts in catch-up mode, while its session sends history
// read from Kafka: an overflow then does not drop anything but marks, per
// partition, where the queue stopped, so that the session reads the rest from
// Kafka too (see Sub.Settle). That is how history joins the live stream with
// no gap and no duplicate.
//
// The hub also remembers which jobs it saw on which partitions (Jobs,
// JobPartitions), so that history is read where a job's lines are.
package hub

import (
	"errors"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrUnavailable is returned for a partition whose consumer failed for good.
var ErrUnavailable = errors.New("hub: upstream unavailable")

// Options configures a Hub. Nil metrics are allowed.
type Options struct {
	Pending prometheus.Gauge   // entries queued to subscribers
	Dropped prometheus.Counter // entries dropped for slow subscribers
	JobsTTL time.Duration      // how long a job stays listed after its last line (default 24h)
	MaxJobs int                // most jobs remembered (default 10000)
	Now     func() time.Time
}

// Hub routes entries of a topic's partitions to subscribers by job.
type Hub struct {
	pending prometheus.Gauge
	dropped prometheus.Counter

	mu    sync.RWMutex // guards parts (its length) and subs
	parts []*partition
	subs  map[*Sub]struct{}
	calls atomic.Uint64 // numbers Publish calls, for Sub.offer

	jobs jobs
}

type partition struct {
	id   int32
	mu   sync.Mutex
	next int64 // offset of the next record to publish
	subs map[string]map[*Sub]struct{}
	down error  // non-nil while the consumer has failed for good
	wake []*Sub // Publish's subscribers to wake, reused
}

func newPartition(id int32, next int64) *partition {
	return &partition{id: id, next: next, subs: map[string]map[*Sub]struct{}{}}
}

// New returns a hub for n partitions, each starting at offset 0 until
// SetNext says otherwise.
func New(n int, opts Options) *Hub {
	if opts.Pending == nil {
		opts.Pending = prometheus.NewGauge(prometheus.GaugeOpts{Name: "unused_pending"})
	}
	if opts.Dropped == nil {
		opts.Dropped = prometheus.NewCounter(prometheus.CounterOpts{Name: "unused_dropped"})
	}
	if opts.JobsTTL <= 0 {
		opts.JobsTTL = 24 * time.Hour
	}
	if opts.MaxJobs <= 0 {
		opts.MaxJobs = 10000
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	h := &Hub{
		pending: opts.Pending,
		dropped: opts.Dropped,
		parts:   make([]*partition, n),
		subs:    map[*Sub]struct{}{},
		jobs:    jobs{ttl: opts.JobsTTL, max: opts.MaxJobs, now: opts.Now, seen: map[string]*jobState{}},
	}
	for i := range h.parts {
		h.parts[i] = newPartition(int32(i), 0)
	}
	return h
}

// part returns partition p, or nil when the hub has no such partition.
func (h *Hub) part(p int32) *partition {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if p < 0 || int(p) >= len(h.parts) {
		return nil
	}
	return h.parts[p]
}

// Partitions returns the number of partitions.
func (h *Hub) Partitions() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.parts)
}

// AddPartitions adds partitions after the existing ones (partitions added
// to the topic), the i-th starting at offset starts[i]. Every subscriber
// follows them from there on.
func (h *Hub) AddPartitions(starts []int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, next := range starts {
		pt := newPartition(int32(len(h.parts)), next)
		for s := range h.subs {
			s.join(pt)
		}
		h.parts = append(h.parts, pt)
	}
}

// SetNext sets the offset the partition's consumer will publish next; call
// it before the consumer starts.
func (h *Hub) SetNext(p int32, next int64) {
	pt := h.part(p)
	pt.mu.Lock()
	pt.next = next
	pt.mu.Unlock()
}

// Next returns the offset of the next record the partition will publish.
func (h *Hub) Next(p int32) int64 {
	pt := h.part(p)
	if pt == nil {
		return 0
	}
	pt.mu.Lock()
	defer pt.mu.Unlock()
	return pt.next
}

// Publish hands entries of partition p, in offset order, to the subscribers
// of their jobs and records that the partition continues at next. It never
// blocks on a subscriber and evaluates no subscriber's filter. Each
// subscriber that got entries is woken once, after all of them are queued,
// so that its session can send them in one frame.
func (h *Hub) Publish(p int32, entries []*Entry, next int64) {
	pt := h.part(p)
	call := h.calls.Add(1)
	pt.mu.Lock()
	for _, e := range entries {
		for s := range pt.subs[e.Job] {
			if s.offer(e, call) {
				pt.wake = append(pt.wake, s)
			}
		}
	}
	h.advanceAndWakeLocked(pt, next)
	pt.mu.Unlock()
	h.jobs.saw(p, entries)
}

// advanceAndWakeLocked records that pt continues at next and wakes the
// subscribers a publishing call queued entries to. pt's lock is held.
func (h *Hub) advanceAndWakeLocked(pt *partition, next int64) {
	if next > pt.next {
		pt.next = next
	}
	for i, s := range pt.wake {
		s.wake()
		pt.wake[i] = nil
	}
	pt.wake = pt.wake[:0]
}

// Fail marks the partition unavailable and ends, with err (wrapped in
// ErrUnavailable), every subscription that depends on it: those whose job
// is, or may be, on it (Subscribe's deps). New subscriptions that depend on
// it fail until Recover.
func (h *Hub) Fail(p int32, err error) {
	err = errors.Join(ErrUnavailable, err)
	pt := h.part(p)
	pt.mu.Lock()
	defer pt.mu.Unlock()
	pt.down = err
	for _, set := range pt.subs {
		for s := range set {
			if slices.Contains(s.deps, p) {
				s.fail(err)
			}
		}
	}
}

// Recover marks the partition available again.
func (h *Hub) Recover(p int32) {
	pt := h.part(p)
	pt.mu.Lock()
	pt.down = nil
	pt.mu.Unlock()
}

// Down returns the partitions that have failed for good.
func (h *Hub) Down() []int32 {
	h.mu.RLock()
	parts := h.parts
	h.mu.RUnlock()
	var down []int32
	for _, pt := range parts {
		pt.mu.Lock()
		if pt.down != nil {
			down = append(down, pt.id)
		}
		pt.mu.Unlock()
	}
	return down
}

// Subscribe registers a subscriber for jobs (distinct) on every partition,
// in catch-up mode, with a queue of at most limit entries. deps are the
// partitions where the jobs' lines are or may be: the subscription fails
// with the first of them that goes down. It returns the subscriber and, per
// partition, the join offset: every entry of the jobs from that offset on
// goes to the queue, in each partition's offset order; the session reads
// what came before from Kafka.
func (h *Hub) Subscribe(jobs []string, deps []int32, limit int) (*Sub, []int64, error) {
	if limit < 1 {
		limit = 1
	}
	s := &Sub{
		hub:        h,
		jobs:       slices.Clone(jobs),
		deps:       slices.Clone(deps),
		limit:      limit,
		notify:     make(chan struct{}, 1),
		catchingUp: true,
		gapFrom:    map[int32]int64{},
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range deps {
		if p < 0 || int(p) >= len(h.parts) {
			continue
		}
		pt := h.parts[p]
		pt.mu.Lock()
		down := pt.down
		pt.mu.Unlock()
		if down != nil {
			return nil, nil, down
		}
	}
	for _, pt := range h.parts {
		s.join(pt)
	}
	h.subs[s] = struct{}{}
	return s, slices.Clone(s.joins), nil
}

// Subscribers returns the number of active subscriptions.
func (h *Hub) Subscribers() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.subs)
}

// Job is one entry of the jobs list.
type Job struct {
	Job string `json:"job"`
	// Partition is where the job's latest line was seen.
	Partition int32 `json:"partition"`
	// Partitions are every partition the job's lines were seen on.
	Partitions []int32   `json:"partitions,omitempty"`
	LastSeen   time.Time `json:"last_seen,omitzero"`
}

// Seen is a partition where a job's lines were seen, and the first offset
// of the job this process saw there.
type Seen struct {
	Partition int32
	First     int64
}

// Jobs returns the jobs seen within the TTL, sorted by name.
func (h *Hub) Jobs() []Job { return h.jobs.list() }

// JobPartitions returns where job's lines were seen, by partition.
func (h *Hub) JobPartitions(job string) []Seen { return h.jobs.partitions(job) }

type jobState struct {
	last     int32
	seen     []Seen
	lastSeen time.Time
}

type jobs struct {
	ttl  time.Duration
	max  int
	now  func() time.Time
	mu   sync.Mutex
	seen map[string]*jobState
}

func (j *jobs) saw(p int32, entries []*Entry) {
	seen := make([]seenJob, len(entries))
	for i, e := range entries {
		seen[i] = seenJob{job: e.Job, offset: e.Offset}
	}
	j.sawJobs(p, seen)
}

func (j *jobs) sawJobs(p int32, seen []seenJob) {
	if len(seen) == 0 {
		return
	}
	now := j.now()
	j.mu.Lock()
	defer j.mu.Unlock()
	last := ""
	for _, e := range seen {
		if e.job == last {
			continue
		}
		last = e.job
		st := j.seen[e.job]
		if st == nil {
			if len(j.seen) >= j.max {
				j.pruneLocked(now, true)
			}
			st = &jobState{}
			j.seen[e.job] = st
		}
		st.last, st.lastSeen = p, now
		if !slices.ContainsFunc(st.seen, func(s Seen) bool { return s.Partition == p }) {
			st.seen = append(st.seen, Seen{Partition: p, First: e.offset})
		}
	}
}

// pruneLocked removes expired jobs; when still full and force is set, it
// removes the least recently seen one.
func (j *jobs) pruneLocked(now time.Time, force bool) {
	var oldest string
	var oldestAt time.Time
	for name, st := range j.seen {
		if now.Sub(st.lastSeen) > j.ttl {
			delete(j.seen, name)
			continue
		}
		if oldest == "" || st.lastSeen.Before(oldestAt) {
			oldest, oldestAt = name, st.lastSeen
		}
	}
	if force && len(j.seen) >= j.max && oldest != "" {
		delete(j.seen, oldest)
	}
}

func (j *jobs) list() []Job {
	j.mu.Lock()
	j.pruneLocked(j.now(), false)
	out := make([]Job, 0, len(j.seen))
	for name, st := range j.seen {
		job := Job{Job: name, Partition: st.last, LastSeen: st.lastSeen}
		for _, s := range st.seen {
			job.Partitions = append(job.Partitions, s.Partition)
		}
		slices.Sort(job.Partitions)
		out = append(out, job)
	}
	j.mu.Unlock()
	sort.Slice(out, func(a, b int) bool { return out[a].Job < out[b].Job })
	return out
}

func (j *jobs) partitions(job string) []Seen {
	j.mu.Lock()
	defer j.mu.Unlock()
	st := j.seen[job]
	if st == nil {
		return nil
	}
	return slices.Clone(st.seen)
}
