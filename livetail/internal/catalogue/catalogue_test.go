package catalogue

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// record is a catalogue record as transfer writes it.
func record(topic string, p int32, job string, lastSeen time.Time, rate float64) (key, value []byte) {
	key = fmt.Appendf(nil, "%s:%d:%s", topic, p, job)
	value = fmt.Appendf(nil, `{"job":%q,"topic":%q,"partition":%d,"last_seen":%q,"lines_per_min":%g,"lines":10}`,
		job, topic, p, lastSeen.UTC().Format(time.RFC3339Nano), rate)
	return key, value
}

func TestJobs(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	c := New(Options{LogTopic: "logs", Window: 24 * time.Hour, Now: func() time.Time { return now }})
	apply := func(topic string, p int32, job string, ago time.Duration, rate float64) {
		c.apply(record(topic, p, job, now.Add(-ago), rate))
	}
	apply("logs", 2, "web", time.Minute, 60)
	apply("logs", 5, "web", 10*time.Second, 30) // the newest: web's partition
	apply("logs", 1, "api:v2", time.Hour, 7)    // a colon in the job; its rate is stale
	apply("logs", 0, "old", 25*time.Hour, 5)    // past the window
	apply("other", 3, "elsewhere", 0, 5)        // another log topic
	apply("logs", 4, "gone", time.Minute, 5)
	c.apply([]byte("logs:4:gone"), nil)               // a tombstone
	c.apply([]byte("logs:9:bad"), []byte("not json")) // ignored
	k, v := record("logs", 3, "liar", now, 1)
	c.apply(append(k, 'x'), v) // key and value disagree: ignored

	got := c.Jobs()
	want := []Job{
		{Job: "api:v2", Partition: 1, Partitions: []int32{1}, LastSeen: now.Add(-time.Hour), LinesPerMin: 0},
		{Job: "web", Partition: 5, Partitions: []int32{2, 5}, LastSeen: now.Add(-10 * time.Second), LinesPerMin: 90},
	}
	if len(got) != len(want) {
		t.Fatalf("Jobs = %+v, want %+v", got, want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Job != w.Job || g.Partition != w.Partition || !slices.Equal(g.Partitions, w.Partitions) ||
			!g.LastSeen.Equal(w.LastSeen) || g.LinesPerMin != w.LinesPerMin {
			t.Fatalf("job %d = %+v, want %+v", i, g, w)
		}
	}
	if p := c.Partitions("web"); !slices.Equal(p, []int32{2, 5}) {
		t.Fatalf("Partitions(web) = %v", p)
	}
	if p := c.Partitions("old"); p != nil {
		t.Fatalf("Partitions(old) = %v, want none: past the window", p)
	}

	// Just under a day later, web's entry of partition 2 is past the window
	// and that of partition 5 is not; an hour later everything is gone,
	// and memory with it.
	now = now.Add(24*time.Hour - 30*time.Second)
	if p := c.Partitions("web"); !slices.Equal(p, []int32{5}) {
		t.Fatalf("a day later, Partitions(web) = %v, want [5]", p)
	}
	now = now.Add(time.Hour)
	if jobs := c.Jobs(); len(jobs) != 0 {
		t.Fatalf("past the window: %+v", jobs)
	}
	if len(c.entries) != 0 {
		t.Fatalf("%d entries held past the window", len(c.entries))
	}
}

// TestBounded: past maxEntries, the oldest entries make room.
func TestBounded(t *testing.T) {
	now := time.Now()
	c := New(Options{LogTopic: "logs", Now: func() time.Time { return now }})
	for i := range maxEntries + 10 {
		c.apply(record("logs", 0, fmt.Sprint("job-", i), now.Add(-time.Hour+time.Duration(i)*time.Millisecond), 1))
	}
	if n := len(c.entries); n != maxEntries {
		t.Fatalf("%d entries, want the bound %d", n, maxEntries)
	}
	if c.Partitions("job-0") != nil || c.Partitions(fmt.Sprint("job-", maxEntries+9)) == nil {
		t.Fatal("the oldest entries should have made room for the newest")
	}
}
