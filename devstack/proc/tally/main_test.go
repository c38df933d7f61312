package main

import (
	"strings"
	"testing"
)

// Runs as go test -json writes them (output events left out).
const (
	passed = `{"Action":"start","Package":"example/a"}
{"Action":"run","Package":"example/a","Test":"TestOK"}
{"Action":"pass","Package":"example/a","Test":"TestOK","Elapsed":0}
{"Action":"pass","Package":"example/a","Elapsed":0.1}
{"Action":"pass","Package":"example/b","Elapsed":0.1}
`
	flaky = `go: downloading example.com/x v1.0.0
{"Action":"run","Package":"example/a","Test":"TestBad"}
{"Action":"run","Package":"example/a","Test":"TestBad/sub"}
{"Action":"fail","Package":"example/a","Test":"TestBad/sub","Elapsed":0}
{"Action":"fail","Package":"example/a","Test":"TestBad","Elapsed":0}
{"Action":"fail","Package":"example/a","Elapsed":0.1}
{"Action":"fail","Package":"example/b","Elapsed":0.1}
`
	leaked = `{"Action":"pass","Package":"example/a","Test":"TestOK","Elapsed":0}
{"Action":"fail","Package":"example/a","Elapsed":0.1}
{"Action":"pass","Package":"example/b","Elapsed":0.1}
`
)

func tally(t *testing.T, streams ...string) (string, bool) {
	t.Helper()
	var runs []run
	var names []string
	for i, s := range streams {
		r, err := read(strings.NewReader(s))
		if err != nil {
			t.Fatal(err)
		}
		runs = append(runs, r)
		names = append(names, "run-"+string(rune('1'+i))+".json")
	}
	var b strings.Builder
	ok := report(&b, names, runs)
	return b.String(), ok
}

func TestAllPassed(t *testing.T) {
	out, ok := tally(t, passed, passed)
	if !ok || !strings.Contains(out, "every test passed in all 2 runs") {
		t.Errorf("ok %v, report:\n%s", ok, out)
	}
}

func TestFailuresCounted(t *testing.T) {
	out, ok := tally(t, flaky, passed, flaky, leaked)
	if ok {
		t.Errorf("ok = true with failed runs:\n%s", out)
	}
	for _, want := range []string{
		"3 of 4 runs failed",
		"  2/4  example/a TestBad\n",
		"  2/4  example/a TestBad/sub\n",
		"  2/4  example/b (outside any test",
		"  1/4  example/a (outside any test",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if strings.Index(out, "  1/4") < strings.Index(out, "  2/4") {
		t.Errorf("report not in order of the number of failed runs:\n%s", out)
	}
}

func TestNoResults(t *testing.T) {
	out, ok := tally(t, "go: cannot find main module\n")
	if ok || !strings.Contains(out, "no results") {
		t.Errorf("ok %v, report:\n%s", ok, out)
	}
}
