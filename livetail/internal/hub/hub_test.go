package hub

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/logpipe/logpipe/common/record"
)

func entry(job string, off int64) *Entry { return entryOn(0, job, off) }

func entryOn(p int32, job string, off int64) *Entry {
	return &Entry{Partition: p, Offset: off, Job: job, Line: job + " line", JSON: []byte(`{}`)}
}

// entries returns entries of job at the given offsets of partition 0.
func entries(job string, offs ...int64) []*Entry { return entriesOn(0, job, offs...) }

// entriesOn returns entries of job at the given offsets of partition p.
func entriesOn(p int32, job string, offs ...int64) []*Entry {
	out := make([]*Entry, len(offs))
	for i, o := range offs {
		out[i] = entryOn(p, job, o)
	}
	return out
}

func offsets(items []Item) []int64 {
	var out []int64
	for _, it := range items {
		if it.Entry != nil {
			out = append(out, it.Entry.Offset)
		}
	}
	return out
}

// live subscribes (depending on partition p) and leaves catch-up mode at once.
func live(t *testing.T, h *Hub, p int32, job string, limit int) *Sub {
	t.Helper()
	s, _, err := h.Subscribe([]string{job}, []int32{p}, limit)
	if err != nil {
		t.Fatal(err)
	}
	if st := s.Settle(false); st.Step != StepDone {
		t.Fatalf("settle: %+v", st)
	}
	t.Cleanup(s.Close)
	return s
}

// A subscriber gets its job's entries from every partition, whichever
// partition it depends on, and no other job's.
func TestPublishRoutesByJob(t *testing.T) {
	h := New(2, Options{})
	a := live(t, h, 0, "a", 100)
	b := live(t, h, 0, "b", 100)
	other := live(t, h, 1, "a", 100) // its job's lines on partition 0 reach it too

	h.Publish(0, []*Entry{entry("a", 0), entry("b", 1), entry("a", 2), entry("c", 3)}, 4)
	h.Publish(1, entriesOn(1, "a", 7), 8)
	for name, tt := range map[string]struct {
		sub  *Sub
		want []int64
	}{
		"a": {a, []int64{0, 2, 7}}, "b": {b, []int64{1}}, "other partition": {other, []int64{0, 2, 7}},
	} {
		items, err := tt.sub.Take(nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := offsets(items); !slices.Equal(got, tt.want) {
			t.Errorf("%s: got %v, want %v", name, got, tt.want)
		}
	}
	if h.Next(0) != 4 {
		t.Errorf("next = %d, want 4", h.Next(0))
	}
}

// A full queue drops, never blocks, and the drop is announced in place with
// its count and offset range.
func TestDropAnnounced(t *testing.T) {
	pending := prometheus.NewGauge(prometheus.GaugeOpts{Name: "p"})
	dropped := prometheus.NewCounter(prometheus.CounterOpts{Name: "d"})
	h := New(1, Options{Pending: pending, Dropped: dropped})
	s := live(t, h, 0, "a", 3)

	h.Publish(0, entries("a", 10, 11, 12, 13, 14, 15), 16)
	if got := testutil.ToFloat64(pending); got != 3 {
		t.Fatalf("pending = %v, want 3", got)
	}
	if got := testutil.ToFloat64(dropped); got != 3 {
		t.Fatalf("dropped = %v, want 3", got)
	}
	// More arrive while the queue is still full: dropped too.
	h.Publish(0, entries("a", 20), 21)

	items, _ := s.Take(nil)
	if got := offsets(items); !slices.Equal(got, []int64{10, 11, 12}) {
		t.Fatalf("entries %v", got)
	}
	last := items[len(items)-1]
	if last.Entry != nil || last.Drop != (Drop{Partition: 0, Count: 4, From: 13, To: 20}) {
		t.Fatalf("last item %+v, want a drop of 4 from 13 to 20", last)
	}
	if got := testutil.ToFloat64(pending); got != 0 {
		t.Fatalf("pending = %v after Take, want 0", got)
	}

	// A drop while entries are queued comes after them and before the next.
	h.Publish(0, entries("a", 30, 31, 32, 33, 34), 35)
	h.Publish(0, entries("a", 40), 41) // still full
	items, _ = s.Take(items)
	if got := offsets(items); !slices.Equal(got, []int64{30, 31, 32}) || items[3].Drop != (Drop{Partition: 0, Count: 3, From: 33, To: 40}) {
		t.Fatalf("items %+v", items)
	}
	h.Publish(0, entries("a", 50), 51)
	items, _ = s.Take(items)
	if len(items) != 1 || items[0].Entry.Offset != 50 {
		t.Fatalf("items %+v, want just 50", items)
	}
}

// While catching up, an overflow is not dropped: Settle hands back the
// range to read from Kafka and queueing resumes after it.
func TestCatchUpGap(t *testing.T) {
	dropped := prometheus.NewCounter(prometheus.CounterOpts{Name: "d"})
	h := New(1, Options{Dropped: dropped})
	h.SetNext(0, 100)
	s, joins, err := h.Subscribe([]string{"a"}, []int32{0}, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !slices.Equal(joins, []int64{100}) {
		t.Fatalf("joins = %v", joins)
	}
	h.Publish(0, entries("a", 100, 101, 102, 103), 104) // 102 and 103 do not fit
	h.Publish(0, append(entries("b", 104), entries("a", 105)...), 106)

	if st := s.Settle(false); st.Step != StepDrain {
		t.Fatalf("settle with a queue before the gap: %+v", st)
	}
	items, _ := s.Take(nil)
	if got := offsets(items); !slices.Equal(got, []int64{100, 101}) {
		t.Fatalf("drained %v", got)
	}
	st := s.Settle(false)
	if st.Step != StepGap || !slices.Equal(st.Gaps, []Gap{{Partition: 0, From: 102, To: 106}}) {
		t.Fatalf("settle: %+v, want the gap [102, 106)", st)
	}
	h.Publish(0, entries("a", 106), 107)
	if st := s.Settle(false); st.Step != StepDone {
		t.Fatalf("settle: %+v, want done", st)
	}
	items, _ = s.Take(items)
	if got := offsets(items); !slices.Equal(got, []int64{106}) {
		t.Fatalf("after the gap: %v", got)
	}
	if testutil.ToFloat64(dropped) != 0 {
		t.Fatal("catching up dropped entries")
	}
	// Caught up: overflow now drops.
	h.Publish(0, entries("a", 107, 108, 109), 110)
	if testutil.ToFloat64(dropped) != 1 {
		t.Fatalf("dropped = %v, want 1", testutil.ToFloat64(dropped))
	}
}

// The final round of catching up turns a gap into normal dropping.
func TestCatchUpFinal(t *testing.T) {
	h := New(1, Options{})
	s, _, _ := h.Subscribe([]string{"a"}, []int32{0}, 1)
	defer s.Close()
	h.Publish(0, entries("a", 0, 1), 2)
	s.Take(nil)
	if st := s.Settle(true); st.Step != StepGap || !slices.Equal(st.Gaps, []Gap{{Partition: 0, From: 1, To: 2}}) {
		t.Fatalf("settle: %+v", st)
	}
	h.Publish(0, entries("a", 2, 3), 4)
	items, _ := s.Take(nil)
	if got := offsets(items); !slices.Equal(got, []int64{2}) || items[1].Drop != (Drop{Partition: 0, Count: 1, From: 3, To: 3}) {
		t.Fatalf("items %+v", items)
	}
}

func TestFailAndRecover(t *testing.T) {
	h := New(2, Options{})
	s := live(t, h, 1, "a", 10)
	other := live(t, h, 0, "a", 10)
	h.Publish(1, entries("a", 0), 1)
	cause := errors.New("broker gone")
	h.Fail(1, cause)
	select {
	case <-s.Notify():
	default:
		t.Fatal("no notification on failure")
	}
	items, err := s.Take(nil)
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, cause) || len(items) != 1 {
		t.Fatalf("take after fail: %v, %v", items, err)
	}
	if _, err := other.Take(nil); err != nil {
		t.Fatalf("partition 0 failed too: %v", err)
	}
	if _, _, err := h.Subscribe([]string{"a"}, []int32{0, 1}, 1); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("subscribe to a down partition: %v", err)
	}
	if got := h.Down(); !slices.Equal(got, []int32{1}) {
		t.Fatalf("down = %v", got)
	}
	h.Recover(1)
	if s, _, err := h.Subscribe([]string{"a"}, []int32{1}, 1); err != nil {
		t.Fatalf("subscribe after recover: %v", err)
	} else {
		s.Close()
	}
	if len(h.Down()) != 0 {
		t.Fatal("still down")
	}
}

func TestCloseReleasesQueue(t *testing.T) {
	pending := prometheus.NewGauge(prometheus.GaugeOpts{Name: "p"})
	h := New(1, Options{Pending: pending})
	s, _, _ := h.Subscribe([]string{"a"}, []int32{0}, 10)
	h.Publish(0, entries("a", 0, 1, 2), 3)
	s.Close()
	if got := testutil.ToFloat64(pending); got != 0 {
		t.Fatalf("pending = %v after Close", got)
	}
	if h.Subscribers() != 0 {
		t.Fatal("still subscribed")
	}
	h.Publish(0, entries("a", 3), 4) // no panic, nothing queued
}

func TestJobs(t *testing.T) {
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	h := New(2, Options{JobsTTL: time.Hour, MaxJobs: 3, Now: func() time.Time { return now }})
	h.Publish(0, entries("web", 0, 1), 2)
	h.Publish(1, entries("db", 0), 1)
	now = now.Add(50 * time.Minute)
	h.Publish(1, entries("cache", 1), 2)
	if got := names(h.Jobs()); !slices.Equal(got, []string{"cache", "db", "web"}) {
		t.Fatalf("jobs %v", got)
	}
	now = now.Add(20 * time.Minute) // web and db expire
	if got := names(h.Jobs()); !slices.Equal(got, []string{"cache"}) {
		t.Fatalf("jobs after the TTL %v", got)
	}
	h.Publish(0, entries("a", 2, 3), 4)
	h.Publish(0, entries("b", 4), 5)
	h.Publish(0, entries("c", 5), 6) // over MaxJobs: the least recently seen goes
	if got := h.Jobs(); len(got) != 3 || got[0].Partition != 0 {
		t.Fatalf("jobs %+v", got)
	}
	// A job whose producers partition differently is on several partitions.
	h.Publish(1, entriesOn(1, "c", 9), 10)
	if got := h.JobPartitions("c"); !slices.Equal(got, []Seen{{0, 5}, {1, 9}}) {
		t.Fatalf("partitions of c: %+v", got)
	}
	if got := h.Jobs(); got[2].Job != "c" || got[2].Partition != 1 || !slices.Equal(got[2].Partitions, []int32{0, 1}) {
		t.Fatalf("jobs %+v", got)
	}
}

// While catching up, overflows on two partitions are two gaps, each up to
// its partition's next offset.
func TestCatchUpGapsOnTwoPartitions(t *testing.T) {
	h := New(2, Options{})
	s, _, err := h.Subscribe([]string{"a"}, []int32{0, 1}, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h.Publish(0, entriesOn(0, "a", 0, 1), 2)
	h.Publish(1, entriesOn(1, "a", 0, 1), 2) // do not fit
	h.Publish(0, entriesOn(0, "a", 2), 3)    // does not fit
	h.Publish(1, entriesOn(1, "a", 2), 3)
	if st := s.Settle(false); st.Step != StepDrain {
		t.Fatalf("settle: %+v", st)
	}
	s.Take(nil)
	st := s.Settle(false)
	want := []Gap{{Partition: 0, From: 2, To: 3}, {Partition: 1, From: 0, To: 3}}
	if st.Step != StepGap || !slices.Equal(st.Gaps, want) {
		t.Fatalf("settle: %+v, want gaps %+v", st, want)
	}
	if st := s.Settle(false); st.Step != StepDone {
		t.Fatalf("settle: %+v", st)
	}
}

// Partitions added to the topic are followed by existing subscribers.
func TestAddPartitions(t *testing.T) {
	h := New(1, Options{})
	s := live(t, h, 0, "a", 10)
	h.AddPartitions([]int64{0, 5})
	if h.Partitions() != 3 || h.Next(2) != 5 {
		t.Fatalf("partitions %d, next of 2 = %d", h.Partitions(), h.Next(2))
	}
	h.Publish(2, entriesOn(2, "a", 5), 6)
	items, _ := s.Take(nil)
	if len(items) != 1 || items[0].Entry.Partition != 2 {
		t.Fatalf("items %+v", items)
	}
	s2, joins, _ := h.Subscribe([]string{"a"}, []int32{0}, 10)
	defer s2.Close()
	if !slices.Equal(joins, []int64{0, 0, 6}) {
		t.Fatalf("joins %v", joins)
	}
}

func names(jobs []Job) []string {
	var out []string
	for _, j := range jobs {
		out = append(out, j.Job)
	}
	return out
}

func TestNewEntry(t *testing.T) {
	value := []byte(`{"@timestamp":"2026-11-21T10:00:00.123456Z","message":"GET /api <b> 200","job":"web-1","host":{"name":"node-a"},"agent":{"name":"node-a"},"log":{"file":{"path":"/var/log/web.log"},"offset":12},"labels":{"env":"dev"}}`)
	e, ok := NewEntry(3, 7, []byte("web-1"), value, time.Time{})
	if !ok {
		t.Fatal("not decoded")
	}
	want := `{"partition":3,"offset":7,"job":"web-1","ts":"2026-11-21T10:00:00.123456Z","line":"GET /api <b> 200","host":"node-a","file":"/var/log/web.log","labels":{"env":"dev"}}`
	if string(e.JSON) != want || e.Job != "web-1" || e.Line != "GET /api <b> 200" {
		t.Fatalf("entry %s %+v", e.JSON, e)
	}
	// Not a record: delivered as raw text with the Kafka time.
	e, ok = NewEntry(3, 8, []byte("web-1"), []byte("plain \xff text"), time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	if ok {
		t.Fatal("decoded garbage")
	}
	want = `{"partition":3,"offset":8,"job":"web-1","ts":"2026-01-02T03:04:05.000000Z","line":"plain ` + "\uFFFD" + ` text","host":"","file":"","labels":{}}`
	if string(e.JSON) != want {
		t.Fatalf("raw entry %s", e.JSON)
	}
}

// A record of the agent, with its source position, gives its entry `src`
// and `pos`: src is pinned, since viewers compare it across sessions and
// livetail versions.
func TestNewEntrySource(t *testing.T) {
	value := []byte(`{"@timestamp":"2026-11-21T10:00:00.123456Z","message":"GET /api 200","job":"web-1","host":{"name":"node-a"},"agent":{"name":"node-a"},` +
		`"log":{"file":{"path":"/var/log/web/access.log","device_id":"2049","inode":"1835017","fingerprint":"9f2c41d07a5b3e88"},"offset":0}}`)
	e, ok := NewEntry(3, 7, []byte("web-1"), value, time.Time{})
	if !ok {
		t.Fatal("not decoded")
	}
	want := `{"partition":3,"offset":7,"job":"web-1","ts":"2026-11-21T10:00:00.123456Z","line":"GET /api 200","host":"node-a","file":"/var/log/web/access.log","labels":{},"src":"32ce81ed55dc59c9","pos":0}`
	if string(e.JSON) != want || e.Src != 0x32ce81ed55dc59c9 || e.Pos != 0 {
		t.Fatalf("entry %s, src %x, pos %d; want %s", e.JSON, e.Src, e.Pos, want)
	}
	// Each part of the position makes another source; path, host, job and
	// the message do not.
	base, _ := record.Decode(value)
	for name, change := range map[string]func(r *record.Record){
		"agent":       func(r *record.Record) { r.Agent.Name = "node-b" },
		"device":      func(r *record.Record) { r.Log.File.DeviceID = "2050" },
		"inode":       func(r *record.Record) { r.Log.File.Inode = "1835018" },
		"fingerprint": func(r *record.Record) { r.Log.File.Fingerprint = "9f2c41d07a5b3e89" },
		"fields run together": func(r *record.Record) {
			r.Agent.Name, r.Log.File.DeviceID = "node-a2", "049"
		},
	} {
		r := base
		change(&r)
		if SourceID(&r) == SourceID(&base) {
			t.Errorf("%s changed: the same source id", name)
		}
	}
	r := base
	r.Log.File.Path, r.Host.Name, r.Job, r.Message, r.Log.Offset = "/var/log/web/access.log.1", "h", "j", "m", 99
	if SourceID(&r) != SourceID(&base) {
		t.Error("a renamed file's line has another source id")
	}
	// Without the full position (another producer), no src and no pos.
	value = []byte(`{"@timestamp":"2026-11-21T10:00:00.123456Z","message":"x","job":"web-1","host":{"name":"node-a"},"agent":{"name":"node-a"},"log":{"file":{"path":"/p","inode":"1"},"offset":5}}`)
	if e, _ := NewEntry(3, 8, []byte("web-1"), value, time.Time{}); e.Src != 0 || bytes.Contains(e.JSON, []byte(`"src"`)) || bytes.Contains(e.JSON, []byte(`"pos"`)) {
		t.Fatalf("entry without a source position: %s, src %x", e.JSON, e.Src)
	}
}

// BenchmarkNewEntry measures what a partition consumer does per record of
// the agent: decode it and build its entry, source id included.
func BenchmarkNewEntry(b *testing.B) {
	value := []byte(`{"@timestamp":"2026-11-21T10:00:00.123456Z","message":"GET /api/v1/orders/8812 200 1532 \"Mozilla/5.0\" 0.012","job":"web-1","host":{"name":"node-a"},"agent":{"name":"node-a"},` +
		`"log":{"file":{"path":"/var/log/web/access.log","device_id":"2049","inode":"1835017","fingerprint":"9f2c41d07a5b3e88"},"offset":123456},"labels":{"env":"dev"}}`)
	key := []byte("web-1")
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if e, _ := NewEntry(0, int64(i), key, value, time.Time{}); e.Src == 0 {
			b.Fatal("no source id")
		}
	}
}

// BenchmarkSourceID measures the source id alone.
func BenchmarkSourceID(b *testing.B) {
	r := record.Record{Agent: record.Agent{Name: "node-a"}, Log: record.Log{File: record.File{DeviceID: "2049", Inode: "1835017", Fingerprint: "9f2c41d07a5b3e88"}}}
	b.ReportAllocs()
	for b.Loop() {
		if SourceID(&r) == 0 {
			b.Fatal("zero id")
		}
	}
}
