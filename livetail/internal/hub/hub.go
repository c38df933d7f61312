// Package hub fans the records of a topic out by job to live subscribers.
//
// One partition consumer per partition (package upstream) publishes entries
// in offset order; every subscriber of the entry's job gets it through its own
// bounded queue. Publishing never blocks: when a subscriber's queue is full
// the entry is dropped for that subscriber only, and the subscriber later
// receives a drop marker with the count and offset range of what it missed.
//
// A new subscriber starts in catch-up mode, while its session sends history
// read from Kafka: an overflow then does not drop anything but marks where
// the queue stopped, so that the session reads the rest from Kafka too
// (see Sub.Settle). That is how history joins the live stream with no gap and
// no duplicate.
package hub

import (
	"errors"
	"regexp"
	"sort"
	"sync"
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
	parts   []*partition
	pending prometheus.Gauge
	dropped prometheus.Counter

	jobs jobs
}

type partition struct {
	id   int32
	mu   sync.Mutex
	next int64 // offset of the next record to publish
	subs map[string]map[*Sub]struct{}
	down error // non-nil while the consumer has failed for good
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
		parts:   make([]*partition, n),
		pending: opts.Pending,
		dropped: opts.Dropped,
		jobs:    jobs{ttl: opts.JobsTTL, max: opts.MaxJobs, now: opts.Now, seen: map[string]Job{}},
	}
	for i := range h.parts {
		h.parts[i] = &partition{id: int32(i), subs: map[string]map[*Sub]struct{}{}}
	}
	return h
}

// Partitions returns the number of partitions.
func (h *Hub) Partitions() int { return len(h.parts) }

// SetNext sets the offset the partition's consumer will publish next; call
// it before the consumer starts.
func (h *Hub) SetNext(p int32, next int64) {
	pt := h.parts[p]
	pt.mu.Lock()
	pt.next = next
	pt.mu.Unlock()
}

// Next returns the offset of the next record the partition will publish.
func (h *Hub) Next(p int32) int64 {
	pt := h.parts[p]
	pt.mu.Lock()
	defer pt.mu.Unlock()
	return pt.next
}

// Publish hands entries, in offset order, to the subscribers of their jobs
// and records that the partition continues at next. It never blocks on a
// subscriber.
func (h *Hub) Publish(p int32, entries []*Entry, next int64) {
	pt := h.parts[p]
	pt.mu.Lock()
	for _, e := range entries {
		for s := range pt.subs[e.Job] {
			s.offer(e)
		}
	}
	if next > pt.next {
		pt.next = next
	}
	pt.mu.Unlock()
	h.jobs.saw(p, entries)
}

// Fail marks the partition unavailable and ends every subscription on it
// with err (wrapped in ErrUnavailable). New subscriptions fail until Recover.
func (h *Hub) Fail(p int32, err error) {
	err = errors.Join(ErrUnavailable, err)
	pt := h.parts[p]
	pt.mu.Lock()
	defer pt.mu.Unlock()
	pt.down = err
	for job, set := range pt.subs {
		for s := range set {
			s.fail(err)
		}
		delete(pt.subs, job)
	}
}

// Recover marks the partition available again.
func (h *Hub) Recover(p int32) {
	pt := h.parts[p]
	pt.mu.Lock()
	pt.down = nil
	pt.mu.Unlock()
}

// Down returns the partitions that have failed for good.
func (h *Hub) Down() []int32 {
	var down []int32
	for _, pt := range h.parts {
		pt.mu.Lock()
		if pt.down != nil {
			down = append(down, pt.id)
		}
		pt.mu.Unlock()
	}
	return down
}

// Subscribe registers a subscriber for job on partition p, in catch-up
// mode, and returns it with the join offset: every entry of the job from
// that offset on goes to the subscriber's queue; the session reads what came
// before from Kafka. filter, when not nil, keeps only matching lines. limit
// bounds the queue.
func (h *Hub) Subscribe(p int32, job string, filter *regexp.Regexp, limit int) (*Sub, int64, error) {
	if limit < 1 {
		limit = 1
	}
	pt := h.parts[p]
	s := &Sub{
		part:       pt,
		hub:        h,
		job:        job,
		filter:     filter,
		limit:      limit,
		notify:     make(chan struct{}, 1),
		catchingUp: true,
		gapFrom:    -1,
	}
	pt.mu.Lock()
	defer pt.mu.Unlock()
	if pt.down != nil {
		return nil, 0, pt.down
	}
	set := pt.subs[job]
	if set == nil {
		set = map[*Sub]struct{}{}
		pt.subs[job] = set
	}
	set[s] = struct{}{}
	return s, pt.next, nil
}

// Subscribers returns the number of active subscriptions.
func (h *Hub) Subscribers() int {
	n := 0
	for _, pt := range h.parts {
		pt.mu.Lock()
		for _, set := range pt.subs {
			n += len(set)
		}
		pt.mu.Unlock()
	}
	return n
}

// Job is one entry of the jobs list.
type Job struct {
	Job       string    `json:"job"`
	Partition int32     `json:"partition"`
	LastSeen  time.Time `json:"last_seen,omitzero"`
}

// Jobs returns the jobs seen within the TTL, sorted by name.
func (h *Hub) Jobs() []Job { return h.jobs.list() }

type jobs struct {
	ttl  time.Duration
	max  int
	now  func() time.Time
	mu   sync.Mutex
	seen map[string]Job
}

func (j *jobs) saw(p int32, entries []*Entry) {
	if len(entries) == 0 {
		return
	}
	now := j.now()
	j.mu.Lock()
	defer j.mu.Unlock()
	last := ""
	for _, e := range entries {
		if e.Job == last {
			continue
		}
		last = e.Job
		if _, ok := j.seen[e.Job]; !ok && len(j.seen) >= j.max {
			j.pruneLocked(now, true)
		}
		j.seen[e.Job] = Job{Job: e.Job, Partition: p, LastSeen: now}
	}
}

// pruneLocked removes expired jobs; when still full and force is set, it
// removes the least recently seen one.
func (j *jobs) pruneLocked(now time.Time, force bool) {
	var oldest string
	var oldestAt time.Time
	for name, job := range j.seen {
		if now.Sub(job.LastSeen) > j.ttl {
			delete(j.seen, name)
			continue
		}
		if oldest == "" || job.LastSeen.Before(oldestAt) {
			oldest, oldestAt = name, job.LastSeen
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
	for _, job := range j.seen {
		out = append(out, job)
	}
	j.mu.Unlock()
	sort.Slice(out, func(a, b int) bool { return out[a].Job < out[b].Job })
	return out
}
