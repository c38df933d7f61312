package e2e

import (
	"testing"

	"github.com/logpipe/logpipe/devstack/proc"
)

// TestMain runs the tests, checks that they left no goroutine behind and
// removes the binaries they built.
func TestMain(m *testing.M) { proc.Main(m) }
