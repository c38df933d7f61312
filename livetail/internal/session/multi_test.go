package session

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/logpipe/logpipe/livetail/internal/hub"
	"github.com/logpipe/logpipe/livetail/internal/wire"
)

// at names an entry by its place in the topic.
func at(partition int32, offset int64) string { return fmt.Sprintf("%d:%d", partition, offset) }

// linesOf returns the places of the entries of logs whose job is one of
// jobs and that keep passes, ordered by time.
func linesOf(logs [][]*hub.Entry, jobs []string, keep func(*hub.Entry) bool) []string {
	var all []*hub.Entry
	for _, log := range logs {
		for _, e := range log {
			if slices.Contains(jobs, e.Job) && (keep == nil || keep(e)) {
				all = append(all, e)
			}
		}
	}
	slices.SortStableFunc(all, func(a, b *hub.Entry) int { return int(a.TS - b.TS) })
	out := make([]string, len(all))
	for i, e := range all {
		out[i] = at(e.Partition, e.Offset)
	}
	return out
}

// placesOf returns the places of got, and fails when an entry's job is
// not the one its record has.
func placesOf(t *testing.T, logs [][]*hub.Entry, got []wire.EntryJSON) []string {
	t.Helper()
	out := make([]string, len(got))
	for i, e := range got {
		if want := logs[e.Partition][e.Offset].Job; e.Job != want {
			t.Fatalf("entry %s has job %q, want %q", at(e.Partition, e.Offset), e.Job, want)
		}
		out[i] = at(e.Partition, e.Offset)
	}
	return out
}

// twoPartitions returns partition 0 holding jobs a, b and c in turn (one a
// millisecond) and partition 1 holding b and a, half a millisecond later:
// every line has its own time.
func twoPartitions(n0, n1 int) (p0, p1 []*hub.Entry) {
	p0, p1 = newLogOn(0, n0, "a", "b", "c"), newLogOn(1, n1, "b", "a")
	for _, e := range p1 {
		e.TS += int64(500 * time.Microsecond)
	}
	return p0, p1
}

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// A stream of two jobs, on one partition (with a third job's lines
// between theirs) and on two: every line of the two, once, merged by
// time, each entry with its job; the third's never.
func TestSessionSeveralJobs(t *testing.T) {
	for name, tt := range map[string]struct {
		cands []int32
		p     Params
		keep  func(*hub.Entry) bool
		last  int // keep only the last lines (tail=N)
	}{
		"same partition since":  {cands: []int32{0}, p: Params{Mode: ModeSince, Since: epoch.Add(40 * time.Millisecond)}, keep: func(e *hub.Entry) bool { return e.Partition == 0 && e.TS >= epoch.Add(40*time.Millisecond).UnixNano() }},
		"two partitions since":  {cands: []int32{0, 1}, p: Params{Mode: ModeSince, Since: epoch}},
		"two partitions tail":   {cands: []int32{0, 1}, p: Params{Mode: ModeTail, Tail: 50}, last: 50},
		"same partition tail":   {cands: []int32{0}, p: Params{Mode: ModeTail, Tail: 7}, keep: func(e *hub.Entry) bool { return e.Partition == 0 }, last: 7},
		"two partitions cursor": {cands: []int32{0, 1}, p: Params{Mode: ModeCursor, Cursor: []Position{{0, 99}, {1, 9}}}, keep: func(e *hub.Entry) bool { return e.Offset > 99 || e.Partition == 1 && e.Offset > 9 }},
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p0, p1 := twoPartitions(300, 200)
				x := newHarness(opts{PingInterval: time.Hour, BatchSize: 7}, p0, p1)
				x.hist.cands = tt.cands
				x.h.SetNext(0, 300)
				x.h.SetNext(1, 200)
				p := tt.p
				p.Jobs = []string{"b", "a"}
				cancel, wait := x.start(t, p)
				synctest.Wait()
				cancel(ErrShutdown)
				wait()
				frames, _ := x.conn.got()
				if h := frames[0]; h.Type != wire.TypeHello || !slices.Equal(h.Jobs, []string{"b", "a"}) || h.Job != "b" {
					t.Fatalf("hello %+v, want jobs [b a] and job b", h)
				}
				got, _, drops := entriesOf(frames)
				want := linesOf(x.hist.logs, p.Jobs, tt.keep)
				if tt.last > 0 {
					want = want[len(want)-tt.last:]
				}
				if g := placesOf(t, x.hist.logs, got); !slices.Equal(g, want) || len(drops) > 0 {
					t.Fatalf("entries at %v (drops %+v), want %v", g, drops, want)
				}
			})
		})
	}
}

// A stream of jobs a and b, resumed by the cursor of a frame in the middle
// after the client was away while lines of a, b and c were written on
// both partitions: every line of a and b exactly once across the two
// sessions, none of c.
func TestSessionSeveralJobsResume(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p0, p1 := twoPartitions(300, 200)
		x := newHarness(opts{PingInterval: time.Hour, BatchSize: 7}, p0, p1)
		x.hist.cands = []int32{0, 1}
		x.h.SetNext(0, 300)
		x.h.SetNext(1, 200)
		// write appends n lines to each partition, published live.
		write := func(n int) {
			for p := range int32(2) {
				have := len(x.hist.logs[p])
				more := newLogOn(p, have+n, "c", "a", "b")[have:]
				x.hist.logs[p] = append(x.hist.logs[p], more...)
				x.h.Publish(p, more, int64(have+n))
			}
		}
		jobs := []string{"a", "b"}
		cancel, wait := x.start(t, Params{Jobs: jobs, Mode: ModeSince, Since: epoch})
		synctest.Wait()
		write(30)
		synctest.Wait()
		cancel(ErrShutdown)
		wait()
		frames, _ := x.conn.got()
		var mid string
		n := 0
		for _, f := range frames {
			if f.Type == wire.TypeEntries {
				n += len(f.Entries)
				if n >= 200 {
					mid = f.Cursor
					break
				}
			}
		}
		first, _, _ := entriesOf(frames)
		if mid == "" || len(first) <= n {
			t.Fatalf("no frame to resume from in the middle: %d entries", len(first))
		}

		write(40) // while the client is away
		c, err := ParseCursor(mid)
		if err != nil {
			t.Fatal(err)
		}
		x.conn = &fakeConn{}
		cancel, wait = x.start(t, Params{Jobs: jobs, Mode: ModeCursor, Cursor: c})
		synctest.Wait()
		write(9) // live again
		synctest.Wait()
		cancel(ErrShutdown)
		wait()
		frames, _ = x.conn.got()
		rest, _, drops := entriesOf(frames)
		if len(drops) > 0 {
			t.Fatalf("drops %+v", drops)
		}
		got := placesOf(t, x.hist.logs, append(first[:n:n], rest...))
		want := linesOf(x.hist.logs, jobs, nil)
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("resumed from %q: %d entries over the two sessions, want %d: got %v, want %v", mid, len(got), len(want), got, want)
		}
	})
}

// fakeArchive holds the search index: every line of logs.
type fakeArchive struct {
	logs [][]*hub.Entry

	mu    sync.Mutex
	calls []string // "p:from-to"
}

func (a *fakeArchive) Range(_ context.Context, jobs []string, p int32, from, to int64, since time.Time, limit int, first bool) ([]*hub.Entry, error) {
	a.mu.Lock()
	a.calls = append(a.calls, fmt.Sprintf("%d:%d-%d", p, from, to))
	a.mu.Unlock()
	var out []*hub.Entry
	for _, e := range a.logs[p] {
		if e.Offset >= from && e.Offset < to && slices.Contains(jobs, e.Job) && (since.IsZero() || e.TS >= since.UnixNano()) {
			out = append(out, e)
		}
	}
	if len(out) > limit {
		if first {
			out = out[:limit]
		} else {
			out = out[len(out)-limit:]
		}
	}
	return out, nil
}

// since= and a cursor that reach below the oldest offset Kafka retains:
// with an archive, the older lines come from it (and only those below the
// boundary are asked of it), then Kafka's, joined exactly: every line of
// the jobs from since on, once, merged by time. Without one, history
// starts at Kafka's oldest record, and hello says where that is.
func TestSessionArchiveBoundary(t *testing.T) {
	since := epoch.Add(50 * time.Millisecond)
	for name, tt := range map[string]struct {
		archive bool
		p       Params
		keep    func(*hub.Entry) bool
	}{
		"since with archive": {archive: true, p: Params{Mode: ModeSince, Since: since},
			keep: func(e *hub.Entry) bool { return e.TS >= since.UnixNano() }},
		"cursor with archive": {archive: true, p: Params{Mode: ModeCursor, Cursor: []Position{{0, 59}, {1, 79}}},
			keep: func(e *hub.Entry) bool { return e.Partition == 0 && e.Offset > 59 || e.Partition == 1 && e.Offset > 79 }},
		"since without archive": {p: Params{Mode: ModeSince, Since: since},
			keep: func(e *hub.Entry) bool {
				return e.Partition == 0 && e.Offset >= 100 || e.Partition == 1 && e.Offset >= 150
			}},
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p0, p1 := twoPartitions(300, 300)
				x := newHarness(opts{PingInterval: time.Hour, BatchSize: 7}, p0, p1)
				x.hist.cands = []int32{0, 1}
				x.hist.oldest = []int64{100, 150} // retention deleted what came before
				x.h.SetNext(0, 300)
				x.h.SetNext(1, 300)
				var arch *fakeArchive
				if tt.archive {
					arch = &fakeArchive{logs: x.hist.logs}
					x.e.Archive = arch
				}
				p := tt.p
				p.Jobs = []string{"a", "b"}
				cancel, wait := x.start(t, p)
				synctest.Wait()
				cancel(ErrShutdown)
				wait()
				frames, _ := x.conn.got()
				hello := frames[0]
				wantFrom := time.Unix(0, p0[100].TS).UTC().Format("2006-01-02T15:04:05.000000Z")
				if hello.Archive != tt.archive || hello.HistoryFrom != wantFrom {
					t.Errorf("hello archive %v, history_from %q; want %v, %q", hello.Archive, hello.HistoryFrom, tt.archive, wantFrom)
				}
				got, _, drops := entriesOf(frames)
				want := linesOf(x.hist.logs, p.Jobs, tt.keep)
				if g := placesOf(t, x.hist.logs, got); !slices.Equal(g, want) {
					t.Fatalf("entries at %v, want %v", g, want)
				}
				if tt.archive {
					if len(drops) > 0 {
						t.Fatalf("drops %+v", drops)
					}
					for _, c := range arch.calls {
						var p int32
						var from, to int64
						fmt.Sscanf(c, "%d:%d-%d", &p, &from, &to)
						if to > x.hist.oldest[p] {
							t.Errorf("archive asked for %s, above Kafka's oldest offset %d", c, x.hist.oldest[p])
						}
					}
				}
			})
		})
	}
}

// since= far past Kafka's retention reads at most a share of the archive
// lines a session may read per partition, the newest below the boundary,
// and announces the older ones with a dropped frame that covers them
// exactly, so that the stream has no silent gap.
func TestSessionArchiveBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p0, p1 := twoPartitions(300, 300)
		x := newHarness(opts{PingInterval: time.Hour, MaxScan: 60}, p0, p1)
		x.hist.cands = []int32{0, 1}
		x.hist.oldest = []int64{290, 290}
		x.h.SetNext(0, 300)
		x.h.SetNext(1, 300)
		x.e.Archive = &fakeArchive{logs: x.hist.logs}
		jobs := []string{"a", "b"}
		cancel, wait := x.start(t, Params{Jobs: jobs, Mode: ModeSince, Since: epoch})
		synctest.Wait()
		cancel(ErrShutdown)
		wait()
		frames, _ := x.conn.got()
		got, _, drops := entriesOf(frames)
		// 30 lines of the archive per partition (60 shared by two), then Kafka's.
		firstKept := map[int32]int64{}
		for p, log := range x.hist.logs {
			var below []*hub.Entry
			for _, e := range log[:290] {
				if slices.Contains(jobs, e.Job) {
					below = append(below, e)
				}
			}
			firstKept[int32(p)] = below[len(below)-30].Offset
			i := slices.IndexFunc(drops, func(f wire.Frame) bool { return f.Partition != nil && *f.Partition == int32(p) })
			if i < 0 {
				t.Fatalf("no dropped frame for partition %d: %+v", p, drops)
			}
			d := drops[i]
			if *d.FromOffset != below[0].Offset || *d.ToOffset != firstKept[int32(p)]-1 {
				t.Errorf("partition %d: dropped %d..%d, want %d..%d", p, *d.FromOffset, *d.ToOffset, below[0].Offset, firstKept[int32(p)]-1)
			}
		}
		want := linesOf(x.hist.logs, jobs, func(e *hub.Entry) bool { return e.Offset >= firstKept[e.Partition] })
		if g := placesOf(t, x.hist.logs, got); !slices.Equal(g, want) || len(drops) != 2 {
			t.Fatalf("entries at %v (%d drops), want %v", g, len(drops), want)
		}
	})
}
