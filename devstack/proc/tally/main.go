// Command tally reads the output of several runs of `go test -json`, one
// file per run, and lists every test that failed in at least one run, with
// the number of runs it failed in. make test-repeat runs it:
//
//	go run ./devstack/proc/tally test-output/repeat/run-*.json
//
// A package that failed with no failing test (its build, its TestMain, a
// leak check, a panic or the test timeout) is listed as the package alone.
// The exit status is 1 when anything failed.
package main

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// event is the part of a `go test -json` line that tally reads.
type event struct {
	Action  string
	Package string
	Test    string
}

// failure names what failed: a test of a package, or a package itself.
type failure struct {
	Package, Test string
}

func (f failure) String() string {
	if f.Test == "" {
		return f.Package + " (outside any test: build, TestMain, leak check, panic or timeout)"
	}
	return f.Package + " " + f.Test
}

// run is what one file says.
type run struct {
	failed   []failure
	packages int // packages that reported a result
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: tally RUN.json...")
		os.Exit(2)
	}
	var runs []run
	for _, path := range os.Args[1:] {
		f, err := os.Open(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "tally:", err)
			os.Exit(2)
		}
		r, err := read(f)
		f.Close()
		if err != nil {
			fmt.Fprintf(os.Stderr, "tally: %s: %v\n", path, err)
			os.Exit(2)
		}
		runs = append(runs, r)
	}
	if !report(os.Stdout, os.Args[1:], runs) {
		os.Exit(1)
	}
}

// read tallies one run. Lines that are not JSON events (a go command's own
// messages) are skipped.
func read(r io.Reader) (run, error) {
	var out run
	tests := map[failure]bool{}
	failedPkgs := map[string]bool{}
	withTest := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var e event
		if json.Unmarshal(sc.Bytes(), &e) != nil || e.Package == "" {
			continue
		}
		switch {
		case e.Test == "" && (e.Action == "pass" || e.Action == "fail" || e.Action == "skip"):
			out.packages++
			if e.Action == "fail" {
				failedPkgs[e.Package] = true
			}
		case e.Test != "" && e.Action == "fail":
			tests[failure{e.Package, e.Test}] = true
			withTest[e.Package] = true
		}
	}
	if err := sc.Err(); err != nil {
		return out, err
	}
	for f := range tests {
		out.failed = append(out.failed, f)
	}
	for p := range failedPkgs {
		if !withTest[p] {
			out.failed = append(out.failed, failure{Package: p})
		}
	}
	return out, nil
}

// report prints the runs' failures with counts and reports whether every
// run passed.
func report(w io.Writer, names []string, runs []run) bool {
	counts := map[failure]int{}
	failedRuns := 0
	for i, r := range runs {
		status := "passed"
		switch {
		case r.packages == 0:
			status = "no results (did go test run?)"
			failedRuns++
		case len(r.failed) > 0:
			status = fmt.Sprintf("%d failed", len(r.failed))
			failedRuns++
		}
		fmt.Fprintf(w, "run %d (%s): %d packages, %s\n", i+1, names[i], r.packages, status)
		for _, f := range r.failed {
			counts[f]++
		}
	}
	if failedRuns == 0 {
		fmt.Fprintf(w, "\nevery test passed in all %d runs\n", len(runs))
		return true
	}
	fs := make([]failure, 0, len(counts))
	for f := range counts {
		fs = append(fs, f)
	}
	slices.SortFunc(fs, func(a, b failure) int {
		return cmp.Or(cmp.Compare(counts[b], counts[a]), strings.Compare(a.String(), b.String()))
	})
	fmt.Fprintf(w, "\n%d of %d runs failed; failed at least once (runs failed in):\n", failedRuns, len(runs))
	for _, f := range fs {
		fmt.Fprintf(w, "  %d/%d  %s\n", counts[f], len(runs), f)
	}
	return false
}
