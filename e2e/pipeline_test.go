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
	"time"

	"github.com/logpipe/logpipe/common/keys"
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

	agentAddr, transferAddr, liveAddr, liveMetricsAddr := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	agent := startProc(t, "agent", "--name", agentName, "--etcd-endpoints", etcd, "--kafka-brokers", kafka,
		"--kafka-topic", topic, "--state-dir", filepath.Join(dir, "state"), "--metrics-addr", agentAddr)
	transfer := startProc(t, "transfer", "--kafka-brokers", kafka, "--kafka-topics", topic, "--dlq-topic", dlq,
		"--group", group, "--es-addresses", st.ESURL(), "--es-index", esIndex, "--metrics-addr", transferAddr)
	// livetail drops lines for a client whose queue (--client-buffer, 1,024
	// by default) is full, and announces them. One fetch from Apache Kafka
	// can bring more lines of a job than that at once: the test writes
	// bursts of up to 1,000 lines, and a restarted livetail reads its way
	// to the end of the partition while the resumed client is already
	// live (a dropped frame of 29 lines was seen so). A queue longer than
	// all of the test's lines keeps the test about restarts and resuming;
	// livetail's TestSlowClient is the one about drops.
	livetail := startProc(t, "livetail", "--kafka-brokers", kafka, "--kafka-topic", topic,
		"--client-buffer", "10000", "--listen", liveAddr, "--metrics-addr", liveMetricsAddr)
	for name, addr := range map[string]string{"agent": agentAddr, "transfer": transferAddr, "livetail": liveAddr} {
		waitReady(t, name, addr, 30*time.Second)
	}

	ctx, cancel := context.WithCancel(context.Background())
	client := &tailClient{addr: liveAddr, job: "e2e-a"}
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
	eventually(t, 60*time.Second, "first lines indexed", indexed("e2e-a", wantA))

	// 2. Reconfigure with Debian's etcdctl: b.log is added, a.log keeps going.
	etcdctl(t, etcd, "put", cfgKey, fmt.Sprintf(
		`[{"path":%q,"job":"e2e-a","labels":{"env":"test"},"from":"beginning"},{"path":%q,"job":"e2e-b","from":"beginning"}]`, logA, logB))
	write(logB, &wantB, "b", 300)
	write(logA, &wantA, "a", 300)
	eventually(t, 60*time.Second, "lines of the added file indexed", indexed("e2e-b", wantB))

	// 3. transfer dies mid-stream.
	write(logA, &wantA, "a", 1000)
	transfer.restart(t)
	write(logB, &wantB, "b", 300)

	// 4. livetail dies under the client, which resumes by cursor.
	livetail.restart(t)
	write(logA, &wantA, "a", 500)

	// 5. The agent dies once what it read is acknowledged and saved, so no
	// line is sent twice (a kill before that is at-least-once: the agent's
	// own tests count those duplicates).
	sizes := map[string]int64{logA: size(t, logA), logB: size(t, logB)}
	eventually(t, 60*time.Second, "agent caught up", agentCaughtUp(t, etcd, agentName, sizes))
	eventually(t, 30*time.Second, "offset registry saved", registrySaved(filepath.Join(dir, "state"), sizes))
	agent.restart(t)
	write(logA, &wantA, "a", 400)
	write(logB, &wantB, "b", 200)

	// Every line exactly once in the index, in order per file.
	eventually(t, 120*time.Second, "every line indexed", indexed("e2e-a", wantA))
	eventually(t, 60*time.Second, "every line indexed", indexed("e2e-b", wantB))
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
	eventually(t, 60*time.Second, "client has every line", func() error {
		if got, _, _ := client.snapshot(); len(got) < len(wantA) {
			return fmt.Errorf("client has %d of %d lines%s", len(got), len(wantA), client.report())
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

	for _, p := range []*proc{agent, transfer, livetail} {
		if code := p.stop(t, 20*time.Second); code != 0 {
			t.Errorf("%s exited %d after SIGTERM", p.name, code)
		}
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

// registrySaved reports nil once the agent's offset registry file in
// stateDir (offsets.json, rewritten atomically a few times a second) holds
// every file at the given size: a restart then sends no line again.
func registrySaved(stateDir string, sizes map[string]int64) func() error {
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
			return fmt.Errorf("offset registry %q: %w", b, err)
		}
		for path, want := range sizes {
			var at int64 = -1
			for _, f := range reg.Files {
				if f.Path == path {
					at = max(at, f.Offset)
				}
			}
			if at < want {
				return fmt.Errorf("offset registry has %s at %d, want %d", path, at, want)
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
