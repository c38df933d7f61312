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

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

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
	etcd     string // endpoints, comma-separated
	agent    *restartable
	transfer *restartable
}

// The names startOnce gives the agent and transfer's consumer group.
const (
	onceAgent = "once-node"
	onceGroup = "once-transfer"
)

// resendSaveDelay is the agent's --save-delay in the tests that are about
// resent lines. With the default (10 ms) a SIGKILL finds few lines that
// Kafka acknowledged and the agent had not yet saved, often none, and a
// run with no resend passes whether or not they would be deduplicated.
// With 300 ms, the saved offset lags the acknowledged one by a few hundred
// lines at these rates, and each kill leaves them to send again.
const resendSaveDelay = "300ms"

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
	r.etcd = strings.Join(st.EtcdEndpoints(), ",")
	kafka := strings.Join(st.KafkaAddrs(), ",")
	etcdctl(tb, r.etcd, "put", keys.AgentConfig(onceAgent),
		fmt.Sprintf(`[{"path":%q,"job":"once","topic":%q,"from":"beginning"}]`, r.path, r.topic))
	r.agent = startRestartable(tb, "agent", append([]string{"--name", onceAgent, "--etcd-endpoints", r.etcd, "--kafka-brokers", kafka,
		"--state-dir", filepath.Join(filepath.Dir(r.path), "state")}, agentArgs...)...)
	if !withoutTransfer {
		r.transfer = startRestartable(tb, "transfer", "--kafka-brokers", kafka, "--kafka-topics", r.topic, "--group", onceGroup,
			"--dlq-topic", st.Topic("logs.dlq"), "--es-addresses", st.ESURL(), "--es-index", r.index)
	}
	return r
}

// write appends lines [0, n) over about d while the procs in kills are
// killed and restarted at random moments, a proc killed k times once in
// each k-th of the run, so that no two of its kills fall together; it
// returns once all is written.
func (r *onceRun) write(tb testing.TB, n int, d time.Duration, kills map[*restartable]int) {
	tb.Helper()
	const step = 10 * time.Millisecond
	steps := int(d / step)
	perStep := (n + steps - 1) / steps
	at := map[int][]*restartable{} // step -> procs to kill then
	for p, k := range kills {
		for j := range k {
			from, to := 1+j*(steps-1)/k, 1+(j+1)*(steps-1)/k
			s := from + rand.IntN(to-from)
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
// moments: the index holds every line exactly once. The agent saves its
// offsets 300 ms after Kafka's acknowledgements (resendSaveDelay), so its
// kills send hundreds of lines again, and the test first checks that
// Kafka holds more records than lines: without resends it would prove
// nothing about their deduplication.
func TestEffectivelyOnceAcrossKills(t *testing.T) {
	stack.ForBackends(t, func(t *testing.T, kind string) {
		const n = 30000
		r := startOnce(t, kind, false, "--save-delay", resendSaveDelay)
		r.write(t, n, 6*time.Second, map[*restartable]int{r.agent: 3, r.transfer: 2})

		// The premise: once the agent has every line acknowledged, Kafka
		// holds all it will ever get, and more records than lines.
		eventually(t, "the agent's status showing every line acknowledged",
			agentCaughtUp(t, r.etcd, onceAgent, map[string]int64{r.path: size(t, r.path)}))
		copies, ends := kafkaCopies(t, r.st.KafkaAddrs(), r.topic, r.st.Partitions(), n)
		records, twice := 0, 0
		for i, c := range copies {
			if c == 0 {
				t.Fatalf("line %d is not in Kafka", i)
			}
			records += c
			if c > 1 {
				twice++
			}
		}
		if records <= n {
			t.Fatalf("Kafka holds %d records for %d lines: the agent's three kills sent no line again, so the test proves nothing", records, n)
		}

		// Every record read and indexed by transfer, across its kills:
		// its group has committed the end of every partition.
		eventually(t, "transfer's group committing the end of the topic", func() error {
			return groupCommitted(r.st.KafkaAddrs(), onceGroup, r.topic, ends)
		})
		seen := make([]int, n)
		width := int64(len(onceLine(0)) + 1)
		const chunk = 5000
		for from := 0; from < n; from += chunk {
			q := fmt.Sprintf(`{"query":{"range":{"log.offset":{"gte":%d,"lt":%d}}},"size":%d}`,
				int64(from)*width, int64(from+chunk)*width, 2*chunk)
			if err := esRefresh(r.st.ESURL(), r.index); err != nil {
				t.Fatal(err)
			}
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
		bad := 0
		for i, c := range seen {
			if c != 1 {
				if bad++; bad <= 10 {
					t.Errorf("line %d indexed %d times (%d records of it in Kafka)", i, c, copies[i])
				}
			}
		}
		if bad > 10 {
			t.Errorf("... %d lines in all not indexed exactly once", bad)
		}
		c, err := refreshedCount(r.st.ESURL(), r.index)
		if err != nil || c != n {
			t.Errorf("_count = %d (%v), want %d", c, err, n)
		}
		t.Logf("%s: %d lines, %d records in Kafka (%d lines sent twice or more), %d documents in the index", kind, n, records, twice, c)
	})
}

// kafkaCopies reads topic (of partitions partitions) from its start to its
// current end and counts the records of each of onceLine(0), ...,
// onceLine(n-1); a record of any other line fails the test. It also returns the end offset of each
// partition.
func kafkaCopies(tb testing.TB, brokers []string, topic string, partitions, n int) ([]int, map[int32]int64) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), within)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		tb.Fatal(err)
	}
	defer cl.Close()
	req := kmsg.NewPtrListOffsetsRequest()
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	for p := range int32(partitions) {
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition, rp.Timestamp = p, -1 // the end
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		tb.Fatalf("end offsets of %s: %v", topic, err)
	}
	ends := map[int32]int64{}
	left := 0 // partitions not yet read to their end
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				tb.Fatalf("end offset of %s/%d: %v", topic, p.Partition, err)
			}
			ends[p.Partition] = p.Offset
			if p.Offset > 0 {
				left++
			}
		}
	}
	copies := make([]int, n)
	for left > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			tb.Fatalf("reading %s to its end %v: %v", topic, ends, ctx.Err())
		}
		fs.EachError(func(t string, p int32, err error) { tb.Fatalf("reading %s/%d: %v", t, p, err) })
		fs.EachRecord(func(kr *kgo.Record) {
			rec, err := record.Decode(kr.Value)
			if err != nil {
				tb.Fatalf("record %s/%d@%d: %v", kr.Topic, kr.Partition, kr.Offset, err)
			}
			f := strings.Fields(rec.Message)
			i := -1
			if len(f) == 4 {
				i, _ = strconv.Atoi(f[2])
			}
			if i < 0 || i >= n || rec.Message != onceLine(i) {
				tb.Fatalf("record %s/%d@%d: unexpected message %q", kr.Topic, kr.Partition, kr.Offset, rec.Message)
			}
			copies[i]++
			if kr.Offset+1 == ends[kr.Partition] {
				left--
			}
		})
	}
	return copies, ends
}

// groupCommitted reports nil once group has committed, for each partition
// of topic, the end offset in ends.
func groupCommitted(brokers []string, group, topic string, ends map[int32]int64) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = group
	rt := kmsg.NewOffsetFetchRequestTopic()
	rt.Topic = topic
	for p := range ends {
		rt.Partitions = append(rt.Partitions, p)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("offsets of group %s: %w", group, err)
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return fmt.Errorf("offsets of group %s: %w", group, err)
	}
	got := map[int32]int64{}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			got[p.Partition] = p.Offset
		}
	}
	for p, end := range ends {
		if end > 0 && got[p] != end {
			return fmt.Errorf("partition %d committed at %d of %d", p, got[p], end)
		}
	}
	return nil
}

// BenchmarkAgentKillDuplicates measures how many lines a killed agent
// sends to Kafka twice: 100,000 lines over 10 s, the agent killed with
// SIGKILL four times at random moments. Once the agent's status shows every
// line acknowledged, it reads the topic to its end and reports the records
// beyond one per line, per line written (dups/line).
//
//	go test -run - -bench AgentKillDuplicates -benchtime 1x ./e2e/
func BenchmarkAgentKillDuplicates(b *testing.B) {
	const n = 100000
	var dups, total int
	for b.Loop() {
		r := startOnce(b, stack.Embedded, true)
		r.write(b, n, 10*time.Second, map[*restartable]int{r.agent: 4})
		eventually(b, "the agent's status showing every line acknowledged",
			agentCaughtUp(b, r.etcd, onceAgent, map[string]int64{r.path: size(b, r.path)}))
		copies, _ := kafkaCopies(b, r.st.KafkaAddrs(), r.topic, r.st.Partitions(), n)
		records := 0
		for i, c := range copies {
			if c == 0 {
				b.Fatalf("line %d is not in Kafka", i)
			}
			records += c
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
