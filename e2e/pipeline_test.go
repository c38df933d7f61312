package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/logpipe/logpipe/common/keys"
	"github.com/logpipe/logpipe/devstack/proc"
	"github.com/logpipe/logpipe/devstack/stack"
)

// index is transfer's default data stream, which make run's stack writes to.
const index = "logs-logpipe-default"

// TestPipeline runs the real agent, transfer and livetail against devstack's
// backends, embedded and real: lines appended to files reach the index and a
// WebSocket client, with an etcdctl reconfiguration in the middle; then each
// service is killed with SIGKILL once and restarted. The index ends with
// every line exactly once, and the client, resuming by cursor, has every
// line once and in order.
func TestPipeline(t *testing.T) {
	stack.ForBackends(t, testPipeline)
}

func testPipeline(t *testing.T, kind string) {
	st := stack.New(t, stack.Options{Backends: kind})
	etcd := strings.Join(st.EtcdEndpoints(), ",")
	kafka := strings.Join(st.KafkaAddrs(), ",")
	// The test's own names: on the shared real backends, other tests
	// write next to it.
	topic, dlq, esIndex := st.Topic("logs"), st.Topic("logs.dlq"), st.Index(index)
	group := st.Topic("logpipe-transfer") // a consumer group, not a topic
	dir := t.TempDir()
	logA, logB := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")
	appendLines(t, logA, nil)
	appendLines(t, logB, nil)

	const agentName = "e2e-node"
	cfgKey := keys.AgentConfig(agentName)
	etcdctl(t, etcd, "put", cfgKey, fmt.Sprintf(`[{"path":%q,"job":"e2e-a","labels":{"env":"test"},"from":"beginning"}]`, logA))

	stateDir := filepath.Join(dir, "state")
	agentArgs := []string{"--name", agentName, "--etcd-endpoints", etcd, "--kafka-brokers", kafka,
		"--kafka-topic", topic, "--state-dir", stateDir, "--metrics-addr", "127.0.0.1:0"}
	transferArgs := []string{"--kafka-brokers", kafka, "--kafka-topics", topic, "--dlq-topic", dlq,
		"--group", group, "--es-addresses", st.ESURL(), "--es-index", esIndex, "--metrics-addr", "127.0.0.1:0"}
	// A client buffer larger than all the lines of the test: however slowly
	// a loaded machine lets the client read, it is never a slow client
	// whose lines are dropped (the livetail tests cover that).
	livetailArgs := []string{"--kafka-brokers", kafka, "--kafka-topic", topic,
		"--listen", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--client-buffer", "100000"}
	agent := proc.Start(t, binary(t, "agent"), agentArgs...)
	transfer := proc.Start(t, binary(t, "transfer"), transferArgs...)
	livetail := proc.Start(t, binary(t, "livetail"), livetailArgs...)
	waitReady(t, "agent", agent.Addr(t, "metrics"))
	waitReady(t, "transfer", transfer.Addr(t, "metrics"))
	waitReady(t, "livetail", livetail.Addr(t, "http"))

	// The client reaches livetail through a relay, so that it keeps one
	// address while livetail restarts on another port, as a browser page
	// keeps its URL.
	relay := proc.NewRelay(t)
	relay.To(livetail.Addr(t, "http"))
	ctx, cancel := context.WithCancel(context.Background())
	client := &tailClient{addr: relay.Addr(), job: "e2e-a"}
	var wg sync.WaitGroup
	wg.Go(func() { client.run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })

	var wantA, wantB []string
	write := func(path string, want *[]string, prefix string, n int) {
		lines := make([]string, n)
		for i := range lines {
			lines[i] = fmt.Sprintf("%s line %05d", prefix, len(*want)+i)
		}
		appendLines(t, path, lines)
		*want = append(*want, lines...)
	}
	indexed := func(job string, want []string) func() error {
		return func() error {
			got, err := esMessages(st.ESURL(), esIndex, job)
			if err != nil {
				return err
			}
			if len(got) < len(want) {
				return fmt.Errorf("%d of %d documents of %s", len(got), len(want), job)
			}
			return nil
		}
	}

	// 1. Lines reach the index and the client.
	write(logA, &wantA, "a", 500)
	eventually(t, "first lines indexed", indexed("e2e-a", wantA))

	// 2. Reconfigure with Debian's etcdctl: b.log is added, a.log keeps going.
	etcdctl(t, etcd, "put", cfgKey, fmt.Sprintf(
		`[{"path":%q,"job":"e2e-a","labels":{"env":"test"},"from":"beginning"},{"path":%q,"job":"e2e-b","from":"beginning"}]`, logA, logB))
	write(logB, &wantB, "b", 300)
	write(logA, &wantA, "a", 300)
	eventually(t, "lines of the added file indexed", indexed("e2e-b", wantB))

	// 3. transfer dies mid-stream.
	write(logA, &wantA, "a", 1000)
	transfer.Kill()
	transfer = proc.Start(t, binary(t, "transfer"), transferArgs...)
	write(logB, &wantB, "b", 300)

	// 4. livetail dies under the client, which resumes by cursor.
	relay.To("")
	livetail.Kill()
	livetail = proc.Start(t, binary(t, "livetail"), livetailArgs...)
	relay.To(livetail.Addr(t, "http"))
	write(logA, &wantA, "a", 500)

	// 5. The agent dies once what it read is acknowledged and its offsets
	// saved, so no line is sent twice (a kill before that is at-least-once:
	// the agent's own tests count those duplicates).
	sizes := map[string]int64{logA: size(t, logA), logB: size(t, logB)}
	eventually(t, "agent caught up", agentCaughtUp(t, etcd, agentName, sizes))
	eventually(t, "agent's offsets saved", offsetsSaved(stateDir, sizes))
	agent.Kill()
	agent = proc.Start(t, binary(t, "agent"), agentArgs...)
	write(logA, &wantA, "a", 400)
	write(logB, &wantB, "b", 200)

	// Every line exactly once in the index, in order per file.
	eventually(t, "every line indexed", indexed("e2e-a", wantA))
	eventually(t, "every line indexed", indexed("e2e-b", wantB))
	// Whatever else was written is searchable too, duplicates included.
	if err := esRefresh(st.ESURL(), esIndex); err != nil {
		t.Fatal(err)
	}
	for job, want := range map[string][]string{"e2e-a": wantA, "e2e-b": wantB} {
		got, err := esMessages(st.ESURL(), esIndex, job)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("index, job %s: %d documents, want %d, first difference %s", job, len(got), len(want), firstDiff(got, want))
		}
	}
	total, err := esCount(st.ESURL(), esIndex, "")
	if err != nil {
		t.Fatal(err)
	}
	if total != len(wantA)+len(wantB) {
		t.Errorf("_count = %d, want %d", total, len(wantA)+len(wantB))
	}

	// Every line of job e2e-a once, in order, at the client.
	eventually(t, "client has every line", func() error {
		if got, _, _ := client.snapshot(); len(got) < len(wantA) {
			return fmt.Errorf("client has %d of %d lines%s, first difference %s; %s; livetail: %s", len(got), len(wantA),
				client.report(), firstDiff(got, wantA), client.state(), livetailCounters(livetail.Addr(t, "metrics")))
		}
		return nil
	})
	got, dups, reconnects := client.snapshot()
	if r := client.report(); r != "" {
		t.Errorf("client%s", r)
	}
	if !slices.Equal(got, wantA) {
		t.Errorf("client: %d lines, want %d, first difference %s", len(got), len(wantA), firstDiff(got, wantA))
	}
	if dups != 0 {
		t.Errorf("client saw %d duplicate offsets after resuming by cursor", dups)
	}
	if reconnects == 0 {
		t.Errorf("the client never reconnected, but livetail was restarted under it")
	}
	t.Logf("indexed %d lines; client got %d lines over %d reconnects", total, len(got), reconnects)

	for _, p := range []*proc.Process{agent, transfer, livetail} {
		if code := p.Stop(t); code != 0 {
			t.Errorf("%s exited %d after SIGTERM", p.Name(), code)
		}
	}
}

// livetailCounters names livetail's session counters, for a failure
// message: what it sent, skipped and holds queued.
func livetailCounters(addr string) string {
	m, err := scrape(addr)
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, name := range []string{"livetail_connections", "livetail_entries_sent_total",
		"livetail_resent_lines_skipped_total", "livetail_entries_dropped_total", "livetail_pending_messages",
		"livetail_records_consumed_total", "livetail_history_reads"} {
		fmt.Fprintf(&b, "%s=%g ", name, m[name])
	}
	return strings.TrimSpace(b.String())
}

// offsetsSaved reports nil once the agent's offset registry file in
// stateDir has every file at the given size.
func offsetsSaved(stateDir string, sizes map[string]int64) func() error {
	return func() error {
		b, err := os.ReadFile(filepath.Join(stateDir, "offsets.json"))
		if err != nil {
			return err
		}
		var reg struct {
			Files []struct {
				Path   string `json:"path"`
				Offset int64  `json:"offset"`
			} `json:"files"`
		}
		if err := json.Unmarshal(b, &reg); err != nil {
			return fmt.Errorf("offsets.json %q: %w", b, err)
		}
		saved := map[string]int64{}
		for _, f := range reg.Files {
			saved[f.Path] = max(saved[f.Path], f.Offset)
		}
		for path, want := range sizes {
			if saved[path] < want {
				return fmt.Errorf("%s saved at offset %d of %d", path, saved[path], want)
			}
		}
		return nil
	}
}

// agentCaughtUp reports nil once the agent's status in etcd shows every file
// acknowledged up to the given size.
func agentCaughtUp(t testing.TB, etcd, name string, sizes map[string]int64) func() error {
	return func() error {
		out := etcdctl(t, etcd, "get", "--print-value-only", keys.AgentStatus(name))
		var st struct {
			Files []struct {
				Path   string `json:"path"`
				Offset int64  `json:"offset"`
			} `json:"files"`
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			return fmt.Errorf("status %q: %w", out, err)
		}
		for path, want := range sizes {
			found := false
			for _, f := range st.Files {
				if f.Path == path {
					found = true
					if f.Offset < want {
						return fmt.Errorf("%s acknowledged to %d of %d", path, f.Offset, want)
					}
				}
			}
			if !found {
				return fmt.Errorf("%s not in the status", path)
			}
		}
		return nil
	}
}

func size(t testing.TB, path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func firstDiff(got, want []string) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("at %d: got %q want %q", i, got[i], want[i])
		}
	}
	if len(got) != len(want) {
		return fmt.Sprintf("at %d (one list ends)", min(len(got), len(want)))
	}
	return "none"
}
