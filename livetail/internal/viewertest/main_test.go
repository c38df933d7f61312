package viewertest

import (
	"testing"

	"github.com/rcrowley/go-metrics"

	"github.com/logpipe/logpipe/devstack/proc"
)

func TestMain(m *testing.M) {
	// sarama's client registers go-metrics meters, whose arbiter goroutine
	// never stops; the producers here need no metrics.
	metrics.UseNilMetrics = true
	proc.Main(m)
}
