package real

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/logpipe/logpipe/devstack/internal/realtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// needJava decides, by the rule every test that starts JVMs follows (the
// one of stack.SkipReal, which this package cannot import), whether the
// test runs: LOGPIPE_SKIP_REAL=1 skips it unless LOGPIPE_TEST_REQUIRE_REAL=1,
// and a missing java, javac or mvn fails it.
func needJava(tb testing.TB) {
	tb.Helper()
	realtest.Need(tb)
}
