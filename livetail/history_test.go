package main

import (
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/logpipe/logpipe/devstack/stack"
)

// History asked with tail=N, since= and cursor= continues into live data
// with no gap and no duplicate while producers keep writing.
func TestHistoryJoinsLive(t *testing.T) {
	stack.ForBackends(t, testHistoryJoinsLive)
}

func testHistoryJoinsLive(t *testing.T, kind string) {
	s := newKafkaOf(t, stack.Options{Backends: kind})
	cfg := testConfig(s)
	cfg.ClientBuffer = 300 // small, so that catching up overflows the queue and history is re-read
	ts := startServer(t, cfg)
	p := newProducer(t, s)

	tests := map[string]struct {
		query func(job string, mark time.Time, offs []int64) string
		first func(offs []int64) int // index of the first line expected
	}{
		"tail": {
			query: func(job string, _ time.Time, _ []int64) string { return query("job", job, "tail", "50") },
			first: nil, // checked by count below
		},
		"since": {
			query: func(job string, mark time.Time, _ []int64) string {
				return query("job", job, "since", mark.Format(time.RFC3339Nano))
			},
			first: func([]int64) int { return 100 },
		},
		"since duration": {
			query: func(job string, mark time.Time, _ []int64) string {
				return query("job", job, "since", time.Hour.String())
			},
			first: func([]int64) int { return 0 },
		},
		"cursor": {
			query: func(job string, _ time.Time, offs []int64) string {
				return query("job", job, "cursor", strconv.FormatInt(offs[149], 10))
			},
			first: func([]int64) int { return 150 },
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			job := "hist-" + name
			p.produce(t, job, 0, 100)
			time.Sleep(5 * time.Millisecond)
			mark := time.Now()
			time.Sleep(5 * time.Millisecond)
			offs := p.produce(t, job, 100, 100)
			// A client's cursor names a line it was shown, and tail=N
			// counts back from what livetail has read: the join waits
			// for livetail to have read these lines, not for the
			// lines written while it joins.
			eventually(t, within, "livetail read the first 200 lines", func() bool {
				return ts.hub.Next(p.partition(job)) > offs[len(offs)-1]
			})
			stop := p.background(job, 200, 10, 5*time.Millisecond)
			c := mustDial(t, ts.url(tt.query(job, mark, p.offsets(job))))
			if f := c.mustNext(); f.Type != "hello" {
				t.Fatalf("first frame %+v", f)
			}
			got := c.collect(300, within)
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			want := p.offsets(job)
			first := slices.Index(want, got.offsets[0])
			if tt.first != nil {
				if w := tt.first(want); first != w {
					t.Fatalf("first entry is line %d, want line %d", first, w)
				}
			} else if first < 100 {
				// The hub may lag the producer a little, but not by 100 lines.
				t.Fatalf("first entry is line %d, want one of the last 50 before the session joined", first)
			}
			// Once live, a test slowed down by a loaded machine is a slow
			// client: it may miss lines, announced by dropped frames.
			at := checkAnnounced(t, got, want, first)
			for i, l := range got.lines {
				if l != line(job, at[i]) {
					t.Fatalf("entry %d: %q, want %q", i, l, line(job, at[i]))
				}
			}
			if len(got.dropped) > 0 {
				t.Logf("the test read too slowly: %d dropped frames after caught_up", len(got.dropped))
			}
		})
	}
}

// tail=N sends exactly the job's last N lines when the hub is up to date.
func TestTailExact(t *testing.T) {
	stack.ForBackends(t, testTailExact)
}

func testTailExact(t *testing.T, kind string) {
	s := newKafkaOf(t, stack.Options{Backends: kind})
	ts := startServer(t, testConfig(s))
	p := newProducer(t, s)
	for i := 0; i < 500; i += 50 {
		p.produce(t, "exact", i, 50)
		p.produce(t, "other", i, 50) // interleaved on the same or other partitions
	}
	offs := p.offsets("exact")
	part := p.partition("exact")
	eventually(t, within, "hub caught up", func() bool { return ts.hub.Next(part) > offs[len(offs)-1] })

	for _, n := range []int{1, 50, 499, 500} {
		c := mustDial(t, ts.url(query("job", "exact", "tail", strconv.Itoa(n))))
		got := c.collect(0, within)
		if got.caughtUp != n {
			t.Fatalf("tail=%d: %d entries before caught_up", n, got.caughtUp)
		}
		checkContiguous(t, got.offsets, offs, 500-n)
	}
	// More than there is: everything.
	c := mustDial(t, ts.url(query("job", "exact", "tail", "1000")))
	got := c.collect(0, within)
	if got.caughtUp != 500 {
		t.Fatalf("tail=1000: %d entries before caught_up, want all 500", got.caughtUp)
	}
	checkContiguous(t, got.offsets, offs, 0)
	// With grep: the last N matching lines.
	c = mustDial(t, ts.url(query("job", "exact", "tail", "3", "grep", "line 4[0-9]9$")))
	got = c.collect(0, within)
	if !slices.Equal(got.lines, []string{"exact line 479", "exact line 489", "exact line 499"}) {
		t.Fatalf("tail=3 with grep: %q", got.lines)
	}
}

// since= over a partition longer than --max-history-scan reads at most that
// many records, announces what it skipped, and shows the job's lines within
// the bound; a client that vanishes during such scans leaves no history
// read, goroutine or connection behind.
func TestHistoryScanBounded(t *testing.T) {
	stack.ForBackends(t, testHistoryScanBounded)
}

func testHistoryScanBounded(t *testing.T, kind string) {
	s := newKafkaOf(t, stack.Options{Backends: kind})
	cfg := testConfig(s)
	cfg.MaxHistoryScan = 5000
	ts := startServer(t, cfg)
	p := newProducer(t, s)
	const job = "needle"
	p.produce(t, job, 0, 20)
	part := p.partition(job)
	noise := ""
	for i := 0; noise == ""; i++ { // a job on the same partition
		n := "noise-" + strconv.Itoa(i)
		p.produce(t, n, 0, 1)
		if p.partition(n) == part {
			noise = n
		}
	}
	for i := 0; i < 30000; i += 1000 {
		p.produce(t, noise, i, 1000)
	}
	p.produce(t, job, 20, 5)
	want := p.offsets(job)
	eventually(t, within, "hub caught up", func() bool { return ts.hub.Next(part) > want[len(want)-1] })

	scanned := ts.metric(t, "livetail_history_records_scanned_total")
	c := mustDial(t, ts.url(query("job", job, "since", "1h")))
	got := c.collect(0, within)
	if n := ts.metric(t, "livetail_history_records_scanned_total") - scanned; n > 5000 {
		t.Fatalf("%v records scanned, want at most --max-history-scan 5000", n)
	}
	if len(got.dropped) != 1 || got.dropped[0].Partition == nil || *got.dropped[0].Partition != part || *got.dropped[0].FromOffset != 0 {
		t.Fatalf("dropped %+v, want one frame for the start of partition %d", got.dropped, part)
	}
	checkContiguous(t, got.offsets, want, 20)
	if len(got.offsets) != 5 {
		t.Fatalf("%d lines, want the 5 within the bound", len(got.offsets))
	}
	c.c.CloseNow()

	// Ten clients ask for the history and vanish at once; the first round
	// also opens the history clients' connections, which stay.
	baseline := 0
	for round := range 2 {
		for range 10 {
			c := mustDial(t, ts.url(query("job", job, "since", "1h")))
			c.mustNext() // hello: the scan is under way
			c.c.CloseNow()
		}
		eventually(t, within, "history reads back to 0", func() bool { return ts.metric(t, "livetail_history_reads") == 0 })
		eventually(t, within, "livetail_connections back to 0", func() bool { return ts.metric(t, "livetail_connections") == 0 })
		if round == 0 {
			time.Sleep(200 * time.Millisecond)
			baseline = runtime.NumGoroutine()
			continue
		}
		eventually(t, within, "goroutines back to the baseline", func() bool { return runtime.NumGoroutine() <= baseline })
	}
}
