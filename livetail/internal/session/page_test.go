package session

import (
	"errors"
	"regexp"
	"slices"
	"testing"

	"github.com/logpipe/logpipe/livetail/internal/hub"
)

// "Load earlier", page after page from the stream's first position down to
// where nothing is older: every line of the jobs (that grep keeps) once,
// in time order across the pages, Kafka's and, below its oldest offsets,
// the archive's, joined at the boundary; the last page says why it is the
// last. A small MaxScan cuts pages short without losing a line.
func TestEarlierPages(t *testing.T) {
	for name, tt := range map[string]struct {
		archive bool
		before  []Position
		grep    string
		maxScan int64
		keep    func(*hub.Entry) bool
		stop    string
	}{
		"archive": {archive: true, before: []Position{{0, 300}, {1, 300}}, stop: StopStart},
		"archive from the middle": {archive: true, before: []Position{{0, 200}, {1, 120}}, stop: StopStart,
			keep: func(e *hub.Entry) bool {
				return e.Partition == 0 && e.Offset < 200 || e.Partition == 1 && e.Offset < 120
			}},
		"archive grep": {archive: true, before: []Position{{0, 300}, {1, 300}}, grep: "^a$", stop: StopStart,
			keep: func(e *hub.Entry) bool { return e.Job == "a" }},
		"archive small scans": {archive: true, before: []Position{{0, 300}, {1, 300}}, maxScan: 50, stop: StopStart},
		"no archive": {before: []Position{{0, 300}, {1, 300}}, stop: StopRetention,
			keep: func(e *hub.Entry) bool { return e.Offset >= []int64{100, 150}[e.Partition] }},
		"one partition": {archive: true, before: []Position{{1, 300}}, stop: StopStart,
			keep: func(e *hub.Entry) bool { return e.Partition == 1 }},
	} {
		t.Run(name, func(t *testing.T) {
			p0, p1 := twoPartitions(300, 300)
			x := newHarness(opts{MaxScan: tt.maxScan}, p0, p1)
			x.hist.oldest = []int64{100, 150}
			if tt.archive {
				x.e.Archive = &fakeArchive{logs: x.hist.logs}
			}
			p := EarlierParams{Jobs: []string{"a", "b"}, Before: tt.before, Limit: 37}
			if tt.grep != "" {
				p.Grep = regexp.MustCompile(tt.grep)
			}
			var got []*hub.Entry
			for pages := 0; ; pages++ {
				if pages > 200 {
					t.Fatalf("still more after %d pages (%d lines)", pages, len(got))
				}
				page, err := x.e.Earlier(t.Context(), p)
				if err != nil {
					t.Fatal(err)
				}
				if len(page.Entries) > p.Limit {
					t.Fatalf("page of %d lines, limit %d", len(page.Entries), p.Limit)
				}
				got = append(slices.Clone(page.Entries), got...)
				if !page.More {
					if page.Stop != tt.stop {
						t.Fatalf("last page stops at %q, want %q", page.Stop, tt.stop)
					}
					break
				}
				if page.Stop != "" {
					t.Fatalf("page with more says stop %q", page.Stop)
				}
				p.Before = page.Before
			}
			places := make([]string, len(got))
			for i, e := range got {
				places[i] = at(e.Partition, e.Offset)
			}
			want := linesOf(x.hist.logs, p.Jobs, tt.keep)
			if !slices.Equal(places, want) {
				t.Fatalf("pages hold %d lines %v,\nwant %d %v", len(places), places, len(want), want)
			}
		})
	}
}

// A page before a partition the topic does not have is a bad parameter.
func TestEarlierUnknownPartition(t *testing.T) {
	x := newHarness(opts{}, newLog(10, "a"))
	_, err := x.e.Earlier(t.Context(), EarlierParams{Jobs: []string{"a"}, Before: []Position{{3, 5}}, Limit: 10})
	var pe *ParamError
	if !errors.As(err, &pe) || pe.Param != "before" {
		t.Fatalf("error %v, want a ParamError naming before", err)
	}
}
