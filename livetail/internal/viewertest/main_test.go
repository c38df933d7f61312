package viewertest

import (
	"os"
	"testing"

	"github.com/rcrowley/go-metrics"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// sarama's client registers go-metrics meters, whose arbiter goroutine
	// never stops; the producers here need no metrics.
	metrics.UseNilMetrics = true
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) {
		if build.dir != "" {
			os.RemoveAll(build.dir)
		}
	}))
}
