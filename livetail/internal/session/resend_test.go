package session

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/logpipe/logpipe/common/record"
	"github.com/logpipe/logpipe/livetail/internal/hub"
	"github.com/logpipe/logpipe/livetail/internal/wire"
)

// file is a source file of the agent, as its records name it.
type file struct{ agent, dev, inode, fp string }

var (
	fileA       = file{"node-a", "2049", "1001", "aaaaaaaaaaaaaaaa"}
	fileATrunc  = file{"node-a", "2049", "1001", "bbbbbbbbbbbbbbbb"} // fileA truncated and written again (copytruncate)
	fileB       = file{"node-a", "2049", "1002", "aaaaaaaaaaaaaaaa"} // another inode
	fileAOnC    = file{"node-c", "2049", "1001", "aaaaaaaaaaaaaaaa"} // the same identity read by another agent
	otherSource = file{}                                             // a producer other than the agent: no source position
)

// rec is one Kafka record of job a: the line at offset pos of f.
type rec struct {
	f   file
	pos int64
}

// records turns recs into the entries of partition p at offsets from, from+1, …
// one a millisecond, through hub.NewEntry as livetail's consumers do.
func records(t testing.TB, p int32, from int64, recs ...rec) []*hub.Entry {
	t.Helper()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	out := make([]*hub.Entry, len(recs))
	for i, r := range recs {
		off := from + int64(i)
		ts := base.Add(time.Duration(off) * time.Millisecond)
		v := record.Record{Timestamp: ts, Message: fmt.Sprintf("%s line at %d", r.f.inode, r.pos), Job: "a",
			Host: record.Host{Name: r.f.agent}, Agent: record.Agent{Name: r.f.agent},
			Log: record.Log{File: record.File{Path: "/var/log/a.log", DeviceID: r.f.dev, Inode: r.f.inode, Fingerprint: r.f.fp}, Offset: r.pos}}
		e, ok := hub.NewEntry(p, off, []byte("a"), v.AppendJSON(nil), ts)
		if !ok {
			t.Fatalf("record %+v does not decode", r)
		}
		out[i] = e
	}
	return out
}

// span returns the records of f at positions from, from+step, … below to.
func span(f file, from, to, step int64) []rec {
	var out []rec
	for pos := from; pos < to; pos += step {
		out = append(out, rec{f, pos})
	}
	return out
}

func offsetsOf(got []wire.EntryJSON) []int64 {
	out := make([]int64, len(got))
	for i, e := range got {
		out[i] = e.Offset
	}
	return out
}

func seq(from, to int64) []int64 {
	var out []int64
	for o := from; o < to; o++ {
		out = append(out, o)
	}
	return out
}

// Live: the agent sends lines 0…9 of a file, is killed, and sends 5…9
// again before 10…12. The client gets each line once, no dropped frame,
// and the cursor moves past the resends.
func TestSessionSkipsResends(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newHarness(opts{PingInterval: time.Hour})
		cancel, wait := x.start(t, Params{Jobs: []string{"a"}})
		synctest.Wait()
		recs := append(span(fileA, 0, 100, 10), span(fileA, 50, 130, 10)...) // offsets 0…9, then 5…12
		live := records(t, 0, 0, recs...)
		for i := range live { // one record at a time, so resends and new lines share frames and not
			x.h.Publish(0, live[i:i+1], int64(i)+1)
			if i%3 == 0 {
				time.Sleep(time.Second)
			}
		}
		time.Sleep(time.Second)
		synctest.Wait()
		cancel(ErrShutdown)
		wait()
		got, cursor, drops := entriesOf(framesOf(x.conn.got()))
		if want := append(seq(0, 10), 15, 16, 17); !slices.Equal(offsetsOf(got), want) {
			t.Errorf("offsets %v, want %v", offsetsOf(got), want)
		}
		for i, e := range got {
			if e.Src != hub.SourceString(hub.SourceID(recordOf(fileA))) || e.Pos == nil || *e.Pos != int64(i)*10 {
				t.Fatalf("entry %d: src %q pos %v, want fileA's id and %d", i, e.Src, e.Pos, i*10)
			}
		}
		if len(drops) != 0 {
			t.Errorf("dropped frames %+v for resends", drops)
		}
		if cursor != "0:17" {
			t.Errorf("cursor %q, want 0:17", cursor)
		}
		if n := testutil.ToFloat64(x.e.Resent); n != 5 {
			t.Errorf("livetail_resent_lines_skipped_total %v, want 5", n)
		}
	})
}

// History and live meet: since= reads lines 0…9 and a resend of 5…7 from
// Kafka, the resend goes on live (8, 9) before new lines (10, 11). Each
// line once, whichever way its first copy came; the same for a cursor
// session that starts in the middle of the first copies.
func TestSessionResendsAcrossHistoryAndLive(t *testing.T) {
	hist := records(t, 0, 0, append(span(fileA, 0, 10, 1), span(fileA, 5, 8, 1)...)...) // offsets 0…12
	for _, tc := range []struct {
		name   string
		params Params
		want   []int64 // Kafka offsets
	}{
		{"since", Params{Jobs: []string{"a"}, Mode: ModeSince, Since: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)}, append(seq(0, 10), 15, 16)},
		// The cursor is at line 6: 7…9 come from history; the resend
		// of 5…7 is at or below the highest line sent, 9, and skipped
		// (the client had 5 and 6 before the cursor), as are 8 and 9
		// sent again live.
		{"cursor", Params{Jobs: []string{"a"}, Mode: ModeCursor, Cursor: []Position{{Partition: 0, Offset: 6}}}, []int64{7, 8, 9, 15, 16}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				x := newHarness(opts{PingInterval: time.Hour}, hist)
				x.h.SetNext(0, int64(len(hist)))
				cancel, wait := x.start(t, tc.params)
				synctest.Wait()
				x.h.Publish(0, records(t, 0, 13, rec{fileA, 8}, rec{fileA, 9}, rec{fileA, 10}, rec{fileA, 11}), 17)
				time.Sleep(time.Second)
				synctest.Wait()
				cancel(ErrShutdown)
				wait()
				frames, _ := x.conn.got()
				got, cursor, drops := entriesOf(frames)
				if !slices.Equal(offsetsOf(got), tc.want) {
					t.Errorf("offsets %v, want %v", offsetsOf(got), tc.want)
				}
				if len(drops) != 0 || cursor != "0:16" {
					t.Errorf("drops %+v, cursor %q; want none and 0:16", drops, cursor)
				}
				if !slices.ContainsFunc(frames, func(f wire.Frame) bool { return f.Type == wire.TypeCaughtUp }) {
					t.Error("no caught_up")
				}
			})
		})
	}
}

// What is a source: another fingerprint (the file truncated and written
// again), another inode, another agent are other sources, whose lines at
// the same offsets are sent; records without a source position (other
// producers) are never skipped, however alike.
func TestSessionSources(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newHarness(opts{PingInterval: time.Hour})
		cancel, wait := x.start(t, Params{Jobs: []string{"a"}})
		synctest.Wait()
		var recs []rec
		for _, f := range []file{fileA, fileATrunc, fileB, fileAOnC, otherSource} {
			recs = append(recs, span(f, 0, 3, 1)...)
		}
		recs = append(recs, span(otherSource, 0, 3, 1)...)                                      // the same again
		recs = append(recs, rec{fileA, 2}, rec{fileATrunc, 1}, rec{fileB, 0}, rec{fileAOnC, 2}) // resends
		x.h.Publish(0, records(t, 0, 0, recs...), int64(len(recs)))
		time.Sleep(time.Second)
		synctest.Wait()
		cancel(ErrShutdown)
		wait()
		got, _, _ := entriesOf(framesOf(x.conn.got()))
		if want := seq(0, 18); !slices.Equal(offsetsOf(got), want) {
			t.Errorf("offsets %v, want %v", offsetsOf(got), want)
		}
		ids := map[string]bool{}
		for _, e := range got[:12] {
			ids[e.Src] = true
		}
		if len(ids) != 4 {
			t.Errorf("%d source ids for four sources: %v", len(ids), ids)
		}
		for _, e := range got[12:] {
			if e.Src != "" || e.Pos != nil {
				t.Errorf("entry at %d without a source position has src %q pos %v", e.Offset, e.Src, e.Pos)
			}
		}
		if n := testutil.ToFloat64(x.e.Resent); n != 4 {
			t.Errorf("livetail_resent_lines_skipped_total %v, want 4", n)
		}
	})
}

// The memory is bounded: at most maxSources sources, in two generations;
// the least recently seen are forgotten first.
func TestSourcesBound(t *testing.T) {
	var s sources
	for src := uint64(1); src <= maxSources; src++ {
		if s.resent(src, 10) {
			t.Fatalf("source %d new, but taken for a resend", src)
		}
	}
	if s.len() != maxSources {
		t.Fatalf("%d sources remembered, want %d", s.len(), maxSources)
	}
	// Source 1, of the older generation, seen again: it moves to the
	// newer one, which is full, so the newer becomes the older and the
	// rest of the older (2…maxSources/2) is forgotten.
	if !s.resent(1, 10) {
		t.Fatal("source 1's resend not skipped")
	}
	if s.len() != maxSources/2+1 {
		t.Fatalf("%d sources remembered, want %d", s.len(), maxSources/2+1)
	}
	for _, c := range []struct {
		src  uint64
		pos  int64
		want bool
	}{
		{2, 10, false}, {maxSources / 2, 10, false}, // forgotten: taken for new lines
		{maxSources/2 + 1, 10, true}, {maxSources, 9, true}, {1, 10, true}, // remembered
		{maxSources, 11, false}, {maxSources, 11, true}, // a line past the highest, then its resend
	} {
		if got := s.resent(c.src, c.pos); got != c.want {
			t.Errorf("source %d at %d: resent = %v, want %v", c.src, c.pos, got, c.want)
		}
	}
	for i := range 100 * maxSources {
		s.resent(uint64(i*7919%(3*maxSources)), int64(i))
		if s.len() > maxSources {
			t.Fatalf("%d sources remembered, more than %d", s.len(), maxSources)
		}
	}
}

func recordOf(f file) *record.Record {
	return &record.Record{Agent: record.Agent{Name: f.agent}, Log: record.Log{File: record.File{DeviceID: f.dev, Inode: f.inode, Fingerprint: f.fp}}}
}

func framesOf(frames []wire.Frame, _ []time.Time) []wire.Frame { return frames }

// discardConn takes frames and pongs and keeps nothing.
type discardConn struct{}

func (discardConn) Write([]byte) error         { return nil }
func (discardConn) Ping(context.Context) error { return nil }

// BenchmarkSendEntries measures a session's hot path: 256 live lines of
// one agent file into one frame, with the check for resends.
func BenchmarkSendEntries(b *testing.B) {
	x := newHarness(opts{})
	s := x.e.New(discardConn{}, Params{Jobs: []string{"a"}}, 0, []int32{0}, nil, nil, func(error) {})
	s.ping = time.NewTicker(time.Hour)
	defer s.ping.Stop()
	batch := records(b, 0, 0, span(fileA, 0, 256, 1)...)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		for j, e := range batch { // the next 256 lines
			e.Offset, e.Pos = int64(i*256+j), int64(i*256+j)
		}
		if err := s.sendEntries(batch); err != nil {
			b.Fatal(err)
		}
	}
}
