// Package realtest decides whether a test that starts Apache Kafka or
// OpenSearch in JVMs of its own runs, is skipped, or fails. It is the one
// place that reads LOGPIPE_SKIP_REAL, so that every such test, in every
// module (through stack.SkipReal), obeys the same rule:
//
//   - LOGPIPE_SKIP_REAL=1 skips the test, for quick iterations on other code,
//     unless LOGPIPE_TEST_REQUIRE_REAL=1 (set by scripts/with-real-backends,
//     hence by make test) asks for the real backends: then the skip variable
//     is ignored, and the test runs or fails, never skips.
//   - A test that runs fails at once, naming the Debian package, when java,
//     javac or mvn is missing.
package realtest

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// The environment variables the rule reads.
const (
	// EnvSkip, set to 1, skips the tests that start JVMs of their own.
	EnvSkip = "LOGPIPE_SKIP_REAL"
	// EnvRequire, set to 1, makes every test that asks for real backends
	// run or fail; it overrides EnvSkip.
	EnvRequire = "LOGPIPE_TEST_REQUIRE_REAL"
)

// tools are the commands a JVM start needs, and the Debian package of each.
var tools = []struct{ cmd, pkg string }{
	{"java", "openjdk-17-jdk-headless"},
	{"javac", "openjdk-17-jdk-headless"},
	{"mvn", "maven"},
}

// Verdict is what Decide says of a test.
type Verdict int

const (
	Run  Verdict = iota // run the test
	Skip                // skip it, with the message
	Fail                // fail it, with the message
)

// Decide applies the rule to an environment (getenv) and a PATH (lookPath).
// The message says why the test does not simply run: a skip, a failure, or
// (with Run) a skip variable that was ignored.
func Decide(getenv func(string) string, lookPath func(string) (string, error)) (Verdict, string) {
	note := ""
	if getenv(EnvSkip) == "1" {
		if getenv(EnvRequire) != "1" {
			return Skip, fmt.Sprintf("%s=1: not running JVMs", EnvSkip)
		}
		note = fmt.Sprintf("%s=1 ignored: %s=1 asks for the real backends", EnvSkip, EnvRequire)
	}
	for _, t := range tools {
		if _, err := lookPath(t.cmd); err != nil {
			return Fail, fmt.Sprintf("%s not found: `make test-deps` installs it (Debian package %s)", t.cmd, t.pkg)
		}
	}
	return Run, note
}

// Need applies the rule to tb, with the process's environment and PATH.
func Need(tb testing.TB) {
	tb.Helper()
	switch v, msg := Decide(os.Getenv, exec.LookPath); v {
	case Skip:
		tb.Skip(msg)
	case Fail:
		tb.Fatal(msg)
	default:
		if msg != "" {
			tb.Log(msg)
		}
	}
}
