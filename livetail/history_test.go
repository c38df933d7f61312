package main

import (
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/logpipe/logpipe/common/record"
	"github.com/logpipe/logpipe/devstack/stack"
	"github.com/logpipe/logpipe/livetail/internal/wire"
)

// History asked with tail=N, since= and cursor= continues into live data
// with no gap and no duplicate while producers keep writing.
func TestHistoryJoinsLive(t *testing.T) {
	stack.ForBackends(t, testHistoryJoinsLive)
}

func testHistoryJoinsLive(t *testing.T, kind string) {
	s := newKafkaOf(t, stack.Options{Backends: kind})
	cfg := testConfig(s)
	// The test waits for livetail to read lines no session watches yet.
	cfg.Consume.Value = "all"
	cfg.ClientBuffer = 300 // small, so that catching up overflows the queue and history is re-read
	ts := startServer(t, cfg)
	p := newProducer(t, s)

	// At the mark, after the first 100 lines, a client is handed a cursor
	// (caught_up's); the "cursor" session resumes with it.
	tests := map[string]struct {
		query func(job string, mark time.Time, cursor string) string
		first func(offs []int64) int // index of the first line expected
	}{
		"tail": {
			query: func(job string, _ time.Time, _ string) string { return query("job", job, "tail", "50") },
			first: nil, // checked by count below
		},
		"since": {
			query: func(job string, mark time.Time, _ string) string {
				return query("job", job, "since", mark.Format(time.RFC3339Nano))
			},
			first: func([]int64) int { return 100 },
		},
		"since duration": {
			query: func(job string, mark time.Time, _ string) string {
				return query("job", job, "since", time.Hour.String())
			},
			first: func([]int64) int { return 0 },
		},
		"cursor": {
			query: func(job string, _ time.Time, cursor string) string {
				return query("job", job, "cursor", cursor)
			},
			first: func([]int64) int { return 100 },
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			job := "hist-" + name
			first100 := p.produce(t, job, 0, 100)
			eventually(t, within, "livetail read the first 100 lines", func() bool {
				return ts.hub.Next(p.partition(job)) > first100[99]
			})
			cursor := handedCursor(t, ts, job)
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
			t.Cleanup(func() { stop() })
			c := mustDial(t, ts.url(tt.query(job, mark, cursor)))
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

// handedCursor returns the cursor livetail hands a client of job that asks
// for no history: caught_up's, everything up to now.
func handedCursor(t testing.TB, ts *testServer, job string) string {
	t.Helper()
	c := mustDial(t, ts.url(query("job", job)))
	defer c.c.CloseNow()
	if f := c.mustNext(); f.Type != wire.TypeHello {
		t.Fatalf("first frame %+v, want hello", f)
	}
	f := c.mustNext()
	if f.Type != wire.TypeCaughtUp || f.Cursor == "" {
		t.Fatalf("second frame %+v, want caught_up with a cursor", f)
	}
	return f.Cursor
}

// tail=N sends exactly the job's last N lines when the hub is up to date.
func TestTailExact(t *testing.T) {
	stack.ForBackends(t, testTailExact)
}

func testTailExact(t *testing.T, kind string) {
	s := newKafkaOf(t, stack.Options{Backends: kind})
	cfg := testConfig(s)
	// The test waits for livetail to read lines no session watches yet.
	cfg.Consume.Value = "all"
	ts := startServer(t, cfg)
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
// the bound.
func TestHistoryScanBounded(t *testing.T) {
	stack.ForBackends(t, testHistoryScanBounded)
}

func testHistoryScanBounded(t *testing.T, kind string) {
	s := newKafkaOf(t, stack.Options{Backends: kind})
	cfg := testConfig(s)
	// The test waits for livetail to read lines no session watches yet.
	cfg.Consume.Value = "all"
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
}

// A since= scan that would run long (a partition of many records of other
// jobs, within a large --max-history-scan) stops when its client vanishes
// in the middle of it: the records scanned stop growing, well before the
// partition's end, no history read is left under way, and livetail's
// goroutines are back to what they were before the session.
func TestHistoryScanAbandoned(t *testing.T) {
	stack.ForBackends(t, testHistoryScanAbandoned)
}

func testHistoryScanAbandoned(t *testing.T, kind string) {
	s := newKafkaOf(t, stack.Options{Backends: kind})
	// Written before livetail starts, so that its live consumers start
	// near the end (--jobs-scan) rather than read them all too. Scanning
	// them takes about a second on 2 cores with the race detector; a
	// client leaves within milliseconds of the scan's start.
	const (
		long, short = int32(0), int32(1) // partitions
		records     = 200_000
	)
	produceOn(t, s, long, "noise", records)
	cfg := testConfig(s)
	// The test waits for livetail to read lines no session watches yet.
	cfg.Consume.Value = "all"
	cfg.MaxHistoryScan = 10 * records // the bound is not what ends this scan
	ts := startServer(t, cfg)
	// Jobs that every standard partitioner puts on one partition, so that
	// a session's history is one read, always on the same history client.
	job, warm := jobOnlyOn(ts, long), jobOnlyOn(ts, short)
	produceOn(t, s, short, warm, 10)
	eventually(t, within, "livetail read the warm-up lines", func() bool { return ts.hub.Next(short) == 10 })
	scannedTotal := func() float64 { return ts.metric(t, "livetail_history_records_scanned_total") }

	// A whole scan first: the history client's connections, which stay
	// open, are part of the baseline.
	w := mustDial(t, ts.url(query("job", warm, "since", "1h")))
	if got := w.collect(0, within); len(got.lines) != 10 {
		t.Fatalf("warming up: %d lines of %s, want 10", len(got.lines), warm)
	}
	w.c.CloseNow()
	eventually(t, within, "the warm-up session gone", func() bool {
		return ts.metric(t, "livetail_connections") == 0 && ts.metric(t, "livetail_history_reads") == 0
	})
	baseline := runtime.NumGoroutine()
	before := scannedTotal()

	c := mustDial(t, ts.url(query("job", job, "since", "1h")))
	if f := c.mustNext(); f.Type != wire.TypeHello {
		t.Fatalf("first frame %+v, want hello", f)
	}
	eventually(t, within, "the scan under way", func() bool { return scannedTotal() > before })
	c.c.CloseNow() // no close frame: the tab was closed, the network cut

	// Stopped: two reads a few hundred ms apart are equal.
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(within)
	last := scannedTotal()
	for {
		<-tick.C
		n := scannedTotal()
		if n == last {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("records scanned still growing %v after the client left (%v)", within, n-before)
		}
		last = n
	}
	if n := last - before; n >= records {
		t.Fatalf("%v records scanned: the whole partition (%d), as if the client had not left", n, records)
	} else {
		t.Logf("%v of %d records scanned before the scan stopped", n, records)
	}
	eventually(t, within, "history reads back to 0", func() bool { return ts.metric(t, "livetail_history_reads") == 0 })
	eventually(t, within, "livetail_connections back to 0", func() bool { return ts.metric(t, "livetail_connections") == 0 })
	eventually(t, within, "goroutines back to the baseline", func() bool { return runtime.NumGoroutine() <= baseline })
}

// jobOnlyOn returns a job that murmur2, CRC32 and FNV-1a all put on
// partition p of the server's topic.
func jobOnlyOn(ts *testServer, p int32) string {
	for i := 0; ; i++ {
		job := fmt.Sprintf("only-%d-%d", p, i)
		if c := ts.kafka.Candidates(job); len(c) == 1 && c[0] == p {
			return job
		}
	}
}

// produceOn writes n records of job to partition p of the stack's log
// topic, in large batches.
func produceOn(t testing.TB, s *stack.Stack, p int32, job string, n int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.KafkaAddrs()...), kgo.DefaultProduceTopic(s.Topic("logs")),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const batch = 10_000
	for i := 0; i < n; i += batch {
		rs := make([]*kgo.Record, min(batch, n-i))
		for j := range rs {
			rec := record.Record{Timestamp: time.Now(), Message: line(job, i+j), Job: job, Host: record.Host{Name: "node-n"}}
			rs[j] = &kgo.Record{Key: []byte(job), Value: rec.AppendJSON(nil), Partition: p}
		}
		if err := cl.ProduceSync(t.Context(), rs...).FirstErr(); err != nil {
			t.Fatalf("producing to partition %d: %v", p, err)
		}
	}
}
