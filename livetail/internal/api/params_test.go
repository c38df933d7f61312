package api

import (
	"errors"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/logpipe/logpipe/livetail/internal/auth"
	"github.com/logpipe/logpipe/livetail/internal/session"
	"github.com/logpipe/logpipe/livetail/internal/wire"
)

func TestParseParams(t *testing.T) {
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	tests := map[string]struct {
		query string
		want  session.Params
		param string // the parameter a ParamError names; "" for success
	}{
		"live":                 {query: "job=web-1", want: session.Params{Jobs: []string{"web-1"}}},
		"tail":                 {query: "job=web-1&tail=100", want: session.Params{Jobs: []string{"web-1"}, Mode: session.ModeTail, Tail: 100}},
		"tail 0":               {query: "job=web-1&tail=0", want: session.Params{Jobs: []string{"web-1"}, Mode: session.ModeTail}},
		"since duration":       {query: "job=a&since=5m", want: session.Params{Jobs: []string{"a"}, Mode: session.ModeSince, Since: now.Add(-5 * time.Minute)}},
		"since rfc3339":        {query: "job=a&since=2026-11-21T09:00:00Z", want: session.Params{Jobs: []string{"a"}, Mode: session.ModeSince, Since: now.Add(-time.Hour)}},
		"since offset tz":      {query: "job=a&since=" + url.QueryEscape("2026-11-21T10:00:00+01:00"), want: session.Params{Jobs: []string{"a"}, Mode: session.ModeSince, Since: now.Add(-time.Hour)}},
		"cursor":               {query: "job=a&cursor=42", want: session.Params{Jobs: []string{"a"}, Mode: session.ModeCursor, Cursor: []session.Position{{Partition: session.HomePartition, Offset: 42}}}},
		"cursor none yet":      {query: "job=a&cursor=-1", want: session.Params{Jobs: []string{"a"}, Mode: session.ModeCursor, Cursor: []session.Position{{Partition: session.HomePartition, Offset: -1}}}},
		"cursor parts":         {query: "job=a&cursor=3:17,0:-1", want: session.Params{Jobs: []string{"a"}, Mode: session.ModeCursor, Cursor: []session.Position{{Partition: 0, Offset: -1}, {Partition: 3, Offset: 17}}}},
		"cursor twice":         {query: "job=a&cursor=3:17,3:18", param: "cursor"},
		"cursor no part":       {query: "job=a&cursor=:17", param: "cursor"},
		"cursor neg part":      {query: "job=a&cursor=-2:17", param: "cursor"},
		"token ignored":        {query: "job=a&token=xyz&other=1", want: session.Params{Jobs: []string{"a"}}},
		"empty grep":           {query: "job=a&grep=", want: session.Params{Jobs: []string{"a"}}},
		"ten jobs":             {query: "job=j0&job=j1&job=j2&job=j3&job=j4&job=j5&job=j6&job=j7&job=j8&job=j9", want: session.Params{Jobs: []string{"j0", "j1", "j2", "j3", "j4", "j5", "j6", "j7", "j8", "j9"}}},
		"eleven jobs":          {query: "job=j0&job=j1&job=j2&job=j3&job=j4&job=j5&job=j6&job=j7&job=j8&job=j9&job=j10", param: "job"},
		"jobs in order":        {query: "job=b&job=+a+&tail=3", want: session.Params{Jobs: []string{"b", "a"}, Mode: session.ModeTail, Tail: 3}},
		"job repeated":         {query: "job=a&job=b&job=a", param: "job"},
		"job repeated trimmed": {query: "job=a&job=%20a", param: "job"},
		"one job empty":        {query: "job=a&job=", param: "job"},
		"missing job":          {query: "tail=5", param: "job"},
		"empty job":            {query: "job=", param: "job"},
		"long job":             {query: "job=" + strings.Repeat("x", 257), param: "job"},
		"bad utf-8 job":        {query: "job=%ff", param: "job"},
		"tail too big":         {query: "job=a&tail=10001", param: "tail"},
		"tail negative":        {query: "job=a&tail=-1", param: "tail"},
		"tail words":           {query: "job=a&tail=all", param: "tail"},
		"since garbage":        {query: "job=a&since=yesterday", param: "since"},
		"since empty":          {query: "job=a&since=", param: "since"},
		"since negative":       {query: "job=a&since=-1h", param: "since"},
		"cursor negative":      {query: "job=a&cursor=-2", param: "cursor"},
		"cursor float":         {query: "job=a&cursor=1.5", param: "cursor"},
		"two modes":            {query: "job=a&since=5m&cursor=3", param: "cursor"},
		"bad grep":             {query: "job=a&grep=" + url.QueryEscape("a(b"), param: "grep"},
		"grep backref":         {query: "job=a&grep=" + url.QueryEscape(`(a)\1`), param: "grep"},
		"long grep":            {query: "job=a&grep=" + strings.Repeat("a", 1025), param: "grep"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			q, err := url.ParseQuery(tt.query)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseParams(q, now, DefaultMaxTail)
			if tt.param != "" {
				var pe *session.ParamError
				if !errors.As(err, &pe) || pe.Param != tt.param || !strings.HasPrefix(err.Error(), tt.param+": ") {
					t.Fatalf("error %v, want one naming %s", err, tt.param)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got.Grep = nil
			if !got.Since.Equal(tt.want.Since) {
				t.Fatalf("since %v, want %v", got.Since, tt.want.Since)
			}
			got.Since, tt.want.Since = time.Time{}, time.Time{}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// Any query either parses into consistent parameters or fails with an
// error that names one of them and fits a close frame's reason.
func FuzzParseParams(f *testing.F) {
	for _, s := range []string{
		"job=web-1", "job=a&tail=10", "job=a&since=5m", "job=a&since=2026-11-21T10:00:00Z",
		"job=a&cursor=7", "job=a&cursor=0:3,2:-1", "job=a&grep=err(or)?", "job=a&tail=1&since=1m", "job=%ff", "grep=(",
		"job=a&since=9999999999h", "job=a&tail=00000000000000000000001",
	} {
		f.Add(s)
	}
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		p, err := ParseParams(q, now, DefaultMaxTail)
		if err != nil {
			var pe *session.ParamError
			if !errors.As(err, &pe) {
				t.Fatalf("%q: error %v is not a ParamError", raw, err)
			}
			switch pe.Param {
			case "job", "tail", "since", "cursor", "grep":
			default:
				t.Fatalf("%q: error names %q", raw, pe.Param)
			}
			if r := wire.CloseReason(err.Error()); len(r) > 123 || !utf8.ValidString(r) {
				t.Fatalf("%q: close reason %q does not fit", raw, r)
			}
			if len(wire.ErrorFrame(StatusBadRequest, err.Error())) == 0 {
				t.Fatal("no error frame")
			}
			return
		}
		if len(p.Jobs) == 0 || len(p.Jobs) > MaxJobs {
			t.Fatalf("%q: %d jobs accepted", raw, len(p.Jobs))
		}
		for i, job := range p.Jobs {
			if job == "" || len(job) > maxJobLen || !utf8.ValidString(job) || slices.Contains(p.Jobs[:i], job) {
				t.Fatalf("%q: job %q accepted", raw, job)
			}
		}
		if p.Tail < 0 || p.Tail > DefaultMaxTail {
			t.Fatalf("%q: out of range %+v", raw, p)
		}
		for _, c := range p.Cursor {
			if c.Offset < -1 || c.Partition < session.HomePartition {
				t.Fatalf("%q: cursor out of range %+v", raw, p.Cursor)
			}
		}
		if p.Mode == session.ModeSince && p.Since.After(now) && !q.Has("since") {
			t.Fatalf("%q: since without a since", raw)
		}
	})
}

// Under --auth jwt every job of a stream is checked against the token's
// jobs claim; the first one refused is named (4403).
func TestAllowedJobs(t *testing.T) {
	id := auth.Identity{User: "u", Jobs: []string{"web-*", "db"}}
	for name, tt := range map[string]struct {
		jobs    []string
		refused string
	}{
		"all allowed":    {jobs: []string{"web-1", "db", "web-2"}},
		"second refused": {jobs: []string{"web-1", "mail", "cache"}, refused: "mail"},
		"first refused":  {jobs: []string{"cache", "db"}, refused: "cache"},
	} {
		t.Run(name, func(t *testing.T) {
			refused, ok := allowed(id, tt.jobs)
			if ok != (tt.refused == "") || refused != tt.refused {
				t.Fatalf("allowed(%v) = %q, %v; want %q refused", tt.jobs, refused, ok, tt.refused)
			}
		})
	}
	if _, ok := allowed(auth.Identity{User: "anyone"}, []string{"a", "b"}); !ok {
		t.Fatal("an identity without a jobs claim refused a job")
	}
}
