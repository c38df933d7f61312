package harvest

import (
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/logpipe/logpipe/agent/internal/producer"
	"github.com/logpipe/logpipe/agent/internal/testkit"
	"github.com/logpipe/logpipe/common/collect"
)

// A copytruncate during a Kafka outage, the file written again past the
// offset the agent had reached: the truncation is noticed although records
// are in flight, the lines read before it reach Kafka (from memory: the
// file no longer has them), and the file is read again from its start, not
// from the old offset.
func TestTruncationDuringKafkaOutage(t *testing.T) {
	tests := map[string]struct {
		budget   int64 // bytes in flight; 0: the default
		failures bool  // keep Kafka away until the producer gave up on records
	}{
		// The reader waits for room in the producer when the file is
		// truncated; Kafka comes back before the producer gives up.
		"reader blocked": {budget: 8 << 10},
		// Every line is in flight; the producer gives up on them and they
		// are sent again once Kafka is back.
		"records failed": {failures: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			if tc.budget > 0 {
				e.stop()
				e.pcfg = func(c *producer.Config) { c.MaxInflightSize, c.MaxMessageBytes = tc.budget, int(tc.budget) }
				e.start()
			}
			path := e.path("t.log")
			testkit.Append(t, path, testkit.Numbered("pre", 0, 10, 60)...)
			e.mgr.Apply(collect.Config{entry(path)})
			e.waitLines("pre", 10)
			e.waitRead(path)

			if err := e.stack.StopKafka(); err != nil {
				t.Fatal(err)
			}
			const oldLines, newLines = 150, 400
			testkit.Append(t, path, testkit.Numbered("old", 0, oldLines, 200)...)
			waitFor(t, "lines in flight", func() bool { return e.prod.Stats().Inflight > 0 })
			if tc.failures {
				waitFor(t, "every line in flight", func() bool { return e.prod.Stats().Inflight == oldLines })
			}
			rotations := testutil.ToFloat64(e.opts.Metrics.Rotations)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path+".1", data, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
			testkit.Append(t, path, testkit.Numbered("new", 0, newLines, 200)...)
			if st, _ := os.Stat(path); st.Size() <= int64(len(data)) {
				t.Fatalf("rewritten file %d bytes, not past the old size %d", st.Size(), len(data))
			}
			if tc.failures {
				waitFor(t, "the producer to give up on records", func() bool { return e.prod.Stats().Failed > 0 })
				waitFor(t, "the truncation to be noticed", func() bool { return testutil.ToFloat64(e.opts.Metrics.Rotations) > rotations })
			}
			if err := e.stack.StartKafka(); err != nil {
				t.Fatal(err)
			}

			e.kafka.WaitFor(waitLimit, "the new lines", func(recs []testkit.Record) bool {
				_, distinct := testkit.Count(recs, "new")
				return distinct >= newLines
			})
			recs := e.kafka.ForPath(path)
			for _, r := range recs {
				tag, _, ok := testkit.Parse(r.Rec.Message)
				if !ok || (tag != "pre" || len(r.Rec.Message) != 60) && (tag != "old" && tag != "new" || len(r.Rec.Message) != 200) {
					t.Fatalf("record %q: not a line of the file", r.Rec.Message)
				}
			}
			// The old lines that were read before the truncation, all of
			// them when they were all in flight; the others are only in the
			// copy.
			_, distinct := testkit.Count(recs, "old")
			if tc.failures && distinct != oldLines {
				t.Fatalf("%d of the %d old lines in flight reached Kafka", distinct, oldLines)
			}
			dups, err := testkit.CheckLast(recs, "old", distinct)
			if err != nil {
				t.Fatal(err)
			}
			newDups, err := testkit.CheckLast(recs, "new", newLines)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d old lines in Kafka (%d duplicates), %d new (%d duplicates); the producer failed %d records",
				distinct, dups, newLines, newDups, e.prod.Stats().Failed)
		})
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
