package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/logpipe/logpipe/common/keys"
	"github.com/logpipe/logpipe/common/record"
	"github.com/logpipe/logpipe/devstack/proc"
	"github.com/logpipe/logpipe/devstack/stack"
)

// genRun is a file of one job read by the real agent, indexed by transfer
// and tailed through livetail, for the scenarios in which a file starts a
// new generation, or keeps its own under a new device number.
type genRun struct {
	st       *stack.Stack
	job      string
	topic    string
	index    string
	path     string
	stateDir string
	agent    *restartable
	transfer *restartable
	livetail *proc.Process
}

func startGen(tb testing.TB, kind, job string) *genRun {
	tb.Helper()
	st := stack.New(tb, stack.Options{Backends: kind})
	dir := tb.TempDir()
	r := &genRun{st: st, job: job, topic: st.Topic("logs"), index: st.Index(index),
		path: filepath.Join(dir, job+".log"), stateDir: filepath.Join(dir, "state")}
	appendLines(tb, r.path, nil)
	etcd := strings.Join(st.EtcdEndpoints(), ",")
	kafka := strings.Join(st.KafkaAddrs(), ",")
	agentName := job + "-node"
	etcdctl(tb, etcd, "put", keys.AgentConfig(agentName),
		fmt.Sprintf(`[{"path":%q,"job":%q,"topic":%q,"from":"beginning"}]`, r.path, job, r.topic))
	r.agent = startRestartable(tb, "agent", "--name", agentName, "--etcd-endpoints", etcd, "--kafka-brokers", kafka,
		"--state-dir", r.stateDir)
	r.transfer = startRestartable(tb, "transfer", "--kafka-brokers", kafka, "--kafka-topics", r.topic,
		"--group", st.Topic("logpipe-transfer"), "--dlq-topic", st.Topic("logs.dlq"), "--es-addresses", st.ESURL(), "--es-index", r.index)
	// A client buffer larger than all the lines of the test: the session
	// is never a slow client whose lines are dropped.
	r.livetail = proc.Start(tb, binary(tb, "livetail"), "--kafka-brokers", kafka, "--kafka-topic", r.topic,
		"--listen", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--client-buffer", "100000")
	waitReady(tb, "livetail", r.livetail.Addr(tb, "http"))
	return r
}

// sameLines are the lines every generation of a test's file begins with:
// the files are byte for byte the same, so only the generation tells a
// line from the line at the same offset of the generation before.
func sameLines() []string {
	out := make([]string, 100)
	for i := range out {
		out[i] = fmt.Sprintf("line %d of the text every generation repeats", i+1)
	}
	return out
}

// metric reads one counter or gauge without labels from addr's /metrics;
// a metric not exported yet reads 0.
func metric(tb testing.TB, addr, name string) float64 {
	tb.Helper()
	m, err := scrape(addr)
	if err != nil {
		tb.Fatalf("metrics at %s: %v", addr, err)
	}
	return m[name]
}

// waitSession waits until the session has n lines or livetail skipped a
// line as a resend (which would keep it from ever getting there).
func (r *genRun) waitSession(tb testing.TB, s *liveSession, n int, what string) {
	tb.Helper()
	eventually(tb, what, func() error {
		lines, err := s.snapshot()
		if err != nil {
			return nil // reported by the caller
		}
		if len(lines) >= n || metric(tb, r.livetail.Addr(tb, "metrics"), "livetail_resent_lines_skipped_total") > 0 {
			return nil
		}
		return fmt.Errorf("%d of %d lines", len(lines), n)
	})
}

// checkSession asserts that the session received exactly want, in order,
// none skipped as a resend and none dropped; it returns how many lines
// the session received.
func (r *genRun) checkSession(tb testing.TB, s *liveSession, want []string) int {
	tb.Helper()
	lines, err := s.snapshot()
	if err != nil {
		tb.Fatalf("the session ended: %v", err)
	}
	lt := r.livetail.Addr(tb, "metrics")
	if skipped := metric(tb, lt, "livetail_resent_lines_skipped_total"); skipped != 0 {
		tb.Errorf("livetail skipped %v lines of a new generation as resends", skipped)
	}
	if !slices.Equal(lines, want) {
		tb.Errorf("session: %d lines, want %d, first difference %s", len(lines), len(want), firstDiff(lines, want))
	}
	if d := s.droppedFrames(); len(d) > 0 {
		tb.Errorf("%d dropped frames, the first %s", len(d), d[0])
	}
	if consumed := metric(tb, lt, "livetail_records_consumed_total"); consumed != float64(len(want)) {
		tb.Errorf("livetail consumed %v records for %d lines", consumed, len(want))
	}
	return len(lines)
}

// indexed is one document of the job: its line and where it came from.
type indexed struct {
	Message string `json:"message"`
	Log     struct {
		Offset int64 `json:"offset"`
		File   struct {
			Generation string `json:"generation"`
		} `json:"file"`
	} `json:"log"`
}

// waitIndexed waits until transfer has handled n records (indexed, or
// refused as already indexed) and returns the job's documents.
func (r *genRun) waitIndexed(tb testing.TB, n int) (docs []indexed, duplicates float64) {
	tb.Helper()
	addr := r.transfer.p.Addr(tb, "metrics")
	eventually(tb, "transfer handled every record", func() error {
		done := metric(tb, addr, "transfer_docs_indexed_total") + metric(tb, addr, "transfer_docs_duplicate_total")
		if done < float64(n) {
			return fmt.Errorf("%v of %d records", done, n)
		}
		return nil
	})
	if err := esRefresh(r.st.ESURL(), r.index); err != nil {
		tb.Fatal(err)
	}
	q := `{"query":{"term":{"job":"` + r.job + `"}},"size":10000,"sort":[{"log.offset":"asc"}]}`
	var body struct {
		Hits struct {
			Hits []struct {
				Source indexed `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := esPost(r.st.ESURL()+"/"+r.index+"/_search", q, &body); err != nil {
		tb.Fatal(err)
	}
	for _, h := range body.Hits.Hits {
		docs = append(docs, h.Source)
	}
	return docs, metric(tb, addr, "transfer_docs_duplicate_total")
}

// checkGenerations asserts that docs hold the lines of want once per
// generation, gens generations in all, each line at its own offset.
func checkGenerations(tb testing.TB, docs []indexed, want []string, gens int) {
	tb.Helper()
	offsets := make([]int64, len(want))
	for i := 1; i < len(want); i++ {
		offsets[i] = offsets[i-1] + int64(len(want[i-1])+1)
	}
	count := map[string]map[int64]int{} // per generation, per offset
	for _, d := range docs {
		g := d.Log.File.Generation
		if count[g] == nil {
			count[g] = map[int64]int{}
		}
		i := slices.Index(offsets, d.Log.Offset)
		if i < 0 || want[i] != d.Message {
			tb.Fatalf("unexpected document %+v", d)
		}
		count[g][d.Log.Offset]++
	}
	if len(count) != gens || count[""] != nil {
		tb.Fatalf("documents of %d generations, want %d: %v", len(count), gens, slices.Collect(maps.Keys(count)))
	}
	for g, c := range count {
		for i, off := range offsets {
			if c[off] != 1 {
				tb.Errorf("generation %s: line %d (offset %d) indexed %d times", g, i+1, off, c[off])
			}
		}
	}
	if len(docs) != gens*len(want) {
		tb.Errorf("%d documents, want %d", len(docs), gens*len(want))
	}
}

// TestGenerationsAcrossCopyTruncate: a live session is open while a file
// is written, copied aside and truncated in place (logrotate's
// copytruncate) and written again, twice; the three generations are the
// same 100 lines byte for byte. The agent saw each truncation (its
// counter says so before the next lines are written); the session
// receives all 300 lines once, livetail skips none of them as a resend,
// and the index holds each line of each generation once.
func TestGenerationsAcrossCopyTruncate(t *testing.T) {
	stack.ForBackends(t, func(t *testing.T, kind string) {
		r := startGen(t, kind, "gen-copytruncate")
		s := openSession(t, r.livetail.Addr(t, "http"), r.job)
		agentMetrics := r.agent.p.Addr(t, "metrics")
		lines := sameLines()
		var want []string
		for g := 1; g <= 3; g++ {
			if g > 1 {
				data, err := os.ReadFile(r.path)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(r.path+".1", data, 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.Truncate(r.path, 0); err != nil {
					t.Fatal(err)
				}
				// The premise: the agent saw the file shorter. Written
				// again before it looked, the same bytes would be the
				// same file to anyone.
				eventually(t, fmt.Sprintf("the agent saw truncation %d", g-1), func() error {
					if n := metric(t, agentMetrics, "agent_file_rotations_total"); n != float64(g-1) {
						return fmt.Errorf("%v truncations seen", n)
					}
					return nil
				})
			}
			appendLines(t, r.path, lines)
			want = append(want, lines...)
			r.waitSession(t, s, len(want), fmt.Sprintf("the session has generation %d", g))
		}
		live := r.checkSession(t, s, want)
		docs, dups := r.waitIndexed(t, len(want))
		checkGenerations(t, docs, lines, 3)
		if dups != 0 {
			t.Errorf("transfer found %v lines already indexed", dups)
		}
		t.Logf("%s: 3 generations of %d identical lines, 2 truncations seen: %d of %d lines live, %d documents, %v refused as already indexed",
			kind, len(lines), live, len(want), len(docs), dups)
	})
}

// TestGenerationsAcrossInodeReuse: a file is written, deleted, and a new
// file that got the deleted file's inode is written with the same lines.
// The session receives both generations' lines once and the index holds
// each once.
func TestGenerationsAcrossInodeReuse(t *testing.T) {
	stack.ForBackends(t, func(t *testing.T, kind string) {
		r := startGen(t, kind, "gen-inode")
		s := openSession(t, r.livetail.Addr(t, "http"), r.job)
		agentMetrics := r.agent.p.Addr(t, "metrics")
		lines := sameLines()
		appendLines(t, r.path, lines)
		r.waitSession(t, s, len(lines), "the session has the first file")
		old := inodeOf(t, r.path)
		if err := os.Remove(r.path); err != nil {
			t.Fatal(err)
		}
		// The inode is free once the agent has closed the deleted file.
		eventually(t, "the agent closed the deleted file", func() error {
			if n := metric(t, agentMetrics, "agent_files_tailed"); n != 0 {
				return fmt.Errorf("%v files open", n)
			}
			return nil
		})
		// Files are created beside the path until one gets the inode, which
		// is then renamed to the path: empty, so the agent takes it up
		// before it has lines. ext4 gives a new file the first free inode
		// of its directory's group: the files kept fill the holes before
		// the deleted file's, which other processes on a busy machine keep
		// opening, so this may take thousands.
		const tries = 20000
		var spare []string
		reused := false
		for i := 0; i < tries && !reused; i++ {
			p := filepath.Join(filepath.Dir(r.path), fmt.Sprintf("candidate-%d", i))
			appendLines(t, p, nil)
			if inodeOf(t, p) == old {
				if err := os.Rename(p, r.path); err != nil {
					t.Fatal(err)
				}
				reused = true
				continue
			}
			spare = append(spare, p) // kept, so that the next file gets another inode
		}
		for _, p := range spare {
			os.Remove(p)
		}
		if !reused {
			t.Fatalf("no new file got inode %d back in %d tries: the premise of this test did not happen", old, tries)
		}
		if got := inodeOf(t, r.path); got != old {
			t.Fatalf("inode %d at the path, want %d", got, old)
		}
		eventually(t, "the agent opened the new file", func() error {
			if n := metric(t, agentMetrics, "agent_files_tailed"); n != 1 {
				return fmt.Errorf("%v files open", n)
			}
			return nil
		})
		appendLines(t, r.path, lines)
		want := slices.Concat(lines, lines)
		r.waitSession(t, s, len(want), "the session has the new file")
		live := r.checkSession(t, s, want)
		docs, dups := r.waitIndexed(t, len(want))
		checkGenerations(t, docs, lines, 2)
		if dups != 0 {
			t.Errorf("transfer found %v lines already indexed", dups)
		}
		t.Logf("%s: inode %d reused after %d other files: %d of %d lines live, %d documents, %v refused as already indexed",
			kind, old, len(spare), live, len(want), len(docs), dups)
	})
}

// TestDeviceNumberChange: the agent is stopped, the device numbers in its
// registry are changed (which is what it finds after its disk came back
// under another number), and it is started again: it reads the file on
// from its offset. Kafka holds each line once (nothing read again) and
// the index each line once.
func TestDeviceNumberChange(t *testing.T) {
	stack.ForBackends(t, func(t *testing.T, kind string) {
		r := startGen(t, kind, "gen-device")
		var want []string
		for i := range 150 {
			want = append(want, fmt.Sprintf("device line %d", i))
		}
		appendLines(t, r.path, want[:100])
		r.waitIndexed(t, 100)
		if code := r.agent.p.Stop(t); code != 0 {
			t.Fatalf("agent exited %d after SIGTERM", code)
		}
		was := registryDevices(t, r.stateDir, 1000)
		r.agent.p = proc.Start(t, r.agent.bin, r.agent.args...)
		waitReady(t, "agent", r.agent.p.Addr(t, "metrics"))
		appendLines(t, r.path, want[100:])

		// Every record of the partition before the last line's is there
		// once the last line is.
		recs := topicMessages(t, r.st.KafkaAddrs(), r.topic, want[149])
		count := map[string]int{}
		for _, m := range recs {
			count[m]++
		}
		for _, l := range want {
			if count[l] != 1 {
				t.Errorf("%q %d times in Kafka", l, count[l])
			}
		}
		if len(recs) != len(want) {
			t.Errorf("%d records in Kafka for %d lines", len(recs), len(want))
		}
		docs, dups := r.waitIndexed(t, len(recs))
		got := make([]string, 0, len(docs))
		for _, d := range docs {
			got = append(got, d.Message)
		}
		if !slices.Equal(got, want) || dups != 0 {
			t.Errorf("index: %d documents (%v refused as already indexed), want %d; first difference %s", len(got), dups, len(want), firstDiff(got, want))
		}
		// The premise: the agent took the file up under its new device number.
		if !strings.Contains(r.agent.p.Output(), "file found under another device number") {
			t.Errorf("the agent did not log taking the file over from device %d", was)
		}
		t.Logf("%s: registry's device %d, the file's %d: %d lines, %d records in Kafka, %d documents", kind, was+1000, was, len(want), len(recs), len(docs))
	})
}

func inodeOf(tb testing.TB, path string) uint64 {
	tb.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		tb.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// registryDevices adds delta to every device number in the registry of a
// stopped agent, and returns the device number the file had.
func registryDevices(tb testing.TB, stateDir string, delta uint64) uint64 {
	tb.Helper()
	file := filepath.Join(stateDir, "offsets.json")
	data, err := os.ReadFile(file)
	if err != nil {
		tb.Fatal(err)
	}
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // the fingerprints' 64-bit hashes do not fit a float64
	if err := dec.Decode(&doc); err != nil {
		tb.Fatal(err)
	}
	files, _ := doc["files"].([]any)
	if len(files) != 1 {
		tb.Fatalf("want one file in %s", data)
	}
	id := files[0].(map[string]any)["identity"].(map[string]any)
	dev, err := strconv.ParseUint(string(id["dev"].(json.Number)), 10, 64)
	if err != nil {
		tb.Fatal(err)
	}
	id["dev"] = dev + delta
	if data, err = json.Marshal(doc); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(file, data, 0o644); err != nil {
		tb.Fatal(err)
	}
	return dev
}

// topicMessages reads topic from its start until a record with message
// last has been read, and returns the messages of the records read.
func topicMessages(tb testing.TB, brokers []string, topic, last string) []string {
	tb.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		tb.Fatal(err)
	}
	defer cl.Close()
	var out []string
	deadline := time.Now().Add(within)
	for !slices.Contains(out, last) {
		if time.Now().After(deadline) {
			tb.Fatalf("%q not in Kafka within %v (%d records read)", last, within, len(out))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachRecord(func(kr *kgo.Record) {
			rec, err := record.Decode(kr.Value)
			if err != nil {
				tb.Errorf("record %q: %v", kr.Value, err)
				return
			}
			out = append(out, rec.Message)
		})
	}
	return out
}
