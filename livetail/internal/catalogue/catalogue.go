// Package catalogue reads the jobs catalogue that transfer keeps in a small
// compacted topic (one record per log topic, partition and job, see
// transfer's README, "Jobs catalogue") and answers which jobs were seen
// within a window, and where, without reading the log topic.
//
// The reader consumes the whole catalogue topic from its start and follows
// it. A missing topic is not an error: it is looked up again every
// Options.Recheck. Kafka outages are retried with jittered backoff, and what
// was read stays listed meanwhile.
package catalogue

import (
	"encoding/json"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/logpipe/logpipe/common/kafkasec"
)

// Defaults of Options.
const (
	DefaultWindow  = 24 * time.Hour
	DefaultRecheck = 10 * time.Second
	// maxEntries bounds the entries held: past it, the oldest are
	// dropped first (entries past the window always are).
	maxEntries = 100000
	// staleRate is how old an entry's last_seen may be for its rate to
	// count. transfer writes a zero rate when a job's lines stop, but not
	// when transfer itself stops: a job last seen longer ago than this
	// has no recent rate, whatever its entry says.
	staleRate = 5 * time.Minute
)

// Options configure a Catalogue.
type Options struct {
	Brokers  []string
	Security *kafkasec.Config // TLS and SASL; nil: plaintext
	// Topic is the catalogue topic.
	Topic string
	// LogTopic is the log topic whose jobs are listed; entries of other
	// log topics are ignored.
	LogTopic string
	// Window is how long a job is listed after it was last seen.
	Window time.Duration
	// Recheck is how often a missing topic is looked up again.
	Recheck time.Duration
	// BackoffMin and BackoffMax bound the delay before reconnecting.
	BackoffMin, BackoffMax time.Duration
	// Records and Bytes count what is read from Kafka; nil: not counted.
	Records, Bytes prometheus.Counter
	Log            logrus.FieldLogger
	// Now is the clock of the window; nil: time.Now.
	Now func() time.Time
}

// Job is one job of the catalogue.
type Job struct {
	Job string
	// Partition is where the job was seen last.
	Partition int32
	// Partitions are the log topic's partitions where the job was seen
	// within the window, in order.
	Partitions []int32
	LastSeen   time.Time
	// LinesPerMin is the job's recent rate, summed over its partitions
	// (an entry last seen more than 5 minutes ago counts 0).
	LinesPerMin float64
}

// entry is the value of a catalogue record (transfer writes it).
type entry struct {
	Job         string    `json:"job"`
	Topic       string    `json:"topic"`
	Partition   int32     `json:"partition"`
	LastSeen    time.Time `json:"last_seen"`
	LinesPerMin float64   `json:"lines_per_min"`
	Lines       int64     `json:"lines"`
}

// Catalogue holds the entries read; Run fills it.
type Catalogue struct {
	opts Options

	mu      sync.Mutex
	entries map[string]entry // by record key
	next    map[int32]int64  // next offset to read, by partition of the topic
}

// New returns an empty Catalogue; Run reads the topic into it.
func New(opts Options) *Catalogue {
	if opts.Window <= 0 {
		opts.Window = DefaultWindow
	}
	if opts.Recheck <= 0 {
		opts.Recheck = DefaultRecheck
	}
	if opts.BackoffMin <= 0 {
		opts.BackoffMin = 500 * time.Millisecond
	}
	if opts.BackoffMax < opts.BackoffMin {
		opts.BackoffMax = max(30*time.Second, opts.BackoffMin)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		l := logrus.New()
		l.SetLevel(logrus.PanicLevel)
		opts.Log = l
	}
	return &Catalogue{opts: opts, entries: map[string]entry{}, next: map[int32]int64{}}
}

// Jobs returns the jobs seen within the window, sorted by name.
func (c *Catalogue) Jobs() []Job {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pruneLocked()
	stale := c.opts.Now().Add(-staleRate)
	byName := map[string]*Job{}
	for _, e := range c.entries {
		j := byName[e.Job]
		if j == nil {
			j = &Job{Job: e.Job}
			byName[e.Job] = j
		}
		if e.LastSeen.After(j.LastSeen) || len(j.Partitions) == 0 {
			j.Partition = e.Partition
		}
		j.LastSeen = later(j.LastSeen, e.LastSeen)
		if !e.LastSeen.Before(stale) {
			j.LinesPerMin += e.LinesPerMin
		}
		if !slices.Contains(j.Partitions, e.Partition) {
			j.Partitions = append(j.Partitions, e.Partition)
		}
	}
	out := make([]Job, 0, len(byName))
	for _, j := range byName {
		slices.Sort(j.Partitions)
		out = append(out, *j)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Job < out[b].Job })
	return out
}

// Partitions returns the log topic's partitions where job was seen within
// the window, in order; nil when it was not.
func (c *Catalogue) Partitions(job string) []int32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	cutoff := c.opts.Now().Add(-c.opts.Window)
	var out []int32
	for _, e := range c.entries {
		if e.Job == job && !e.LastSeen.Before(cutoff) && !slices.Contains(out, e.Partition) {
			out = append(out, e.Partition)
		}
	}
	slices.Sort(out)
	return out
}

// apply takes one record of the catalogue topic: an entry, or a tombstone
// (no value) that deletes its key. Records that are not entries of the log
// topic, or are past the window already, are ignored.
func (c *Catalogue) apply(key, value []byte) {
	k := string(key)
	c.mu.Lock()
	defer c.mu.Unlock()
	if value == nil {
		delete(c.entries, k)
		return
	}
	var e entry
	if err := json.Unmarshal(value, &e); err != nil || e.Job == "" || e.Topic != c.opts.LogTopic || keyOf(&e) != k {
		return
	}
	if e.LastSeen.Before(c.opts.Now().Add(-c.opts.Window)) {
		delete(c.entries, k)
		return
	}
	if _, ok := c.entries[k]; !ok && len(c.entries) >= maxEntries {
		c.pruneLocked()
		if len(c.entries) >= maxEntries {
			c.dropOldestLocked()
		}
	}
	c.entries[k] = e
}

// pruneLocked removes the entries past the window.
func (c *Catalogue) pruneLocked() {
	cutoff := c.opts.Now().Add(-c.opts.Window)
	for k, e := range c.entries {
		if e.LastSeen.Before(cutoff) {
			delete(c.entries, k)
		}
	}
}

func (c *Catalogue) dropOldestLocked() {
	var oldest string
	var at time.Time
	for k, e := range c.entries {
		if oldest == "" || e.LastSeen.Before(at) {
			oldest, at = k, e.LastSeen
		}
	}
	delete(c.entries, oldest)
}

// keyOf is the record key transfer gives an entry.
func keyOf(e *entry) string {
	return e.Topic + ":" + strconv.Itoa(int(e.Partition)) + ":" + e.Job
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
