package backends

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

// startStack starts a stack for a test and stops it when the test ends.
func startStack(tb testing.TB, opts Options) *Stack {
	tb.Helper()
	s, err := Start(tb.Context(), opts)
	if err != nil {
		tb.Fatalf("starting the backends: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("stopping the backends: %v", err)
		}
	})
	return s
}
