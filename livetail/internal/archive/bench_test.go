package archive

import (
	"context"
	"testing"
	"time"
)

// The cost of a request on OpenSearch (real backends only): searches and
// documents per request are reported beside the time.

// counter counts Inc calls.
type counter struct{ n int }

func (c *counter) Inc() { c.n++ }

// benchIndex indexes 12,000 records of job a (one file) on partition 0.
func benchIndex(b *testing.B) (*Archive, *counter, *counter) {
	ix, a := newIndex(b)
	docs := make([]doc, 12_000)
	for o := range docs {
		docs[o] = doc{topic: "logs", partition: 0, offset: int64(o), key: "a", value: agentRecord("a", "00000000000000b1", int64(o)*120, int64(o))}
	}
	ix.add(docs...)
	searches, found := &counter{}, &counter{}
	a.opts.Searches, a.opts.Docs = searches, found
	return a, searches, found
}

func report(b *testing.B, searches, found *counter) {
	b.ReportMetric(float64(searches.n)/float64(b.N), "searches/op")
	b.ReportMetric(float64(found.n)/float64(b.N), "docs/op")
}

// BenchmarkContext: a line and 50 either side.
func BenchmarkContext(b *testing.B) {
	a, searches, found := benchIndex(b)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		line, below, above, err := a.Context(ctx, "a", 0, int64(1000+i%10_000), 50, 50)
		if err != nil || line == nil || len(below) != 50 || len(above) != 50 {
			b.Fatalf("%v %d %d %v", line, len(below), len(above), err)
		}
	}
	report(b, searches, found)
}

// BenchmarkRange: a session's history past retention, 1,000 and 10,000
// lines (the engine's bound per session).
func BenchmarkRange(b *testing.B) {
	a, searches, found := benchIndex(b)
	for _, n := range []int{1000, 10_000} {
		b.Run(map[int]string{1000: "1000", 10_000: "10000"}[n], func(b *testing.B) {
			searches.n, found.n = 0, 0
			for b.Loop() {
				got, err := a.Range(context.Background(), []string{"a"}, 0, 0, 12_000, time.Time{}, n, false)
				if err != nil || len(got) != n {
					b.Fatalf("%d entries, %v", len(got), err)
				}
			}
			report(b, searches, found)
		})
	}
}
