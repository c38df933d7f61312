package stack

import "testing"

// A test that would start JVMs of its own, through New or SkipReal, is
// skipped under LOGPIPE_SKIP_REAL=1 before anything starts; with
// LOGPIPE_TEST_REQUIRE_REAL=1 as well (make test), SkipReal lets it run.
func TestSkipReal(t *testing.T) {
	t.Run("skip", func(t *testing.T) {
		t.Setenv(EnvSkipReal, "1")
		t.Setenv(EnvRequireReal, "")
		for name, start := range map[string]func(t *testing.T){
			"SkipReal":    func(t *testing.T) { SkipReal(t) },
			"New private": func(t *testing.T) { New(t, Options{Backends: Real, Private: true}) },
		} {
			ran := false
			t.Run(name, func(t *testing.T) {
				start(t)
				ran = true
			})
			if ran {
				t.Errorf("%s: the test ran on with %s=1", name, EnvSkipReal)
			}
		}
	})
	t.Run("required", func(t *testing.T) {
		t.Setenv(EnvSkipReal, "1")
		t.Setenv(EnvRequireReal, "1")
		ran := false
		t.Run("SkipReal", func(t *testing.T) {
			SkipReal(t) // fails here if java, javac or mvn is missing, as it must
			ran = true
		})
		if !ran {
			t.Errorf("%s=1 with %s=1: skipped", EnvSkipReal, EnvRequireReal)
		}
	})
}
