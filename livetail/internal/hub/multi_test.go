package hub

import (
	"fmt"
	"slices"
	"testing"
)

// A subscription of several jobs gets the entries of each of them, in
// each partition's offset order, and none of the other jobs on the same
// partitions; closing it leaves nothing registered under any of its jobs.
func TestSubscribeSeveralJobs(t *testing.T) {
	h := New(2, Options{})
	s, _, err := h.Subscribe([]string{"a", "b"}, []int32{0, 1}, 100)
	if err != nil {
		t.Fatal(err)
	}
	if st := s.Settle(false); st.Step != StepDone {
		t.Fatalf("settle: %+v", st)
	}
	h.Publish(0, []*Entry{entryOn(0, "a", 0), entryOn(0, "c", 1), entryOn(0, "b", 2), entryOn(0, "a", 3)}, 4)
	h.Publish(1, []*Entry{entryOn(1, "c", 0), entryOn(1, "b", 1)}, 2)
	items, err := s.Take(nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, it := range items {
		got = append(got, fmt.Sprintf("%s@%d:%d", it.Entry.Job, it.Entry.Partition, it.Entry.Offset))
	}
	if want := []string{"a@0:0", "b@0:2", "a@0:3", "b@1:1"}; !slices.Equal(got, want) {
		t.Fatalf("queued %v, want %v", got, want)
	}
	s.Close()
	for _, pt := range h.parts {
		if len(pt.subs) != 0 {
			t.Fatalf("partition %d still has subscribers %v after Close", pt.id, pt.subs)
		}
	}
}
