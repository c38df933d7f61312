package archive

import (
	"context"
	"testing"
	"time"
)

// TestRange: a partition's records by Kafka offset, as the session engine
// asks for them past Kafka's retention: the jobs asked for only, of the
// partition and topic only, in offset order, the first or the last ones,
// paged past the engine's page size, at or after since to the
// microsecond, and the same bytes as Kafka's entries.
func TestRange(t *testing.T) {
	ix, a := newIndex(t)
	// Partition 2 holds 2,600 records: job a at even offsets (one source
	// file, 100 bytes a line), b at odd ones. Partition 3 and another
	// topic hold records of a at the same offsets: never returned.
	var p2, all []doc
	for o := int64(0); o < 2600; o++ {
		job := "a"
		if o%2 == 1 {
			job = "b"
		}
		d := doc{topic: "logs", partition: 2, offset: o, key: job, value: agentRecord(job, "00000000000000a1", o/2*100, o)}
		p2 = append(p2, d)
	}
	all = append(all, p2...)
	for o := int64(0); o < 20; o++ {
		all = append(all,
			doc{topic: "logs", partition: 3, offset: o, key: "a", value: agentRecord("a", "00000000000000a3", o*100, o)},
			doc{topic: "other", partition: 2, offset: o, key: "a", value: agentRecord("a", "00000000000000a1", o*100, o)})
	}
	ix.add(all...)
	of := func(job string, from, to int64) []doc {
		var out []doc
		for _, d := range p2 {
			if d.offset >= from && d.offset < to && (job == "" || d.key == job) {
				out = append(out, d)
			}
		}
		return out
	}
	ctx := context.Background()

	// 1,100 entries: two pages and a bit.
	got, err := a.Range(ctx, []string{"a"}, 2, 100, 2300, time.Time{}, 5000, true)
	if err != nil {
		t.Fatal(err)
	}
	checkEntries(t, "job a, 100 to 2300", got, of("a", 100, 2300))

	got, err = a.Range(ctx, []string{"a", "b"}, 2, 0, 2600, time.Time{}, 10, false)
	if err != nil {
		t.Fatal(err)
	}
	checkEntries(t, "the last 10 of a and b", got, of("", 2590, 2600))

	got, err = a.Range(ctx, []string{"b", "a"}, 2, 0, 2600, time.Time{}, 1500, true)
	if err != nil {
		t.Fatal(err)
	}
	checkEntries(t, "the first 1,500 of a and b", got, of("", 0, 1500))

	// since falls 200µs into record 1000's millisecond, after it: the
	// first record at or after since is b's 1001.
	since := tsOf(1000).Add(200 * time.Microsecond)
	got, err = a.Range(ctx, []string{"a", "b"}, 2, 0, 2600, since, 3, true)
	if err != nil {
		t.Fatal(err)
	}
	checkEntries(t, "since", got, of("", 1001, 1004))
	got, err = a.Range(ctx, []string{"a"}, 2, 0, 1003, tsOf(1000), 5, false)
	if err != nil {
		t.Fatal(err)
	}
	checkEntries(t, "since its exact time", got, of("a", 1000, 1003))

	for name, r := range map[string]struct {
		jobs     []string
		from, to int64
		limit    int
	}{
		"no such job":     {[]string{"c"}, 0, 2600, 10},
		"empty range":     {[]string{"a"}, 500, 500, 10},
		"limit 0":         {[]string{"a"}, 0, 2600, 0},
		"past the end":    {[]string{"a"}, 2600, 9000, 10},
		"no job asked":    {nil, 0, 2600, 10},
		"other partition": {[]string{"b"}, 0, 20, 10}, // b is on 2 only; asked on 3 below
	} {
		p := int32(2)
		if name == "other partition" {
			p = 3
		}
		got, err := a.Range(ctx, r.jobs, p, r.from, r.to, time.Time{}, r.limit, true)
		if err != nil || len(got) != 0 {
			t.Errorf("%s: %d entries, %v; want none", name, len(got), err)
		}
	}
}

// TestRangeWithoutIndex: before transfer wrote anything, the archive is
// empty, not failing.
func TestRangeWithoutIndex(t *testing.T) {
	_, a := newIndex(t) // the template, but no data stream yet
	got, err := a.Range(context.Background(), []string{"a"}, 0, 0, 100, time.Time{}, 10, true)
	if err != nil || len(got) != 0 {
		t.Fatalf("Range of a missing index: %d entries, %v; want none and no error", len(got), err)
	}
	if err := a.Health(context.Background()); err != nil {
		t.Fatalf("Health after a search of a missing index: %v", err)
	}
}
