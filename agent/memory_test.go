package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/logpipe/logpipe/agent/internal/testkit"
	"github.com/logpipe/logpipe/common/keys"
	"github.com/logpipe/logpipe/devstack/stack"
)

// The agent's memory is bounded by bytes whatever the line length: 256 KiB
// lines, and then 48 KiB ones (far more of them than fit in the in-flight
// byte budget), read as fast as the agent can, keep its peak resident
// memory within what README.md states: 48 MiB + 2 × --max-inflight-bytes,
// plus 4 × the line length for a file of long lines.
func TestLongLinesMemory(t *testing.T) {
	t.Parallel()
	stack.ForBackends(t, func(t *testing.T, kind string) {
		w := newWorldOn(t, stack.Options{Backends: kind})
		p := w.path("trace.log")
		const (
			budget   = 16 << 20
			bigLines = 200  // of 256 KiB: 50 MiB
			midLines = 1500 // of 48 KiB: 70 MiB
		)
		for from := 0; from < bigLines; from += 20 {
			testkit.Append(t, p, testkit.Numbered("big", from, from+20, 256<<10)...)
		}
		w.put(keys.AgentConfig("node-m"), configJSON(entryJSON(p, "")))
		agent := startAgent(t, w.agentArgs("node-m", "--max-inflight-bytes", fmt.Sprint(budget))...)
		if dups := w.waitLines("big", bigLines, 120*time.Second); dups != 0 {
			t.Fatalf("%d duplicates of 256 KiB lines", dups)
		}
		_, peakBig := agent.rss()
		for from := 0; from < midLines; from += 100 {
			testkit.Append(t, p, testkit.Numbered("mid", from, from+100, 48<<10)...)
		}
		if dups := w.waitLines("mid", midLines, 120*time.Second); dups != 0 {
			t.Fatalf("%d duplicates of 48 KiB lines", dups)
		}
		cur, peak := agent.rss()
		t.Logf("%s: --max-inflight-bytes %d MiB: peak RSS %d MiB after %d lines of 256 KiB, %d MiB after %d more of 48 KiB (now %d MiB)",
			kind, budget>>20, peakBig>>20, bigLines, peak>>20, midLines, cur>>20)
		if limit := int64(48<<20 + 2*budget + 4*256<<10); peak > limit {
			t.Fatalf("peak RSS %d MiB, over the %d MiB that README.md states for --max-inflight-bytes %d MiB", peak>>20, limit>>20, budget>>20)
		}
	})
}
