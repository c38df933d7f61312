package session

import (
	"slices"
	"testing"

	"github.com/logpipe/logpipe/livetail/internal/hub"
)

// Placement comes first: a job the jobs catalogue places is read (and
// consumed) on its placed partitions, the hub's sightings and the cursor's
// partitions, never on the partitioners' other candidates; a job it does
// not know falls back to the candidates. home is a partition the session
// reads, and a bare cursor is of the job's one known partition.
func TestPartitionsPlacement(t *testing.T) {
	const job = "a"
	for name, tt := range map[string]struct {
		placed   []int32 // what the hook says; nil: no hook
		seen     []int32 // partitions where the hub saw the job
		cursor   []Position
		home     int32
		deps     []int32
		cursorTo []int32 // the cursor's partitions once resolved
	}{
		"unknown to the catalogue: the candidates": {
			home: 0, deps: []int32{0, 2, 4},
		},
		"the catalogue gives nothing: the candidates": {
			placed: []int32{}, home: 0, deps: []int32{0, 2, 4},
		},
		"unknown, seen elsewhere: the candidates and the sighting": {
			seen: []int32{5}, home: 0, deps: []int32{0, 2, 4, 5},
		},
		"placed on the home partition": {
			placed: []int32{0}, home: 0, deps: []int32{0},
		},
		"placed on a candidate that is not home": {
			placed: []int32{2}, home: 2, deps: []int32{2},
		},
		"placed on no candidate (keyless lines)": {
			placed: []int32{5, 3}, home: 5, deps: []int32{3, 5},
		},
		"placed, and seen on home": {
			placed: []int32{3}, seen: []int32{0}, home: 0, deps: []int32{0, 3},
		},
		"placed beyond the topic: ignored": {
			placed: []int32{3, 9, -2}, home: 3, deps: []int32{3},
		},
		"placed only beyond the topic: the candidates": {
			placed: []int32{9}, home: 0, deps: []int32{0, 2, 4},
		},
		"the cursor's partitions are read too": {
			placed: []int32{3}, cursor: []Position{{1, 7}, {3, 9}}, home: 3, deps: []int32{1, 3}, cursorTo: []int32{1, 3},
		},
		"a bare cursor is of the one placed partition": {
			placed: []int32{3}, cursor: []Position{{HomePartition, 7}}, home: 3, deps: []int32{3}, cursorTo: []int32{3},
		},
		"a bare cursor of a job on two partitions is of home": {
			placed: []int32{3, 5}, cursor: []Position{{HomePartition, 7}}, home: 3, deps: []int32{3, 5}, cursorTo: []int32{3},
		},
		"a bare cursor of a job seen on one partition is of it": {
			seen: []int32{5}, cursor: []Position{{HomePartition, 7}}, home: 0, deps: []int32{0, 2, 4, 5}, cursorTo: []int32{5},
		},
	} {
		t.Run(name, func(t *testing.T) {
			x := newHarness(opts{}, make([][]*hub.Entry, 6)...)
			x.hist.home, x.hist.cands = 0, []int32{0, 2, 4}
			for _, p := range tt.seen {
				x.h.Publish(p, []*hub.Entry{{Partition: p, Offset: 0, Job: job}}, 1)
			}
			asked := 0
			if tt.placed != nil {
				x.e.Place = func(j string) []int32 {
					asked++
					if j != job {
						t.Errorf("placement asked for %q, want %q", j, job)
					}
					return tt.placed
				}
			}
			p := Params{Jobs: []string{job}, Mode: ModeCursor, Cursor: slices.Clone(tt.cursor)}
			home, deps, err := x.e.Partitions(t.Context(), &p)
			if err != nil {
				t.Fatal(err)
			}
			if tt.placed != nil && asked != 1 {
				t.Errorf("placement asked %d times, want once", asked)
			}
			if home != tt.home || !slices.Equal(deps, tt.deps) {
				t.Fatalf("home %d, deps %v; want home %d, deps %v", home, deps, tt.home, tt.deps)
			}
			var to []int32
			for _, c := range p.Cursor {
				to = append(to, c.Partition)
			}
			if !slices.Equal(to, tt.cursorTo) {
				t.Fatalf("cursor on partitions %v, want %v", to, tt.cursorTo)
			}
		})
	}
}
