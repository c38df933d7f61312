package main

import (
	"slices"
	"testing"
)

// Lines produced for job A reach A's subscribers in offset order and never
// B's; grep filters on the server.
func TestLiveByJob(t *testing.T) {
	s := newKafka(t)
	ts := startServer(t, testConfig(s))
	p := newProducer(t, s)

	a := mustDial(t, ts.url(query("job", "job-a")))
	b := mustDial(t, ts.url(query("job", "job-b")))
	g := mustDial(t, ts.url(query("job", "job-a", "grep", `line \d*7$`)))
	for _, c := range []*client{a, b, g} {
		if f := c.mustNext(); f.Type != "hello" {
			t.Fatalf("first frame %+v, want hello", f)
		}
		if f := c.mustNext(); f.Type != "caught_up" {
			t.Fatalf("second frame %+v, want caught_up", f)
		}
	}
	for i := 0; i < 100; i += 10 {
		p.produce(t, "job-a", i, 10)
		p.produce(t, "job-b", i, 10)
	}

	gotA := a.collect(100, within)
	gotB := b.collect(100, within)
	gotG := g.collect(10, within)
	if want := p.offsets("job-a"); !slices.Equal(gotA.offsets, want) {
		t.Errorf("job-a got offsets %v, want %v", gotA.offsets, want)
	}
	if want := p.offsets("job-b"); !slices.Equal(gotB.offsets, want) {
		t.Errorf("job-b got offsets %v, want %v", gotB.offsets, want)
	}
	for i, l := range gotA.lines {
		if l != line("job-a", i) {
			t.Fatalf("job-a line %d = %q", i, l)
		}
	}
	for _, l := range gotG.lines {
		if !slices.Contains([]string{"job-a line 7", "job-a line 17", "job-a line 27", "job-a line 37", "job-a line 47", "job-a line 57", "job-a line 67", "job-a line 77", "job-a line 87", "job-a line 97"}, l) {
			t.Errorf("grep client got %q", l)
		}
	}
	if len(gotG.lines) != 10 {
		t.Errorf("grep client got %d lines, want 10", len(gotG.lines))
	}
}
