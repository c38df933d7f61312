package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/logpipe/logpipe/agent/internal/status"
	"github.com/logpipe/logpipe/agent/internal/testkit"
	"github.com/logpipe/logpipe/common/keys"
	"github.com/logpipe/logpipe/devstack/proc"
	"github.com/logpipe/logpipe/devstack/stack"
)

func TestMain(m *testing.M) { proc.Main(m) }

// within bounds the waits for the agent to do something: far more than it
// takes on an idle machine, so that a loaded one does not fail a test. No
// test measures speed with it.
const within = 2 * time.Minute

// agentBinary builds the agent once for the package's tests.
func agentBinary(tb testing.TB) string {
	tb.Helper()
	return proc.Build(tb, "github.com/logpipe/logpipe/agent")
}

// agentProc is a running agent process.
type agentProc struct {
	*proc.Process
	metrics string // address of /metrics, from its listening line
}

// startAgent runs the agent with the given flags (plus JSON logs and a
// metrics port the kernel picks) and waits until its diagnostics listener
// is up.
func startAgent(t testing.TB, args ...string) *agentProc {
	t.Helper()
	args = append([]string{"--log-format", "json", "--metrics-addr", "127.0.0.1:0"}, args...)
	p := proc.Start(t, agentBinary(t), args...)
	return &agentProc{Process: p, metrics: p.Addr(t, "metrics")}
}

// metric returns the value of a metric without labels from /metrics.
func (p *agentProc) metric(name string) (float64, bool) {
	resp, err := http.Get("http://" + p.metrics + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == name {
			v, err := strconv.ParseFloat(f[1], 64)
			return v, err == nil
		}
	}
	return 0, false
}

// rss returns the process's resident and peak resident memory in bytes.
func (p *agentProc) rss() (cur, peak int64) { return proc.RSS(p.Pid()) }

type world struct {
	t     testing.TB
	stack *stack.Stack
	etcd  *clientv3.Client
	kafka *testkit.Reader
	topic string // the agent's --kafka-topic, of this test's own on shared real backends
	dir   string
	state string
}

// newWorld starts etcd and an embedded Kafka for a test of the agent binary.
func newWorld(t testing.TB) *world {
	t.Helper()
	return newWorldOn(t, stack.Options{})
}

// newWorldOn starts etcd and the Kafka that opts ask for (opts.Backends:
// embedded or real; Private for a Kafka of the test's own).
func newWorldOn(t testing.TB, opts stack.Options) *world {
	t.Helper()
	opts.Without = []string{stack.ES}
	s := stack.New(t, opts)
	cli, err := clientv3.New(clientv3.Config{Endpoints: s.EtcdEndpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	topic := s.Topic("logs")
	return &world{
		t: t, stack: s, etcd: cli, topic: topic,
		kafka: testkit.NewReader(t, s.KafkaAddrs(), topic),
		dir:   t.TempDir(), state: t.TempDir(),
	}
}

func (w *world) path(name string) string { return filepath.Join(w.dir, name) }

func (w *world) agentArgs(name string, extra ...string) []string {
	return append([]string{
		"--name", name,
		"--etcd-endpoints", strings.Join(w.stack.EtcdEndpoints(), ","),
		"--kafka-brokers", strings.Join(w.stack.KafkaAddrs(), ","),
		"--kafka-topic", w.topic,
		"--state-dir", w.state,
		"--scan-interval", "200ms",
		"--poll-interval", "50ms",
		"--status-interval", "200ms",
	}, extra...)
}

func (w *world) put(key, value string) int64 {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	resp, err := w.etcd.Put(ctx, key, value)
	if err != nil {
		w.t.Fatal(err)
	}
	return resp.Header.Revision
}

// statusOf reads the agent's status key.
func (w *world) statusOf(name string) (statusView, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	resp, err := w.etcd.Get(ctx, keys.AgentStatus(name))
	if err != nil || len(resp.Kvs) == 0 {
		return statusView{}, false
	}
	var st statusView
	if err := json.Unmarshal(resp.Kvs[0].Value, &st); err != nil {
		w.t.Fatalf("status %q: %v", resp.Kvs[0].Value, err)
	}
	if resp.Kvs[0].Lease == 0 {
		w.t.Fatal("status written without a lease")
	}
	return st, true
}

type statusView struct {
	status.Status
	Files []struct {
		Path   string `json:"path"`
		Job    string `json:"job"`
		Offset int64  `json:"offset"`
		Size   int64  `json:"size"`
		Inode  uint64 `json:"inode"`
	} `json:"files"`
}

func (w *world) waitStatus(name, what string, cond func(statusView) bool) statusView {
	w.t.Helper()
	deadline := time.Now().Add(within)
	for {
		st, ok := w.statusOf(name)
		if ok && cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("status of %s never showed %s; last: %+v", name, what, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitLines waits for tag's lines [0, n) and checks them; it returns the
// number of duplicates.
func (w *world) waitLines(tag string, n int, timeout time.Duration) int {
	w.t.Helper()
	recs := w.kafka.WaitFor(timeout, fmt.Sprintf("%d %q lines", n, tag), func(recs []testkit.Record) bool {
		_, distinct := testkit.Count(recs, tag)
		return distinct >= n
	})
	dups, err := testkit.Check(recs, tag, n)
	if err != nil {
		w.t.Fatal(err)
	}
	return dups
}

func configJSON(entries ...string) string { return "[" + strings.Join(entries, ",") + "]" }

func entryJSON(path string, extra string) string {
	s := fmt.Sprintf(`{"path":%q,"from":"beginning"`, path)
	if extra != "" {
		s += "," + extra
	}
	return s + "}"
}

func TestHotReload(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	a, b, c := w.path("a.log"), w.path("b.log"), w.path("c.log")
	for _, p := range []string{a, b, c} {
		testkit.Append(t, p, testkit.Numbered(strings.TrimSuffix(filepath.Base(p), ".log"), 0, 100, 60)...)
	}
	rev1 := w.put(keys.AgentConfig("node-a"), configJSON(
		entryJSON(a, `"job":"web-1","labels":{"env":"dev"}`),
		entryJSON(b, `"topic":"logs"`),
	))
	agent := startAgent(t, w.agentArgs("node-a")...)

	w.waitLines("a", 100, within)
	w.waitLines("b", 100, within)
	for _, r := range w.kafka.ForPath(a) {
		if r.Key != "web-1" || r.Rec.Job != "web-1" || r.Rec.Labels["env"] != "dev" || r.Rec.Agent.Name != "node-a" || r.Rec.Host.Name == "" {
			t.Fatalf("record of a.log: key %q %+v", r.Key, r.Rec)
		}
	}
	st := w.waitStatus("node-a", "the first config", func(s statusView) bool {
		return s.ConfigRevision == rev1 && len(s.Files) == 2 && s.Files[1].Offset == s.Files[1].Size
	})
	if st.Files[0].Path != a || st.Files[0].Job != "web-1" || st.Files[0].Inode == 0 {
		t.Fatalf("status files %+v", st.Files)
	}

	// Changed config: a removed, b unchanged, c added.
	rev2 := w.put(keys.AgentConfig("node-a"), configJSON(entryJSON(b, `"topic":"logs"`), entryJSON(c, "")))
	w.waitStatus("node-a", "the second config", func(s statusView) bool { return s.ConfigRevision == rev2 })
	testkit.Append(t, a, testkit.Numbered("a", 100, 200, 60)...)
	testkit.Append(t, b, testkit.Numbered("b", 100, 200, 60)...)
	w.waitLines("c", 100, within)
	if dups := w.waitLines("b", 200, within); dups != 0 {
		t.Fatalf("unchanged entry repeated %d lines across a reload", dups)
	}
	// b's lines, appended after a's, have arrived; a reader of a.log left
	// running would be woken by the same notification, or at the latest
	// by its poll (--poll-interval 50ms) or the scan (--scan-interval
	// 200ms): wait past both before looking.
	time.Sleep(500 * time.Millisecond)
	if total, _ := testkit.Count(w.kafka.Records(), "a"); total != 100 {
		t.Fatalf("removed entry: %d lines in Kafka, want 100", total)
	}

	// A broken config keeps the last good one running and is reported.
	bad := w.put(keys.AgentConfig("node-a"), `[{"path":""}]`)
	st = w.waitStatus("node-a", "the config error", func(s statusView) bool { return len(s.Errors) > 0 })
	if st.ConfigRevision != rev2 || !strings.Contains(st.Errors[0], "path is empty") || !strings.Contains(st.Errors[0], strconv.FormatInt(bad, 10)) {
		t.Fatalf("status after a bad config: revision %d errors %q", st.ConfigRevision, st.Errors)
	}
	testkit.Append(t, c, testkit.Numbered("c", 100, 150, 60)...)
	if dups := w.waitLines("c", 150, within); dups != 0 {
		t.Fatalf("%d duplicates", dups)
	}
	if !strings.Contains(agent.Output(), "path is empty") {
		t.Fatal("the config error is not in the log")
	}

	// A fixed config clears the error; a clean stop removes the status.
	rev3 := w.put(keys.AgentConfig("node-a"), configJSON(entryJSON(c, "")))
	w.waitStatus("node-a", "the fixed config", func(s statusView) bool { return s.ConfigRevision == rev3 && len(s.Errors) == 0 })
	if v, ok := agent.metric("agent_files_tailed"); !ok || v != 1 {
		t.Fatalf("agent_files_tailed %v %v", v, ok)
	}
	// Four configs applied: still one inotify instance for the whole agent.
	if n := testkit.InotifyFDs(t, agent.Pid()); n != 1 {
		t.Errorf("the agent holds %d inotify instances after four configs; want 1", n)
	}
	if code := agent.Stop(t); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	if _, ok := w.statusOf("node-a"); ok {
		t.Fatal("status key still there after a clean stop")
	}
}

func TestConfigWatchSurvivesEtcdOutage(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	p := w.path("e.log")
	testkit.Append(t, p, testkit.Numbered("e", 0, 10, 0)...)
	w.put(keys.AgentConfig("node-e"), configJSON(entryJSON(p, "")))
	startAgent(t, w.agentArgs("node-e")...)
	w.waitLines("e", 10, within)
	if err := w.stack.StopEtcd(); err != nil {
		t.Fatal(err)
	}
	testkit.Append(t, p, testkit.Numbered("e", 10, 20, 0)...) // reading goes on without etcd
	w.waitLines("e", 20, within)
	time.Sleep(time.Second)
	if err := w.stack.StartEtcd(); err != nil {
		t.Fatal(err)
	}
	q := w.path("f.log")
	testkit.Append(t, q, testkit.Numbered("f", 0, 10, 0)...)
	rev := w.put(keys.AgentConfig("node-e"), configJSON(entryJSON(p, ""), entryJSON(q, "")))
	w.waitLines("f", 10, within)
	w.waitStatus("node-e", "the config after the outage", func(s statusView) bool { return s.ConfigRevision == rev })
}

// 100,000 lines written while the agent is killed with SIGKILL every
// second and started again: every line reaches Kafka, in file order, and
// the lines sent twice stay within what the agent promises.
//
// The bound. After a crash the agent reads again from the offset it last
// saved, so a kill sends again (a) the records in flight, which Kafka may
// have stored without the agent hearing of it: at most
// --max-inflight-records (inflightLimit here) for all files together; and
// (b) the lines Kafka acknowledged since the last save. The registry is
// saved --save-delay (10 ms) after acknowledgements, plus the time of one
// atomic write, and every --save-interval (250 ms) regardless, so (b) is
// what the agent had acknowledged within a few tens of milliseconds; we
// allow a whole second of the writers' output for it (oneSecond: 2 files
// of 10,000 lines/s, an upper bound of their rate since they sleep 50 ms
// per 500 lines), ample on a loaded machine. So the duplicates of the
// run are at most kills × (inflightLimit + oneSecond). An agent that read
// whole files again at a restart would instead send again everything
// written so far, about 20,000 × k lines at the k-th kill, which is past
// the bound from the second kill on, and the test wants at least three.
func TestAtLeastOnceUnderSIGKILL(t *testing.T) {
	t.Parallel()
	stack.ForBackends(t, func(t *testing.T, kind string) {
		w := newWorldOn(t, stack.Options{Backends: kind})
		const files, perFile = 2, 50000
		const inflightLimit, oneSecond = 1000, files * 10000
		paths := []string{w.path("k0.log"), w.path("k1.log")}
		w.put(keys.AgentConfig("node-k"), configJSON(entryJSON(paths[0], ""), entryJSON(paths[1], "")))
		args := w.agentArgs("node-k", "--max-inflight-records", strconv.Itoa(inflightLimit))
		agent := startAgent(t, args...)

		// Writers: 100,000 lines of 200 bytes, 500 lines every 50 ms per file.
		var wg sync.WaitGroup
		writing := make(chan struct{})
		for i := range files {
			wg.Go(func() {
				tag := fmt.Sprintf("k%d", i)
				for from := 0; from < perFile; from += 500 {
					testkit.Append(t, paths[i], testkit.Numbered(tag, from, from+500, 199)...)
					time.Sleep(50 * time.Millisecond)
				}
			})
		}
		go func() { wg.Wait(); close(writing) }()

		kills := 0
		for done := false; !done; {
			select {
			case <-writing:
				done = true
			case <-time.After(time.Second):
			}
			if !done {
				agent.Kill()
				kills++
				agent = startAgent(t, args...)
			}
		}
		if kills < 3 {
			t.Fatalf("only %d kills happened while writing", kills)
		}
		allDups := 0
		for i := range files {
			dups := w.waitLines(fmt.Sprintf("k%d", i), perFile, 2*within)
			total, _ := testkit.Count(w.kafka.Records(), fmt.Sprintf("k%d", i))
			t.Logf("%s: file %d: %d lines, %d records in Kafka, %d duplicates after %d SIGKILLs", kind, i, perFile, total, dups, kills)
			allDups += dups
		}
		if bound := kills * (inflightLimit + oneSecond); allDups > bound {
			t.Errorf("%d lines sent twice after %d SIGKILLs, more than the agent's promise allows: %d × (%d in flight + %d read in a second) = %d",
				allDups, kills, kills, inflightLimit, oneSecond, bound)
		}
	})
}

func TestKafkaOutageBoundedMemory(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	p := w.path("o.log")
	w.put(keys.AgentConfig("node-o"), configJSON(entryJSON(p, "")))
	agent := startAgent(t, w.agentArgs("node-o", "--max-inflight-bytes", "1MiB")...)
	testkit.Append(t, p, testkit.Numbered("o", 0, 1000, 200)...)
	w.waitLines("o", 1000, within)
	_, base := agent.rss()

	if err := w.stack.StopKafka(); err != nil {
		t.Fatal(err)
	}
	// 20 MiB written while Kafka is away, far more than the in-flight limit.
	const total = 1000 + 10*10000
	for from := 1000; from < total; from += 10000 {
		testkit.Append(t, p, testkit.Numbered("o", from, from+10000, 200)...)
	}
	maxInflight := 0.0
	for range 20 {
		if v, ok := agent.metric("agent_inflight_bytes"); ok {
			maxInflight = max(maxInflight, v)
		}
		time.Sleep(150 * time.Millisecond)
	}
	st := w.waitStatus("node-o", "the Kafka error", func(s statusView) bool { return len(s.Errors) > 0 })
	if !slices.ContainsFunc(st.Errors, func(e string) bool { return strings.Contains(strings.ToLower(e), "kafka") }) {
		t.Fatalf("status errors during the outage name no Kafka failure: %q", st.Errors)
	}
	cur, peak := agent.rss()
	t.Logf("during the outage: RSS %d MiB (peak %d MiB, before %d MiB), in flight at most %.1f MiB", cur>>20, peak>>20, base>>20, maxInflight/(1<<20))
	if maxInflight > 1<<20 {
		t.Fatalf("%.0f bytes in flight, limit 1 MiB", maxInflight)
	}
	if peak > base+40<<20 {
		t.Fatalf("peak RSS %d MiB grew by more than 40 MiB over %d MiB with 20 MiB of file waiting", peak>>20, base>>20)
	}
	if err := w.stack.StartKafka(); err != nil {
		t.Fatal(err)
	}
	// Every line, their last copies in file order, the first copies not
	// necessarily so: while Kafka is away, sarama fails the records it
	// holds one by one ("circuit breaker is open"), and when Kafka comes
	// back before it is through them, later records go out while the
	// earlier ones wait; the agent then sends again from the first failed
	// one on.
	recs := w.kafka.WaitFor(2*within, fmt.Sprintf("%d o lines", total), func(recs []testkit.Record) bool {
		_, distinct := testkit.Count(recs, "o")
		return distinct >= total
	})
	dups, err := testkit.CheckLast(recs, "o", total)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after the outage: %d lines, %d duplicates", total, dups)
	w.waitStatus("node-o", "no errors after the outage", func(s statusView) bool { return len(s.Errors) == 0 })
}

func TestFlags(t *testing.T) {
	tests := map[string]struct {
		args []string
		code int
		want string
	}{
		"help":           {args: []string{"--help"}, code: 0, want: "--max-line-bytes"},
		"bad size":       {args: []string{"--max-line-bytes", "lots"}, code: 2, want: "lots"},
		"bad name":       {args: []string{"--name", "a/b"}, code: 2, want: `"a/b"`},
		"bad duration":   {args: []string{"--poll-interval", "0s"}, code: 2, want: "poll-interval"},
		"bad codec":      {args: []string{"--kafka-compression", "brotli"}, code: 2, want: "brotli"},
		"unknown flag":   {args: []string{"--nope"}, code: 2, want: "nope"},
		"positional":     {args: []string{"extra"}, code: 2, want: "extra"},
		"small inflight": {args: []string{"--max-inflight-bytes", "1KiB"}, code: 2, want: "max-inflight-bytes"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(agentBinary(t), tc.args...)
			out, _ := cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code != tc.code {
				t.Fatalf("exit %d, want %d: %s", code, tc.code, out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Fatalf("output %q does not name %q", out, tc.want)
			}
			if tc.code == 2 && strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
				t.Fatalf("error is not one line: %q", out)
			}
		})
	}
}
