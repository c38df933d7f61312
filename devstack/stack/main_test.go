package stack

import (
	"testing"

	"github.com/rcrowley/go-metrics"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// sarama's client metrics start a ticker goroutine that never stops;
	// the tests do not read them.
	metrics.UseNilMetrics = true
	goleak.VerifyTestMain(m)
}
