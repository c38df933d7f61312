package catalogue

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// byKey indexes collected entries by record key.
func byKey(entries []Entry) map[string]Entry {
	m := make(map[string]Entry, len(entries))
	for _, e := range entries {
		m[e.Key()] = e
	}
	return m
}

// TestCountsRateAndFlush follows two jobs of one partition over three
// intervals: the rate is the lines of the interval per minute, the total
// counts on, and a job whose lines stop gets one zero-rate entry, then none.
func TestCountsRateAndFlush(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := NewCounts()
		defer c.Claimed("logs", 3)()
		t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
		for i := range 30 {
			c.Seen("logs", 3, []byte("web"), "web", t0.Add(time.Duration(i)*time.Second))
		}
		for range 5 {
			c.Seen("logs", 3, nil, "cron", t0) // keyless: the value's job
		}
		time.Sleep(10 * time.Second)
		got := byKey(c.collect(time.Now()))
		want := map[string]Entry{
			"logs:3:web":  {Job: "web", Topic: "logs", Partition: 3, LastSeen: t0.Add(29 * time.Second), LinesPerMin: 180, Lines: 30},
			"logs:3:cron": {Job: "cron", Topic: "logs", Partition: 3, LastSeen: t0, LinesPerMin: 30, Lines: 5},
		}
		check(t, "first interval", got, want)

		time.Sleep(20 * time.Second)
		for range 10 {
			c.Seen("logs", 3, []byte("web"), "web", t0.Add(time.Minute))
		}
		got = byKey(c.collect(time.Now()))
		want = map[string]Entry{
			"logs:3:web":  {Job: "web", Topic: "logs", Partition: 3, LastSeen: t0.Add(time.Minute), LinesPerMin: 30, Lines: 40},
			"logs:3:cron": {Job: "cron", Topic: "logs", Partition: 3, LastSeen: t0, LinesPerMin: 0, Lines: 5},
		}
		check(t, "second interval, cron stopped", got, want)

		time.Sleep(10 * time.Second)
		got = byKey(c.collect(time.Now()))
		want = map[string]Entry{
			"logs:3:web": {Job: "web", Topic: "logs", Partition: 3, LastSeen: t0.Add(time.Minute), LinesPerMin: 0, Lines: 40},
		}
		check(t, "third interval, web stopped", got, want)

		time.Sleep(10 * time.Second)
		if got := c.collect(time.Now()); len(got) != 0 {
			t.Fatalf("idle jobs wrote again: %+v", got)
		}
	})
}

func check(t *testing.T, what string, got, want map[string]Entry) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d entries %+v, want %d %+v", what, len(got), got, len(want), want)
	}
	for k, w := range want {
		g, ok := got[k]
		if !ok || !g.LastSeen.Equal(w.LastSeen) || g.LinesPerMin != w.LinesPerMin || g.Lines != w.Lines || g.Job != w.Job ||
			g.Topic != w.Topic || g.Partition != w.Partition {
			t.Fatalf("%s: %s = %+v, want %+v", what, k, g, w)
		}
	}
}

// TestCountsOwnership: lines of a partition this process does not own are
// not counted, and a partition claimed again counts from zero.
func TestCountsOwnership(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := NewCounts()
		ts := time.Now()
		c.Seen("logs", 0, []byte("a"), "a", ts)
		release := c.Claimed("logs", 0)
		c.Seen("logs", 0, []byte("a"), "a", ts)
		c.Seen("logs", 0, []byte("a"), "a", ts)
		release()
		c.Seen("logs", 0, []byte("a"), "a", ts)
		time.Sleep(time.Second)
		if got := c.collect(time.Now()); len(got) != 0 {
			t.Fatalf("released partition wrote %+v", got)
		}
		defer c.Claimed("logs", 0)()
		c.Seen("logs", 0, []byte("a"), "a", ts)
		time.Sleep(time.Second)
		got := c.collect(time.Now())
		if len(got) != 1 || got[0].Lines != 1 {
			t.Fatalf("after claiming again: %+v, want one entry of 1 line", got)
		}
	})
}

// TestCountsJob: the key names the job when there is one; a record with
// neither key nor job is not counted, and a line without @timestamp is
// seen now.
func TestCountsJob(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := NewCounts()
		defer c.Claimed("logs", 1)()
		c.Seen("logs", 1, []byte("by-key"), "in-value", time.Time{})
		c.Seen("logs", 1, nil, "", time.Now())
		time.Sleep(time.Second)
		got := c.collect(time.Now())
		if len(got) != 1 || got[0].Job != "by-key" || !got[0].LastSeen.Equal(time.Now().Add(-time.Second)) {
			t.Fatalf("entries %+v, want one of job by-key last seen a second ago", got)
		}
	})
}

// TestCountsForget: a job idle for a day is forgotten, so that the counts
// of a long-running transfer do not grow with every job that ever was.
func TestCountsForget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := NewCounts()
		defer c.Claimed("logs", 0)()
		c.Seen("logs", 0, []byte("a"), "a", time.Now())
		for range 2 {
			time.Sleep(10 * time.Second)
			c.collect(time.Now()) // the line, then the zero rate
		}
		p := c.parts[partKey{"logs", 0}]
		time.Sleep(forgetAfter - time.Second)
		c.collect(time.Now())
		if len(p.jobs) != 1 {
			t.Fatal("job forgotten before a day")
		}
		time.Sleep(2 * time.Second)
		c.collect(time.Now())
		if len(p.jobs) != 0 {
			t.Fatal("job idle for a day still counted")
		}
	})
}

func TestEntryRecord(t *testing.T) {
	e := Entry{Job: "api:v2", Topic: "logs", Partition: 4,
		LastSeen:    time.Date(2026, 12, 1, 11, 0, 0, 123456000, time.FixedZone("CET", 3600)),
		LinesPerMin: 12.5, Lines: 99}
	if got := e.Key(); got != "logs:4:api:v2" {
		t.Fatalf("key %q", got)
	}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"job":"api:v2","topic":"logs","partition":4,"last_seen":"2026-12-01T10:00:00.123456Z","lines_per_min":12.5,"lines":99}`
	if string(b) != want {
		t.Fatalf("value\n%s, want\n%s", b, want)
	}
	// The key splits back at its first two colons.
	parts := strings.SplitN(e.Key(), ":", 3)
	if !slices.Equal(parts, []string{"logs", "4", "api:v2"}) {
		t.Fatalf("key splits into %q", parts)
	}
}
