package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/logpipe/logpipe/agent/internal/registry"
	"github.com/logpipe/logpipe/agent/internal/testkit"
	"github.com/logpipe/logpipe/common/keys"
	"github.com/logpipe/logpipe/devstack/proc"
	"github.com/logpipe/logpipe/devstack/stack"
)

// once checks that tag's lines [0, n) are in Kafka exactly once each, in
// file order, and returns their records in Kafka order.
func (w *world) once(tag string, n int) []testkit.Record {
	w.t.Helper()
	if dups := w.waitLines(tag, n, within); dups != 0 {
		w.t.Fatalf("%s: %d duplicates", tag, dups)
	}
	var out []testkit.Record
	for _, r := range w.kafka.Records() {
		if x, _, ok := testkit.Parse(r.Rec.Message); ok && x == tag {
			out = append(out, r)
		}
	}
	return out
}

// none checks that no line of tag is in Kafka.
func (w *world) none(tag string) {
	w.t.Helper()
	if total, _ := testkit.Count(w.kafka.Records(), tag); total != 0 {
		w.t.Fatalf("%d %q lines in Kafka, want none", total, tag)
	}
}

// waitFileRead waits until the status shows path read and acknowledged to
// its current size.
func (w *world) waitFileRead(name, path string) {
	w.t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		w.t.Fatal(err)
	}
	w.waitStatus(name, path+" read to its end", func(s statusView) bool {
		for _, f := range s.Files {
			if f.Path == path && f.Offset == fi.Size() {
				return true
			}
		}
		return false
	})
}

// The agent is stopped; the application writes 100 more lines; logrotate
// renames app.log to app.log.1 and the application writes 100 lines to a
// new app.log; the agent starts; 100 more lines are appended. The entry
// starts at the end (the default), which is for the files present when it
// was first applied: all 300 lines reach Kafka, once each, the rest of the
// old file before the new one.
func TestRotationWhileStopped(t *testing.T) {
	t.Parallel()
	stack.ForBackends(t, func(t *testing.T, kind string) {
		w := newWorldOn(t, stack.Options{Backends: kind})
		path := w.path("app.log")
		testkit.Append(t, path, testkit.Numbered("before", 0, 20, 80)...)
		w.put(keys.AgentConfig("node-r"), fmt.Sprintf(`[{"path":%q}]`, path))
		args := w.agentArgs("node-r")
		agent := startAgent(t, args...)
		w.waitFileRead("node-r", path)
		agent.Stop(t)

		testkit.Append(t, path, testkit.Numbered("old", 0, 100, 80)...)
		if err := os.Rename(path, path+".1"); err != nil {
			t.Fatal(err)
		}
		testkit.Append(t, path, testkit.Numbered("new", 0, 100, 80)...)
		startAgent(t, args...)
		testkit.Append(t, path, testkit.Numbered("new", 100, 200, 80)...)

		old, nw := w.once("old", 100), w.once("new", 200)
		w.none("before")
		for _, r := range append(old, nw...) {
			if r.Key != "app" || r.Rec.Log.File.Path != path {
				t.Fatalf("record key %q path %s, want app and %s", r.Key, r.Rec.Log.File.Path, path)
			}
		}
		if last, first := old[len(old)-1], nw[0]; last.Partition != first.Partition || last.Offset > first.Offset {
			t.Fatalf("the old file's last line at %d/%d, the new file's first at %d/%d", last.Partition, last.Offset, first.Partition, first.Offset)
		}
		t.Logf("%s: %d lines of app.log.1 and %d of the new app.log in Kafka, once each; 0 of the 20 from before the entry", kind, len(old), len(nw))
	})
}

// An agent stopped for more than a day (the registry's timestamps put in
// the past) starts while Kafka cannot be reached: it keeps every offset,
// and once Kafka answers, resumes where it was, neither skipping the
// lines written meanwhile nor sending the old ones again.
func TestDayLongGapWithKafkaDown(t *testing.T) {
	t.Parallel()
	stack.ForBackends(t, func(t *testing.T, kind string) {
		w := newWorldOn(t, stack.Options{Backends: kind})
		path := w.path("day.log")
		testkit.Append(t, path, testkit.Numbered("before", 0, 20, 80)...)
		w.put(keys.AgentConfig("node-d"), fmt.Sprintf(`[{"path":%q}]`, path))
		agent := startAgent(t, w.agentArgs("node-d")...)
		w.waitFileRead("node-d", path)
		testkit.Append(t, path, testkit.Numbered("day", 0, 50, 80)...)
		w.once("day", 50)
		w.waitFileRead("node-d", path)
		agent.Stop(t)
		read := size(t, path)

		regPath := filepath.Join(w.state, registry.FileName)
		ageRegistry(t, regPath, 30*time.Hour)
		testkit.Append(t, path, testkit.Numbered("day", 50, 100, 80)...)

		// Kafka's bootstrap address refuses connections until the relay
		// gets its target. Kafka's metadata sends clients to the broker's
		// own address from there on, so a relay with a target is Kafka as
		// it is: real backends are unreachable for an agent that starts,
		// without stopping the Kafka other tests share.
		gate := proc.NewRelay(t)
		args := w.agentArgs("node-d", "--kafka-brokers", gate.Addr(), "--save-interval", "20ms")
		agent = startAgent(t, args...)
		w.waitStatus("node-d", "the Kafka error", func(s statusView) bool {
			return len(s.Errors) > 0 && strings.Contains(s.Errors[0], "kafka")
		})
		time.Sleep(time.Second) // fifty saves of the registry
		if off := registryOffset(t, regPath, path); off != read {
			t.Fatalf("registry offset of %s is %d while Kafka is down, want %d", path, off, read)
		}
		gate.To(w.stack.KafkaAddrs()[0])
		w.once("day", 100)
		w.none("before")
		if v := agent.waitMetric(t, "agent_lines_acked_total", func(v float64) bool { return v >= 50 }); v != 50 {
			t.Fatalf("the agent sent %v lines after the gap, want the 50 written meanwhile", v)
		}
		t.Logf("%s: after a gap of 30 h and a start with Kafka down: 100 lines once each, offset kept", kind)
	})
}

// ageRegistry moves every timestamp in the registry file back by d, as if
// the agent had been stopped that long.
func ageRegistry(t testing.TB, path string, d time.Duration) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Version int                `json:"version"`
		Files   []registry.Entry   `json:"files"`
		Applied []registry.Applied `json:"applied"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Files) == 0 || len(f.Applied) == 0 {
		t.Fatalf("registry %s: %s", path, data)
	}
	for i := range f.Files {
		f.Files[i].Seen = f.Files[i].Seen.Add(-d)
	}
	for i := range f.Applied {
		f.Applied[i].At = f.Applied[i].At.Add(-d)
	}
	if data, err = json.Marshal(f); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// registryOffset is the offset the registry file holds for path (-1: none).
func registryOffset(t testing.TB, regPath, path string) int64 {
	t.Helper()
	data, err := os.ReadFile(regPath)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Files []registry.Entry `json:"files"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatalf("registry %s: %v", regPath, err)
	}
	for _, e := range f.Files {
		if e.Path == path {
			return e.Offset
		}
	}
	return -1
}

func size(t testing.TB, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
