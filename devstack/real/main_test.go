package real

import (
	"os"
	"os/exec"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// skipEnv, set to 1, skips the tests that run JVMs, for quick iterations
// on other code. They run otherwise, and fail without Java and Maven.
const skipEnv = "LOGPIPE_SKIP_REAL"

// needJava skips the test under LOGPIPE_SKIP_REAL=1 and fails it when
// java, javac or mvn is missing.
func needJava(tb testing.TB) {
	tb.Helper()
	if os.Getenv(skipEnv) == "1" {
		tb.Skipf("%s=1: not running JVMs", skipEnv)
	}
	for _, c := range []struct{ cmd, pkg string }{{"java", "openjdk-17-jdk-headless"}, {"javac", "openjdk-17-jdk-headless"}, {"mvn", "maven"}} {
		if _, err := exec.LookPath(c.cmd); err != nil {
			tb.Fatalf("%s not found: `make test-deps` installs it (Debian package %s)", c.cmd, c.pkg)
		}
	}
}
