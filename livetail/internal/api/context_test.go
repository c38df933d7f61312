package api

import (
	"net/url"
	"testing"
)

func TestParseContextQuery(t *testing.T) {
	for query, want := range map[string]string{
		"job=web&partition=2&offset=7":                    "",
		"job=web&partition=2&offset=7&before=0&after=200": "",
		"partition=2&offset=7":                            "job",
		"job=web&offset=7":                                "partition",
		"job=web&partition=3&offset=7":                    "partition",
		"job=web&partition=-1&offset=7":                   "partition",
		"job=web&partition=2":                             "offset",
		"job=web&partition=2&offset=1e3":                  "offset",
		"job=web&partition=2&offset=7&before=201":         "before",
		"job=web&partition=2&offset=7&after=-1":           "after",
		"job=%ff&partition=2&offset=7":                    "job",
	} {
		v, _ := url.ParseQuery(query)
		q, err := parseContextQuery(v, 3)
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: %v", query, err)
		case want == "" && (q.job != "web" || q.partition != 2 || q.offset != 7):
			t.Errorf("%s: %+v", query, q)
		case want != "" && (err == nil || err.Param != want):
			t.Errorf("%s: %v, want an error naming %s", query, err, want)
		}
	}
	v, _ := url.ParseQuery("job=web&partition=0&offset=0")
	if q, _ := parseContextQuery(v, 1); q.before != DefaultContextLines || q.after != DefaultContextLines {
		t.Errorf("defaults: %+v", q)
	}
}

func FuzzParseContextQuery(f *testing.F) {
	f.Add("job=web&partition=2&offset=7&before=3&after=4")
	f.Add("job=&partition=99999999999&offset=-0")
	f.Fuzz(func(t *testing.T, query string) {
		v, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		q, perr := parseContextQuery(v, 6)
		if perr != nil {
			if perr.Param == "" || perr.Reason == "" {
				t.Fatalf("%q: an error that names no parameter: %v", query, perr)
			}
			return
		}
		if q.job == "" || q.partition < 0 || q.partition >= 6 || q.offset < 0 ||
			q.before < 0 || q.before > MaxContextLines || q.after < 0 || q.after > MaxContextLines {
			t.Fatalf("%q: accepted %+v", query, q)
		}
	})
}
