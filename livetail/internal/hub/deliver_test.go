package hub

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// Deliver decodes only the records of watched jobs, once whatever the
// number of their subscribers, and skips the others without decoding (a
// value that is not JSON on an unwatched job is no undecodable record);
// the jobs list still learns every job.
func TestDeliverSkipsUnwatched(t *testing.T) {
	h := New(1, Options{})
	a1 := live(t, h, 0, "a", 100)
	a2 := live(t, h, 0, "a", 100)
	recs := []Record{
		{Offset: 0, Key: []byte("a"), Value: []byte(`{"@timestamp":"2026-11-21T10:00:00Z","message":"m0","job":"a"}`)},
		{Offset: 1, Key: []byte("b"), Value: []byte(`not json at all`)},
		{Offset: 2, Value: []byte(`{"labels":{"job":"a"},"job":"c","message":"keyless c"}`)},
		{Offset: 3, Value: []byte(`{"@timestamp":"2026-11-21T10:00:01Z","job":"a","message":"keyless a"}`)},
		{Offset: 4, Key: []byte("a"), Value: []byte(`not a record`)},
	}
	d := h.Deliver(0, recs, 5)
	if d != (Delivered{Decoded: 3, Skipped: 2, Undecodable: 1}) {
		t.Fatalf("delivered %+v, want 3 decoded (offsets 0, 3, 4), 2 skipped (1, 2), 1 undecodable (4)", d)
	}
	items1, _ := a1.Take(nil)
	items2, _ := a2.Take(nil)
	if got := offsets(items1); !slices.Equal(got, []int64{0, 3, 4}) {
		t.Fatalf("subscriber got %v, want [0 3 4]", got)
	}
	for i := range items1 {
		if items1[i].Entry != items2[i].Entry {
			t.Fatalf("entry %d decoded twice for two subscribers", i)
		}
	}
	if h.Next(0) != 5 {
		t.Fatalf("next %d, want 5", h.Next(0))
	}
	var names []string
	for _, j := range h.Jobs() {
		names = append(names, j.Job)
	}
	if !slices.Equal(names, []string{"a", "b", "c"}) {
		t.Fatalf("jobs %v, want [a b c]", names)
	}
}

// Deliver decodes outside the partition's lock; a subscriber that joins
// after the records were looked at, before they are offered, still gets
// them, each decoded once, and its join offset is after none of them.
func TestDeliverSubscriberJoiningWhileDecoding(t *testing.T) {
	h := New(1, Options{})
	a := live(t, h, 0, "a", 100)
	recs := []Record{
		{Offset: 0, Key: []byte("a"), Value: []byte(`{"@timestamp":"2026-11-21T10:00:00Z","message":"a0","job":"a"}`)},
		{Offset: 1, Key: []byte("b"), Value: []byte(`{"@timestamp":"2026-11-21T10:00:01Z","message":"b1","job":"b"}`)},
		{Offset: 2, Key: []byte("b"), Value: []byte(`not a record`)},
	}
	pt := h.part(0)
	ds := make([]delivery, len(recs))
	for i := range recs {
		ds[i].job = RecordJob(recs[i].Key, recs[i].Value)
	}
	var d Delivered
	pt.watched(ds)
	if !ds[0].watched || ds[1].watched || ds[2].watched {
		t.Fatalf("watched %v %v %v, want only job a's record", ds[0].watched, ds[1].watched, ds[2].watched)
	}
	d.decode(&ds[0], 0, &recs[0])
	b, joins, err := h.Subscribe([]string{"b"}, []int32{0}, 100) // joins between decoding and offering
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if joins[0] != 0 {
		t.Fatalf("b joined at offset %d, want 0: the records are not offered yet", joins[0])
	}
	b.Settle(false)
	h.offerAll(pt, ds, recs, 3, &d)
	if d != (Delivered{Decoded: 3, Undecodable: 1}) {
		t.Fatalf("delivered %+v, want 3 decoded (1 undecodable), none skipped", d)
	}
	if got, _ := b.Take(nil); !slices.Equal(offsets(got), []int64{1, 2}) {
		t.Fatalf("the subscriber that joined got %v, want [1 2]", offsets(got))
	}
	if got, _ := a.Take(nil); !slices.Equal(offsets(got), []int64{0}) {
		t.Fatalf("the subscriber there before got %v, want [0]", offsets(got))
	}
}

// topLevelJob finds the job a full decode finds, on a table of shapes.
func TestRecordJob(t *testing.T) {
	for name, tc := range map[string]struct {
		key, value, want string
	}{
		"key wins":         {"k", `{"job":"v"}`, "k"},
		"plain":            {"", `{"job":"web"}`, "web"},
		"spaces":           {"", "{ \"message\" : \"a \\\"job\\\": x\" ,\n \"job\" :\t\"web\" }", "web"},
		"nested first":     {"", `{"labels":{"job":"inner"},"list":["job","x"],"job":"outer"}`, "outer"},
		"escaped value":    {"", `{"job":"we\u0062\"1"}`, "web\"1"},
		"value named job":  {"", `{"message":"job","x":1}`, ""},
		"not a string":     {"", `{"job":42}`, ""},
		"object":           {"", `{"job":{"name":"x"}}`, ""},
		"none":             {"", `{"message":"m"}`, ""},
		"not json":         {"", `job: web`, ""},
		"array":            {"", `[{"job":"web"}]`, ""},
		"unterminated":     {"", `{"job":"web`, ""},
		"key after nested": {"", `{"a":{"b":{"c":[1,{"job":"x"}]}},"job":"y"}`, "y"},
	} {
		if got := RecordJob([]byte(tc.key), []byte(tc.value)); got != tc.want {
			t.Errorf("%s: RecordJob(%q, %s) = %q, want %q", name, tc.key, tc.value, got, tc.want)
		}
	}
}

// On any JSON object, topLevelJob agrees with a full decode of "job".
func FuzzTopLevelJob(f *testing.F) {
	for _, s := range []string{`{"job":"web"}`, `{"labels":{"job":"x"},"job":"y"}`, `{"job":"a\"b"}`, `{"message":"job"}`, `{}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var v map[string]json.RawMessage
		if json.Unmarshal([]byte(s), &v) != nil {
			return
		}
		want := ""
		if raw, ok := v["job"]; ok {
			_ = json.Unmarshal(raw, &want)
		}
		if dupKeys(s) || strings.Contains(s, `\`) {
			// encoding/json keeps the last of duplicate keys, and reads a
			// key spelled with escapes; the scan takes the first "job"
			// spelled plainly. Producers write neither.
			return
		}
		if got := topLevelJob([]byte(s)); got != want {
			t.Fatalf("topLevelJob(%s) = %q, json finds %q", s, got, want)
		}
	})
}

// dupKeys reports whether the top-level object s has a key twice.
func dupKeys(s string) bool {
	dec := json.NewDecoder(strings.NewReader(s))
	seen := map[string]bool{}
	if _, err := dec.Token(); err != nil {
		return false
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		k, _ := tok.(string)
		if seen[k] {
			return true
		}
		seen[k] = true
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return false
		}
	}
	return false
}
