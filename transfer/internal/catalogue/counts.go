// Package catalogue keeps the jobs catalogue: transfer counts the records of
// each job in each partition it owns as they pass, and writes one record per
// (topic, partition, job) to a small compacted topic every interval, so that
// every livetail replica can list the jobs without reading the log topic.
//
// A record's key is "<topic>:<partition>:<job>" (Kafka topic names cannot
// hold ':', so the job, last, may) and its value is an Entry in JSON.
package catalogue

import (
	"encoding/json"
	"math"
	"strconv"
	"sync"
	"time"
)

// Bounds of what the counts hold.
const (
	// maxJobsPerPartition bounds the jobs counted in one partition; the
	// lines of jobs beyond it are not counted (a topic keyed by something
	// else than a job would otherwise grow the counts without end).
	maxJobsPerPartition = 10000
	// forgetAfter is how long a job that has no more lines stays counted
	// (its lines total with it) after its last zero-rate entry.
	forgetAfter = 24 * time.Hour
)

// Entry is the value of a catalogue record.
type Entry struct {
	Job       string `json:"job"`
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	// LastSeen is the @timestamp of the newest line counted (the time
	// transfer read it when the record has none).
	LastSeen time.Time `json:"last_seen"`
	// LinesPerMin is the job's lines in the partition since the previous
	// entry of the partition's owner (or since it took the partition),
	// divided by the time between the two, per minute.
	LinesPerMin float64 `json:"lines_per_min"`
	// Lines is the lines counted by this writer since it took the partition.
	Lines int64 `json:"lines"`
}

// Key is the record key of an entry: "<topic>:<partition>:<job>".
func (e *Entry) Key() string {
	return e.Topic + ":" + strconv.Itoa(int(e.Partition)) + ":" + e.Job
}

// MarshalJSON writes last_seen in UTC.
func (e Entry) MarshalJSON() ([]byte, error) {
	type plain Entry
	p := plain(e)
	p.LastSeen = p.LastSeen.UTC()
	return json.Marshal(p)
}

// Counts counts lines per job in the partitions this process owns. Seen is
// called for every record (by the partitions' goroutines at once); collect
// takes the entries to write.
type Counts struct {
	mu    sync.RWMutex
	parts map[partKey]*part
}

type partKey struct {
	topic     string
	partition int32
}

// part is the counts of one owned partition.
type part struct {
	mu          sync.Mutex
	lastCollect time.Time // when it was claimed, then the last collect
	jobs        map[string]*jobCount
}

type jobCount struct {
	lines     int64     // since the partition was claimed
	recent    int64     // since the last collect
	lastSeen  time.Time // newest @timestamp
	written   bool      // the last entry had a non-zero rate
	idleSince time.Time // when the zero-rate entry was taken
}

// NewCounts returns empty counts.
func NewCounts() *Counts {
	return &Counts{parts: map[partKey]*part{}}
}

// Claimed starts counting a partition; released drops its counts, without
// a last entry: the partition's new owner writes its entries from now on.
func (c *Counts) Claimed(topic string, partition int32) (released func()) {
	k := partKey{topic, partition}
	p := &part{lastCollect: time.Now(), jobs: map[string]*jobCount{}}
	c.mu.Lock()
	c.parts[k] = p
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		if c.parts[k] == p {
			delete(c.parts, k)
		}
		c.mu.Unlock()
	}
}

// Seen counts one line of job (key, when the record has one, else the
// value's job field) in a partition; ts is its @timestamp. Lines of
// partitions not claimed are ignored.
func (c *Counts) Seen(topic string, partition int32, key []byte, job string, ts time.Time) {
	c.mu.RLock()
	p := c.parts[partKey{topic, partition}]
	c.mu.RUnlock()
	if p == nil {
		return
	}
	if ts.IsZero() {
		ts = time.Now()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var j *jobCount
	if len(key) > 0 {
		j = p.jobs[string(key)] // no allocation for the lookup
		if j == nil {
			job = string(key)
		}
	} else {
		j = p.jobs[job]
	}
	if j == nil {
		if job == "" || len(p.jobs) >= maxJobsPerPartition {
			return
		}
		j = &jobCount{}
		p.jobs[job] = j
	}
	j.lines++
	j.recent++
	if ts.After(j.lastSeen) {
		j.lastSeen = ts
	}
}

// collect returns the entries to write at now: one for each job that had
// lines since the last collect, and one with a zero rate for each job whose
// lines stopped since the entry before. Jobs idle for forgetAfter are
// forgotten.
func (c *Counts) collect(now time.Time) []Entry {
	c.mu.RLock()
	parts := make(map[partKey]*part, len(c.parts))
	for k, p := range c.parts {
		parts[k] = p
	}
	c.mu.RUnlock()
	var out []Entry
	for k, p := range parts {
		out = p.collect(k, now, out)
	}
	return out
}

func (p *part) collect(k partKey, now time.Time, out []Entry) []Entry {
	p.mu.Lock()
	defer p.mu.Unlock()
	elapsed := max(now.Sub(p.lastCollect), time.Millisecond)
	p.lastCollect = now
	for name, j := range p.jobs {
		e := Entry{Job: name, Topic: k.topic, Partition: k.partition, LastSeen: j.lastSeen, Lines: j.lines}
		switch {
		case j.recent > 0:
			e.LinesPerMin = perMinute(j.recent, elapsed)
			j.recent, j.written = 0, true
		case j.written:
			j.written, j.idleSince = false, now
		default:
			if now.Sub(j.idleSince) > forgetAfter {
				delete(p.jobs, name)
			}
			continue
		}
		out = append(out, e)
	}
	return out
}

// perMinute is n lines over d, per minute, to two decimals.
func perMinute(n int64, d time.Duration) float64 {
	r := float64(n) * float64(time.Minute) / float64(d)
	return math.Round(r*100) / 100
}
