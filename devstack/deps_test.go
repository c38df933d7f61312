package main

import (
	"os/exec"
	"strings"
	"testing"
)

// binaries are the four commands that make build puts into bin/.
var binaries = []string{
	"github.com/logpipe/logpipe/agent",
	"github.com/logpipe/logpipe/transfer",
	"github.com/logpipe/logpipe/livetail",
	"github.com/logpipe/logpipe/devstack",
}

// TestBinariesLinkNoTesting: no package that a binary links imports the
// testing package, so that test-only helpers (devstack/stack, devstack/proc,
// the *test packages) stay out of what users run.
func TestBinariesLinkNoTesting(t *testing.T) {
	for _, pkg := range binaries {
		if bad := importersOfTesting(t, pkg); len(bad) > 0 {
			t.Errorf("%s links packages that import testing: %s", pkg, strings.Join(bad, ", "))
		}
	}
}

// importersOfTesting lists the packages linked into pkg's binary that
// import the testing package.
func importersOfTesting(tb testing.TB, pkg string) []string {
	tb.Helper()
	out, err := exec.Command("go", "list", "-deps", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, pkg).Output()
	if err != nil {
		tb.Fatalf("go list -deps %s: %v", pkg, err)
	}
	var bad []string
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		for _, imp := range fields[1:] {
			if imp == "testing" {
				bad = append(bad, fields[0])
			}
		}
	}
	return bad
}
