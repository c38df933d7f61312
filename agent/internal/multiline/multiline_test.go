package multiline

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	"github.com/logpipe/logpipe/agent/internal/tail"
	"github.com/logpipe/logpipe/common/collect"
)

// feed runs lines through a Grouper and returns the events, flushed at the end.
func feed(t testing.TB, cfg Config, lines []string) []Event {
	t.Helper()
	g := New(cfg)
	var out []Event
	emit := func(ev Event) error {
		ev.Text = bytes.Clone(ev.Text)
		out = append(out, ev)
		return nil
	}
	off := int64(0)
	for _, l := range lines {
		line := tail.Line{Offset: off, End: off + int64(len(l)) + 1, Text: []byte(l)}
		off = line.End
		if err := g.Add(line, emit); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.Flush(emit); err != nil {
		t.Fatal(err)
	}
	return out
}

func texts(evs []Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = string(e.Text)
	}
	return out
}

func TestGrouping(t *testing.T) {
	javaTrace := []string{
		"2026-11-21 10:00:00 ERROR boom",
		"java.lang.IllegalStateException: x",
		"\tat a.b.C.d(C.java:10)",
		"\tat a.b.C.e(C.java:20)",
		"2026-11-21 10:00:01 INFO fine",
	}
	tests := map[string]struct {
		pattern  string
		negate   bool
		before   bool
		maxLines int
		maxBytes int
		lines    []string
		want     []string
	}{
		"java stack trace: lines not starting with a date go after": {
			pattern: `^\d{4}-\d{2}-\d{2}`, negate: true,
			lines: javaTrace,
			want: []string{
				"2026-11-21 10:00:00 ERROR boom\njava.lang.IllegalStateException: x\n\tat a.b.C.d(C.java:10)\n\tat a.b.C.e(C.java:20)",
				"2026-11-21 10:00:01 INFO fine",
			},
		},
		"indented continuation lines": {
			pattern: `^\s`,
			lines:   []string{"a", " b", " c", "d", "e", " f"},
			want:    []string{"a\n b\n c", "d", "e\n f"},
		},
		"orphan continuation at the start": {
			pattern: `^\s`,
			lines:   []string{" x", "a"},
			want:    []string{" x", "a"},
		},
		"backslash continues before": {
			pattern: `\\$`, before: true,
			lines: []string{`a \`, `b \`, "c", "d"},
			want:  []string{"a \\\nb \\\nc", "d"},
		},
		"negate before: non-matching lines prepend to the next match": {
			pattern: `;$`, negate: true, before: true,
			lines: []string{"select", "from t", "where x;", "next;"},
			want:  []string{"select\nfrom t\nwhere x;", "next;"},
		},
		"max lines starts a new event": {
			pattern: `^\s`, maxLines: 2,
			lines: []string{"a", " 1", " 2", " 3"},
			want:  []string{"a\n 1", " 2\n 3"},
		},
		"max bytes cuts": {
			pattern: `^\s`, maxBytes: 6,
			lines: []string{"abc", " def", "g"},
			want:  []string{"abc\n d", "g"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cfg := Config{Pattern: regexp.MustCompile(tc.pattern), Negate: tc.negate, Before: tc.before, MaxLines: tc.maxLines, MaxBytes: tc.maxBytes}
			if cfg.MaxLines == 0 {
				cfg.MaxLines = 100
			}
			if cfg.MaxBytes == 0 {
				cfg.MaxBytes = 1 << 20
			}
			got := texts(feed(t, cfg, tc.lines))
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestEventOffsetsAndFlags(t *testing.T) {
	cfg := Config{Pattern: regexp.MustCompile(`^\s`), MaxLines: 10, MaxBytes: 5}
	evs := feed(t, cfg, []string{"ab", " cd", "e"})
	if len(evs) != 2 {
		t.Fatalf("events %+v", evs)
	}
	if e := evs[0]; e.Offset != 0 || e.End != 7 || e.Lines != 2 || !e.Truncated || string(e.Text) != "ab\n c" {
		t.Fatalf("first event %+v %q", e, e.Text)
	}
	if e := evs[1]; e.Offset != 7 || e.End != 9 || e.Lines != 1 || e.Truncated {
		t.Fatalf("second event %+v", e)
	}
}

func TestPending(t *testing.T) {
	g := New(Config{Pattern: regexp.MustCompile(`^\s`), MaxLines: 10, MaxBytes: 100})
	if _, ok := g.Pending(); ok {
		t.Fatal("pending before any line")
	}
	nop := func(Event) error { return nil }
	_ = g.Add(tail.Line{Offset: 0, End: 2, Text: []byte("a")}, nop)
	_ = g.Add(tail.Line{Offset: 2, End: 5, Text: []byte(" b")}, nop)
	if off, ok := g.Pending(); !ok || off != 0 {
		t.Fatalf("pending %d %v", off, ok)
	}
}

func TestFromEntry(t *testing.T) {
	cfg, err := FromEntry(&collect.Multiline{Pattern: `^x`, Match: collect.MatchBefore}, 10)
	if err != nil || !cfg.Before || cfg.MaxLines != collect.DefaultMaxLines || cfg.MaxBytes != 10 {
		t.Fatalf("%+v %v", cfg, err)
	}
	if _, err := FromEntry(&collect.Multiline{Pattern: `(`}, 10); err == nil {
		t.Fatal("bad pattern accepted")
	}
}

// FuzzGrouping checks the invariants of any grouping: events cover the
// input lines exactly once and in order, offsets are contiguous, no event
// exceeds max_lines, and with a byte limit large enough nothing is cut.
func FuzzGrouping(f *testing.F) {
	f.Add("a\n b\n c\nd\n", `^\s`, false, false, uint8(3))
	f.Add("x;\ny\nz;\n", `;$`, true, true, uint8(0))
	f.Add("\n\n\n", `^$`, false, true, uint8(1))
	f.Fuzz(func(t *testing.T, input, pattern string, negate, before bool, maxLines uint8) {
		re, err := regexp.Compile(pattern)
		if err != nil {
			return
		}
		lines := strings.Split(input, "\n")
		cfg := Config{Pattern: re, Negate: negate, Before: before, MaxLines: int(maxLines%8) + 1, MaxBytes: len(input) + 16}
		evs := feed(t, cfg, lines)
		var rebuilt []string
		next := int64(0)
		for i, e := range evs {
			if e.Offset != next {
				t.Fatalf("event %d starts at %d, want %d", i, e.Offset, next)
			}
			if e.Lines < 1 || e.Lines > cfg.MaxLines {
				t.Fatalf("event %d has %d lines, max %d", i, e.Lines, cfg.MaxLines)
			}
			if e.Truncated {
				t.Fatalf("event %d truncated with a limit of %d", i, cfg.MaxBytes)
			}
			parts := strings.Split(string(e.Text), "\n")
			if len(parts) != e.Lines {
				t.Fatalf("event %d: %d lines counted, %d in the text", i, e.Lines, len(parts))
			}
			matches := func(s string) bool { return re.MatchString(s) != negate }
			for j, p := range parts {
				switch {
				case !before && j > 0 && !matches(p):
					t.Fatalf("after: event %d line %d %q does not continue the event", i, j, p)
				case before && j < len(parts)-1 && !matches(p):
					t.Fatalf("before: event %d line %d %q should have ended the event", i, j, p)
				}
			}
			rebuilt = append(rebuilt, parts...)
			next = e.End
		}
		if strings.Join(rebuilt, "\n") != input || len(rebuilt) != len(lines) {
			t.Fatalf("events %q do not rebuild the input %q", texts(evs), input)
		}
	})
}
