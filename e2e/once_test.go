package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/logpipe/logpipe/common/keys"
	"github.com/logpipe/logpipe/common/record"
	"github.com/logpipe/logpipe/devstack/proc"
	"github.com/logpipe/logpipe/devstack/stack"
)

// onceRun is the scenario of a user who appends lines to a file while the
// agent and transfer are killed with SIGKILL at arbitrary moments.
type onceRun struct {
	st       *stack.Stack
	topic    string
	index    string
	path     string
	agent    *restartable
	transfer *restartable
}

// restartable is a binary that a test kills with SIGKILL and starts again
// with the same arguments.
type restartable struct {
	bin  string
	args []string
	p    *proc.Process
}

// startRestartable starts one of the logpipe binaries (see binary) and waits
// until its metrics listener, on a port the kernel picks, is ready.
func startRestartable(tb testing.TB, name string, args ...string) *restartable {
	tb.Helper()
	r := &restartable{bin: binary(tb, name), args: append(args, "--metrics-addr", "127.0.0.1:0")}
	r.p = proc.Start(tb, r.bin, r.args...)
	waitReady(tb, name, r.p.Addr(tb, "metrics"))
	return r
}

// restart kills the process with SIGKILL, as a crash would, and starts it
// again at once.
func (r *restartable) restart(tb testing.TB) {
	tb.Helper()
	r.p.Kill()
	r.p = proc.Start(tb, r.bin, r.args...)
}

// onceLine is line i: all lines have the same length, so that line i
// starts at offset i*len(onceLine(0)).
func onceLine(i int) string { return fmt.Sprintf("once line %07d %s", i, strings.Repeat("x", 40)) }

// startOnce starts the agent (and transfer unless withoutTransfer) on a
// fresh stack of the given kind.
func startOnce(tb testing.TB, kind string, withoutTransfer bool, agentArgs ...string) *onceRun {
	tb.Helper()
	st := stack.New(tb, stack.Options{Backends: kind})
	r := &onceRun{st: st, topic: st.Topic("logs"), index: st.Index(index), path: filepath.Join(tb.TempDir(), "once.log")}
	appendLines(tb, r.path, nil)
	etcd := strings.Join(st.EtcdEndpoints(), ",")
	kafka := strings.Join(st.KafkaAddrs(), ",")
	const agentName = "once-node"
	etcdctl(tb, etcd, "put", keys.AgentConfig(agentName),
		fmt.Sprintf(`[{"path":%q,"job":"once","topic":%q,"from":"beginning"}]`, r.path, r.topic))
	r.agent = startRestartable(tb, "agent", append([]string{"--name", agentName, "--etcd-endpoints", etcd, "--kafka-brokers", kafka,
		"--state-dir", filepath.Join(filepath.Dir(r.path), "state")}, agentArgs...)...)
	if !withoutTransfer {
		r.transfer = startRestartable(tb, "transfer", "--kafka-brokers", kafka, "--kafka-topics", r.topic,
			"--dlq-topic", st.Topic("logs.dlq"), "--es-addresses", st.ESURL(), "--es-index", r.index)
	}
	return r
}

// write appends lines [0, n) over about d while the procs in kills are
// killed and restarted at random moments; it returns once all is written.
func (r *onceRun) write(tb testing.TB, n int, d time.Duration, kills map[*restartable]int) {
	tb.Helper()
	const step = 10 * time.Millisecond
	steps := int(d / step)
	perStep := (n + steps - 1) / steps
	at := map[int][]*restartable{} // step -> procs to kill then
	for p, k := range kills {
		for range k {
			s := 1 + rand.IntN(steps-1)
			at[s] = append(at[s], p)
		}
	}
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	next := 0
	for s := 0; next < n; s++ {
		var b strings.Builder
		for i := next; i < min(next+perStep, n); i++ {
			b.WriteString(onceLine(i))
			b.WriteByte('\n')
		}
		if _, err := f.WriteString(b.String()); err != nil {
			tb.Fatal(err)
		}
		next = min(next+perStep, n)
		for _, p := range at[s] {
			p.restart(tb) // SIGKILL, then start again at once
		}
		time.Sleep(step)
	}
}

// TestEffectivelyOnceAcrossKills: 30,000 lines appended over about 6 s
// while the agent is killed three times and transfer twice, at arbitrary
// moments: the index holds every line exactly once.
func TestEffectivelyOnceAcrossKills(t *testing.T) {
	stack.ForBackends(t, func(t *testing.T, kind string) {
		const n = 30000
		r := startOnce(t, kind, false)
		r.write(t, n, 6*time.Second, map[*restartable]int{r.agent: 3, r.transfer: 2})
		eventually(t, "every line indexed", func() error {
			c, err := refreshedCount(r.st.ESURL(), r.index)
			if err == nil && c < n {
				err = fmt.Errorf("%d of %d documents", c, n)
			}
			return err
		})
		// Lines resent by the agent and records read again by transfer
		// after its kills may still be on their way: let them arrive.
		time.Sleep(3 * time.Second)
		seen := make([]int, n)
		width := int64(len(onceLine(0)) + 1)
		const chunk = 5000
		for from := 0; from < n; from += chunk {
			q := fmt.Sprintf(`{"query":{"range":{"log.offset":{"gte":%d,"lt":%d}}},"size":%d}`,
				int64(from)*width, int64(from+chunk)*width, 2*chunk)
			msgs, err := esSearchMessages(r.st.ESURL(), r.index, q)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range msgs {
				i, err := strconv.Atoi(strings.Fields(m)[2])
				if err != nil || i < 0 || i >= n || m != onceLine(i) {
					t.Fatalf("unexpected document %q", m)
				}
				seen[i]++
			}
		}
		for i, c := range seen {
			if c != 1 {
				t.Errorf("line %d indexed %d times", i, c)
			}
		}
		if c, err := refreshedCount(r.st.ESURL(), r.index); err != nil || c != n {
			t.Errorf("_count = %d (%v), want %d", c, err, n)
		}
	})
}

// BenchmarkAgentKillDuplicates measures how many lines a killed agent
// sends to Kafka twice: 100,000 lines over 10 s, the agent killed with
// SIGKILL four times at random moments. It reports the records in Kafka
// beyond one per line, per line written (dups/line).
//
//	go test -run - -bench AgentKillDuplicates -benchtime 1x ./e2e/
func BenchmarkAgentKillDuplicates(b *testing.B) {
	const n = 100000
	var dups, total int
	for b.Loop() {
		r := startOnce(b, stack.Embedded, true)
		r.write(b, n, 10*time.Second, map[*restartable]int{r.agent: 4})
		counts := make([]int, n)
		deadline := time.Now().Add(120 * time.Second)
		cl, err := kgo.NewClient(kgo.SeedBrokers(r.st.KafkaAddrs()...), kgo.ConsumeTopics(r.topic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		if err != nil {
			b.Fatal(err)
		}
		distinct, records := 0, 0
		for distinct < n && time.Now().Before(deadline) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			fs := cl.PollFetches(ctx)
			cancel()
			fs.EachRecord(func(kr *kgo.Record) {
				rec, err := record.Decode(kr.Value)
				if err != nil {
					return
				}
				i, err := strconv.Atoi(strings.Fields(rec.Message)[2])
				if err != nil || i >= n {
					return
				}
				records++
				if counts[i] == 0 {
					distinct++
				}
				counts[i]++
			})
		}
		cl.Close()
		if distinct < n {
			b.Fatalf("%d of %d lines in Kafka", distinct, n)
		}
		dups += records - n
		total += n
		b.Logf("%d lines, %d records in Kafka: %d sent twice or more", n, records, records-n)
	}
	b.ReportMetric(float64(dups)/float64(total), "dups/line")
}

// refreshedCount refreshes index and counts its documents.
func refreshedCount(esURL, index string) (int, error) {
	var ignored map[string]any
	if err := esPost(esURL+"/"+index+"/_refresh", "", &ignored); err != nil {
		return 0, err
	}
	return esCount(esURL, index, "")
}

// esSearchMessages returns the messages of the documents query finds.
func esSearchMessages(esURL, index, query string) ([]string, error) {
	var body struct {
		Hits struct {
			Hits []struct {
				Source struct {
					Message string `json:"message"`
				} `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := esPost(esURL+"/"+index+"/_search", query, &body); err != nil {
		return nil, err
	}
	out := make([]string, len(body.Hits.Hits))
	for i, h := range body.Hits.Hits {
		out[i] = h.Source.Message
	}
	return out, nil
}
