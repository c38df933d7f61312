package esfake

import (
	"testing"
	"time"
)

func TestParseISO(t *testing.T) {
	utc := func(s string) int64 {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm.UnixMilli()
	}
	tests := map[string]struct {
		in   string
		ok   bool
		want int64
		unit dateUnit
	}{
		"year":          {"2026", true, utc("2026-01-01T00:00:00Z"), unitYear},
		"day":           {"2026-11-21", true, utc("2026-11-21T00:00:00Z"), unitDay},
		"minutes":       {"2026-11-21T10:05", true, utc("2026-11-21T10:05:00Z"), unitMinute},
		"micros zulu":   {"2026-11-21T10:00:00.123456Z", true, utc("2026-11-21T10:00:00.123Z"), unitMilli},
		"offset":        {"2026-11-21T10:00:00+02:00", true, utc("2026-11-21T08:00:00Z"), unitSecond},
		"compact zone":  {"2026-11-21T10:00:00-0130", true, utc("2026-11-21T11:30:00Z"), unitSecond},
		"no T":          {"2026-11-21 10:00:00", false, 0, 0},
		"february 30th": {"2026-02-30", false, 0, 0},
		"one-digit day": {"2026-11-1", false, 0, 0},
		"words":         {"yesterday", false, 0, 0},
		"trailing":      {"2026-11-21Tx", false, 0, 0},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			tm, unit, ok := parseISO(tc.in, true, time.UTC)
			if ok != tc.ok || (ok && (tm.UnixMilli() != tc.want || unit != tc.unit)) {
				t.Errorf("parseISO(%q) = %v %v %v, want %v %v %v", tc.in, tm, unit, ok, time.UnixMilli(tc.want).UTC(), tc.unit, tc.ok)
			}
		})
	}
}

func TestDateMath(t *testing.T) {
	now := time.Date(2026, 11, 21, 10, 34, 56, 789e6, time.UTC)
	ms := func(s string) int64 {
		tm, _ := time.Parse(time.RFC3339Nano, s)
		return tm.UnixMilli()
	}
	tests := []struct {
		expr string
		up   bool
		want string
	}{
		{"now", false, "2026-11-21T10:34:56.789Z"},
		{"now-5m", false, "2026-11-21T10:29:56.789Z"},
		{"now-1d/d", false, "2026-11-20T00:00:00Z"},
		{"now-1d/d", true, "2026-11-20T23:59:59.999Z"},
		{"now/M", false, "2026-11-01T00:00:00Z"},
		{"now/w", false, "2026-11-16T00:00:00Z"}, // a Monday
		{"now+1h/h", false, "2026-11-21T11:00:00Z"},
		{"2026-01-31||+1M", false, "2026-03-03T00:00:00Z"},
		{"2026-11-20", true, "2026-11-20T23:59:59.999Z"},
		{"2026-11-20T10:00:00Z", true, "2026-11-20T10:00:00.999Z"},
		{"1795255080000", false, "2026-11-21T09:58:00Z"},
	}
	for _, tc := range tests {
		got, e := dateMath(tc.expr, defaultDates, time.UTC, now, tc.up)
		if e != nil || got != ms(tc.want) {
			t.Errorf("dateMath(%q, up=%v) = %v (%v), want %s", tc.expr, tc.up, time.UnixMilli(got).UTC(), e, tc.want)
		}
	}
	for _, bad := range []string{"now-5", "now-5q", "now/", "tomorrow"} {
		if _, e := dateMath(bad, defaultDates, time.UTC, now, false); e == nil {
			t.Errorf("dateMath(%q) accepted", bad)
		}
	}
}

func TestDateFormats(t *testing.T) {
	f, err := newDateFormat("yyyy/MM/dd HH:mm:ss||epoch_second")
	if err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{
		"2026/11/21 10:00:00": "2026-11-21T10:00:00Z",
		"1795255200":          "2026-11-21T10:00:00Z",
	} {
		got, ok := f.millis(in)
		exp, _ := time.Parse(time.RFC3339, want)
		if !ok || got != exp.UnixMilli() {
			t.Errorf("%q: %v %v, want %s", in, time.UnixMilli(got).UTC(), ok, want)
		}
	}
	if _, err := newDateFormat("yyyy-MM-dd QQQ"); err == nil {
		t.Error("unknown pattern letters accepted")
	}
}

func TestGlobs(t *testing.T) {
	for _, tc := range []struct {
		a, b    string
		overlap bool
	}{
		{"logs-*", "logs-*-*", true},
		{"logs-logpipe-*", "logs-*-*", true},
		{"logs-app", "logs-*-*", false},
		{"metrics-*", "logs-*", false},
		{"*", "x", true},
		{"a*c", "ab*", true},
		{"a*c", "b*", false},
	} {
		if got := globsOverlap(tc.a, tc.b); got != tc.overlap {
			t.Errorf("globsOverlap(%q, %q) = %v", tc.a, tc.b, got)
		}
		if got := globsOverlap(tc.b, tc.a); got != tc.overlap {
			t.Errorf("globsOverlap(%q, %q) = %v", tc.b, tc.a, got)
		}
	}
	if !globMatch("logs-*-*", "logs-logpipe-default") || globMatch("logs-*-*", "logs-x") {
		t.Error("globMatch")
	}
}

// The fast path for simple action lines must read them exactly as the
// full parser does, and leave everything else to it.
func TestSimpleActionMatchesFullParser(t *testing.T) {
	lines := []string{
		`{"create":{"_index":"logs-logpipe-default","_id":"logs-0-1"}}`,
		`{ "index" : { "_id" : "1" } }`,
		`{"delete":{"_index":"a","_id":"x"}}`,
		`{"create":{}}`,
		`{"create":{"_index":"a","_id":"é"}}`,
		`{"create":{"_index":"a","_id":"q\"uote"}}`,
		`{"create":{"_index":"a","_id":5}}`,
		`{"create":{"_index":"a","routing":"r"}}`,
	}
	for _, l := range lines {
		var fast bulkItem
		if !parseSimpleAction([]byte(l), &fast) {
			continue
		}
		full, e := parseAction([]byte(`  `+l), 1, "")
		if e != nil || full.op != fast.op || full.index != fast.index || full.id != fast.id || full.hasID != fast.hasID {
			t.Errorf("%s: fast %+v, full %+v %v", l, fast, full, e)
		}
	}
	for _, l := range []string{`{"create":{"_index":"a"}} x`, `{"create":{"_index":"a","_index":"b"}}`, `{"upsert":{}}`, `{"create":{"_id":"a\\b"}}`} {
		var it bulkItem
		if parseSimpleAction([]byte(l), &it) {
			t.Errorf("%s: taken by the fast path", l)
		}
	}
}
