package hub

import (
	"slices"
	"testing"
)

// A subscriber is woken once per Publish call that queued entries for it,
// after the call queued all of them, so that its session takes the whole
// batch at once; a call with nothing for it does not wake it.
func TestWakeOncePerPublish(t *testing.T) {
	h := New(2, Options{})
	a := live(t, h, 0, "a", 100)
	var wakes []int // queue length at each wake
	a.OnWake(func() { wakes = append(wakes, a.Len()) })

	h.Publish(0, []*Entry{entry("a", 0), entry("b", 1), entry("a", 2), entry("a", 3)}, 4)
	h.Publish(0, entries("b", 4, 5), 6)
	h.Publish(1, entriesOn(1, "a", 0, 1), 2)
	if !slices.Equal(wakes, []int{3, 5}) {
		t.Fatalf("woken with %v queued, want once with 3 and once with 5", wakes)
	}
	// A full queue drops and announces, without a wake of its own.
	small := live(t, h, 0, "c", 1)
	n := 0
	small.OnWake(func() { n++ })
	h.Publish(0, entries("c", 6, 7, 8), 9)
	if n != 1 {
		t.Fatalf("woken %d times, want 1", n)
	}
}

// An entry is decoded and encoded once, however many subscribers get it:
// every subscriber receives the same entry, byte for byte.
func TestEntrySharedBySubscribers(t *testing.T) {
	h := New(1, Options{})
	subs := []*Sub{live(t, h, 0, "web", 10), live(t, h, 0, "web", 10), live(t, h, 0, "web", 10)}
	value := []byte(`{"@timestamp":"2026-11-21T10:00:00.123456Z","message":"GET / 200","job":"web","host":{"name":"a"},"log":{"file":{"path":"/l"},"offset":1}}`)
	e, _ := NewEntry(0, 0, []byte("web"), value, h.jobs.now())
	h.Publish(0, []*Entry{e}, 1)
	for i, s := range subs {
		items, _ := s.Take(nil)
		if len(items) != 1 || items[0].Entry != e || string(items[0].Entry.JSON) != string(e.JSON) {
			t.Fatalf("subscriber %d got %+v, want the published entry itself", i, items)
		}
	}
}
