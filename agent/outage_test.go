package main

import (
	"os"
	"testing"
	"time"

	"github.com/logpipe/logpipe/agent/internal/testkit"
	"github.com/logpipe/logpipe/common/keys"
	"github.com/logpipe/logpipe/devstack/stack"
)

// waitMetric waits until the agent's metric satisfies cond.
func (p *agentProc) waitMetric(t testing.TB, name string, cond func(float64) bool) float64 {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if v, ok := p.metric(name); ok && cond(v) {
			return v
		}
		if time.Now().After(deadline) {
			v, _ := p.metric(name)
			t.Fatalf("metric %s still %v after %v", name, v, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// logrotate's copytruncate while Kafka is down, the application writing
// at once more than the file had: every line the agent had read (and holds
// in flight, until Kafka failed them) reaches Kafka, their last copies in
// file order, and the file is read again from its start, not from the old
// offset. On real backends Kafka is a JVM of the test's own, stopped and
// started again.
func TestTruncationDuringKafkaOutage(t *testing.T) {
	t.Parallel()
	stack.ForBackends(t, func(t *testing.T, kind string) {
		w := newWorldOn(t, stack.Options{Backends: kind, Private: true})
		path := w.path("ct.log")
		w.put(keys.AgentConfig("node-t"), configJSON(entryJSON(path, "")))
		agent := startAgent(t, w.agentArgs("node-t")...)
		testkit.Append(t, path, testkit.Numbered("pre", 0, 10, 200)...)
		w.once("pre", 10)

		if err := w.stack.StopKafka(); err != nil {
			t.Fatal(err)
		}
		const oldLines, newLines = 500, 1000
		testkit.Append(t, path, testkit.Numbered("old", 0, oldLines, 200)...)
		agent.waitMetric(t, "agent_inflight_records", func(v float64) bool { return v == oldLines })
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
		agent.waitMetric(t, "agent_file_rotations_total", func(v float64) bool { return v > 0 })
		failed := agent.waitMetric(t, "agent_send_errors_total", func(v float64) bool { return v > 0 })
		if err := w.stack.StartKafka(); err != nil {
			t.Fatal(err)
		}

		w.kafka.WaitFor(within, "every new line", func(recs []testkit.Record) bool {
			_, distinct := testkit.Count(recs, "new")
			return distinct == newLines
		})
		recs := w.kafka.ForPath(path)
		for _, r := range recs {
			if tag, _, ok := testkit.Parse(r.Rec.Message); !ok || tag != "pre" && tag != "old" && tag != "new" || len(r.Rec.Message) != 200 {
				t.Fatalf("record %q is not a line of the file", r.Rec.Message)
			}
		}
		oldDups, err := testkit.CheckLast(recs, "old", oldLines)
		if err != nil {
			t.Fatal(err)
		}
		newDups, err := testkit.CheckLast(recs, "new", newLines)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d old lines (%d duplicates), %d new (%d duplicates); %v records failed during the outage and were sent again",
			kind, oldLines, oldDups, newLines, newDups, failed)
	})
}
