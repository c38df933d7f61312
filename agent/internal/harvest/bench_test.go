package harvest

import (
	"strings"
	"testing"
	"time"

	"github.com/logpipe/logpipe/agent/internal/testkit"
	"github.com/logpipe/logpipe/common/collect"
)

// BenchmarkFileToKafka measures lines from a file to Kafka-acknowledged
// through a Manager, with the broker in this process.
func BenchmarkFileToKafka(b *testing.B) {
	e := newEnv(b)
	e.kafka.Close() // measure the agent alone
	const n = 200000
	b.SetBytes(int64(n * 200))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		path := e.path("bench" + string(rune('a'+i%26)) + strings.Repeat("z", i/26) + ".log")
		i++
		b.StopTimer()
		testkit.Append(b, path, testkit.Numbered("b", 0, n, 199)...)
		before := e.mgr.prod.Stats().Acked
		b.StartTimer()
		e.mgr.Apply(collect.Config{entry(path)})
		for e.mgr.prod.Stats().Acked < before+n {
			time.Sleep(time.Millisecond)
		}
		b.StopTimer()
		e.mgr.Apply(nil)
		b.StartTimer()
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "lines/s")
}
