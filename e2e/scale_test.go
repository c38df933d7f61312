package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/logpipe/logpipe/common/keys"
	"github.com/logpipe/logpipe/common/partition"
	"github.com/logpipe/logpipe/devstack/proc"
	"github.com/logpipe/logpipe/devstack/stack"
)

// The metrics a user reads to see what a livetail replica consumes.
const (
	liveBytes     = `livetail_kafka_read_bytes_total{purpose="live"}`
	liveRecords   = `livetail_kafka_read_records_total{purpose="live"}`
	catBytes      = `livetail_kafka_read_bytes_total{purpose="catalogue"}`
	partsConsumed = `livetail_partitions_consumed`
)

// scaleGrace is the replicas' --consume-grace: short, so that the test
// sees a consumer stop without waiting the default 30 s.
const scaleGrace = 2 * time.Second

// TestScaleOut runs agent, transfer and two livetail replicas with their
// default --consume (auto: watched, as transfer keeps the jobs topic)
// against devstack's backends, embedded and real. Three agent jobs and the
// keyless lines of a foreign producer (kcat without a key, the job in the
// JSON value, on two partitions none of its partitioners names) flow
// through transfer, which keeps the jobs catalogue.
//
//   - Replica B, with no client, reads no byte of the log topic live and
//     consumes no partition, while lines flow (it reads the catalogue).
//   - A client on replica A watching one agent job makes A consume exactly
//     that job's partition, the one the catalogue places it on, not its
//     other candidates; the client gets every line of the job, history
//     then live, in order, with no gap and no duplicate; once it leaves, A
//     stops consuming after the grace and reads nothing more live.
//   - A client on the keyless job with tail= gets every one of its lines,
//     from history and live, once each, and A consumes exactly the two
//     partitions the catalogue places its lines on.
func TestScaleOut(t *testing.T) {
	stack.ForBackends(t, testScaleOut)
}

func testScaleOut(t *testing.T, kind string) {
	st := stack.New(t, stack.Options{Backends: kind})
	n := int32(stack.DefaultPartitions)
	etcd := strings.Join(st.EtcdEndpoints(), ",")
	kafka := strings.Join(st.KafkaAddrs(), ",")
	topic, jobsTopic, esIndex := st.Topic("logs"), st.Topic("logs.jobs"), st.Index(index)
	catalogueClient(t, st, jobsTopic) // deletes the jobs topic from shared backends at the end

	// The watched job's candidates name more partitions than its lines
	// are on (else consuming the candidates would pass for placement);
	// the keyless job's lines go to two partitions that none of its
	// candidates names.
	watched := jobWithCandidates(n, func(c []int32) bool { return len(c) >= 2 })
	others := []string{"scale-other-1", "scale-other-2"}
	const foreign = "scale-foreign"
	keylessOn := notCandidates(foreign, n)[:2]
	t.Logf("%s: home partition %d, candidates %v; %s keyless on %v", watched, partition.ForJob(watched, n),
		candidates(watched, n), foreign, keylessOn)

	dir := t.TempDir()
	agentJobs := append([]string{watched}, others...)
	var entries []string
	for _, job := range agentJobs {
		path := filepath.Join(dir, job+".log")
		appendLines(t, path, nil)
		entries = append(entries, fmt.Sprintf(`{"path":%q,"job":%q,"from":"beginning"}`, path, job))
	}
	const agentName = "e2e-scale"
	etcdctl(t, etcd, "put", keys.AgentConfig(agentName), "["+strings.Join(entries, ",")+"]")
	agent := proc.Start(t, binary(t, "agent"), "--name", agentName, "--etcd-endpoints", etcd, "--kafka-brokers", kafka,
		"--kafka-topic", topic, "--state-dir", filepath.Join(dir, "state"), "--metrics-addr", "127.0.0.1:0")
	transfer := proc.Start(t, binary(t, "transfer"), "--kafka-brokers", kafka, "--kafka-topics", topic,
		"--dlq-topic", st.Topic("logs.dlq"), "--group", st.Topic("logpipe-transfer"), "--es-addresses", st.ESURL(),
		"--es-index", esIndex, "--metrics-addr", "127.0.0.1:0", "--jobs-topic", jobsTopic, "--jobs-interval", "1s")
	waitReady(t, "agent", agent.Addr(t, "metrics"))
	waitReady(t, "transfer", transfer.Addr(t, "metrics"))

	start := time.Now().UTC()
	w := &jobsWriter{dir: dir, jobs: agentJobs, foreign: foreign, on: keylessOn, brokers: kafka, topic: topic}
	w.start(t)
	t.Cleanup(func() { w.stop(t) })

	// transfer makes the jobs topic and writes it before the replicas
	// start, so that their mode auto is watched from the start.
	eventually(t, "transfer writes the catalogue", func() error {
		if v := proc.Metrics(transfer.Addr(t, "metrics"), catalogueWrites)[catalogueWrites]; v == 0 {
			return fmt.Errorf("%s = 0", catalogueWrites)
		}
		return nil
	})

	// The replicas, with livetail's defaults but for the topics, the
	// addresses and the grace.
	replica := func() (http, metrics string, p *proc.Process) {
		p = proc.Start(t, binary(t, "livetail"), "--kafka-brokers", kafka, "--kafka-topic", topic,
			"--jobs-topic", jobsTopic, "--consume-grace", scaleGrace.String(),
			"--listen", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0")
		http, metrics = p.Addr(t, "http"), p.Addr(t, "metrics")
		waitReady(t, "livetail", http)
		return http, metrics, p
	}
	aHTTP, aMetrics, a := replica()
	_, bMetrics, b := replica()

	// Both replicas know from the catalogue where the jobs' lines are.
	eventually(t, "the catalogue places the jobs", func() error {
		got, err := listJobs(aHTTP)
		if err != nil {
			return err
		}
		if p := got[watched].Partitions; !slices.Equal(p, []int32{partition.ForJob(watched, n)}) {
			return fmt.Errorf("%s on %v", watched, p)
		}
		if p := got[foreign].Partitions; !slices.Equal(p, keylessOn) {
			return fmt.Errorf("%s on %v", foreign, p)
		}
		return nil
	})

	// (a) Neither replica, without clients, reads the log topic while
	// lines flow; both read the catalogue.
	before := w.count()
	eventually(t, "lines flow meanwhile", func() error {
		if c := w.count(); c < before+100 {
			return fmt.Errorf("%d lines written since, want 100", c-before)
		}
		return nil
	})
	for name, addr := range map[string]string{"A": aMetrics, "B": bMetrics} {
		m := proc.Metrics(addr, liveBytes, liveRecords, catBytes, partsConsumed)
		if m[liveBytes] != 0 || m[liveRecords] != 0 || m[partsConsumed] != 0 {
			t.Fatalf("replica %s without clients: %s=%v %s=%v %s=%v, want 0", name, liveBytes, m[liveBytes],
				liveRecords, m[liveRecords], partsConsumed, m[partsConsumed])
		}
		if m[catBytes] == 0 {
			t.Fatalf("replica %s: %s = 0: it did not read the catalogue", name, catBytes)
		}
	}

	// (b) A client of the watched job on A: A consumes its one partition.
	c := dialScale(t, aHTTP, url.Values{"job": {watched}, "since": {start.Format(time.RFC3339Nano)}})
	if want := []int32{partition.ForJob(watched, n)}; !slices.Equal(c.hello.Partitions, want) {
		t.Fatalf("hello of %s: partitions %v, want %v (where the catalogue places it)", watched, c.hello.Partitions, want)
	}
	if v := proc.Metrics(aMetrics, partsConsumed)[partsConsumed]; v != 1 {
		t.Fatalf("replica A with a client on %s: %s = %v, want 1", watched, partsConsumed, v)
	}
	c.waitAll(t, w, watched)
	if c.liveLines() == 0 {
		t.Fatalf("no line of %s arrived after caught_up: the session was not live", watched)
	}
	checkInOrder(t, watched, c.lines(), w.lines(watched))
	t.Logf("%s: %d lines, %d of them live after caught_up", watched, len(c.lines()), c.liveLines())
	c.close()
	eventually(t, "replica A stops consuming after the grace", func() error {
		if v := proc.Metrics(aMetrics, partsConsumed)[partsConsumed]; v != 0 {
			return fmt.Errorf("%s = %v", partsConsumed, v)
		}
		return nil
	})
	stopped := proc.Metrics(aMetrics, liveBytes)[liveBytes]
	before = w.count()
	eventually(t, "lines flow after the consumer stopped", func() error {
		if c := w.count(); c < before+100 {
			return fmt.Errorf("%d lines written since, want 100", c-before)
		}
		return nil
	})
	if v := proc.Metrics(aMetrics, liveBytes)[liveBytes]; v != stopped {
		t.Fatalf("replica A read %v bytes live after its consumer stopped", v-stopped)
	}

	// (c) A client of the keyless job with tail=: every line, history and
	// live, from the two partitions the catalogue places it on.
	const maxTail = 10000 // livetail's --max-tail
	if n := len(w.lines(foreign)); n >= maxTail {
		t.Fatalf("%d lines of %s written: tail=%d would not ask for all", n, foreign, maxTail)
	}
	k := dialScale(t, aHTTP, url.Values{"job": {foreign}, "tail": {fmt.Sprint(maxTail)}})
	if !slices.Equal(k.hello.Partitions, keylessOn) {
		t.Fatalf("hello of %s: partitions %v, want %v (where the catalogue places it)", foreign, k.hello.Partitions, keylessOn)
	}
	if v := proc.Metrics(aMetrics, partsConsumed)[partsConsumed]; v != float64(len(keylessOn)) {
		t.Fatalf("replica A with a client on %s: %s = %v, want %d", foreign, partsConsumed, v, len(keylessOn))
	}
	k.waitAll(t, w, foreign)
	if k.liveLines() == 0 {
		t.Fatalf("no line of %s arrived after caught_up: the session was not live", foreign)
	}
	// The two partitions' consumers may hand over their lines in either
	// order: once the writing stops, every line has come, once.
	w.stop(t)
	all := w.lines(foreign)
	eventually(t, foreign+": the last lines", func() error {
		if got := len(k.lines()); got < len(all) {
			return fmt.Errorf("%d of %d lines", got, len(all))
		}
		return nil
	})
	checkOnce(t, foreign, k.lines(), all)
	t.Logf("%s: %d lines from partitions %v, %d of them live after caught_up", foreign, len(k.lines()), keylessOn, k.liveLines())
	k.close()

	// B served nobody: it read nothing live from start to end.
	m := proc.Metrics(bMetrics, liveBytes, liveRecords, partsConsumed)
	if m[liveBytes] != 0 || m[liveRecords] != 0 || m[partsConsumed] != 0 {
		t.Fatalf("replica B without clients: %s=%v %s=%v %s=%v, want 0", liveBytes, m[liveBytes], liveRecords, m[liveRecords], partsConsumed, m[partsConsumed])
	}
	aRead := proc.Metrics(aMetrics, liveBytes, liveRecords)
	t.Logf("%d lines written; replica A read %v records (%v bytes) live, replica B 0", w.count(), aRead[liveRecords], aRead[liveBytes])
	for _, p := range []*proc.Process{a, b, transfer, agent} {
		if code := p.Stop(t); code != 0 {
			t.Errorf("%s exited %d after SIGTERM", p.Name(), code)
		}
	}
}

// candidates are the partitions standard producers keyed by job put its
// lines on: murmur2 (the agent, Java), CRC32 (librdkafka's default) and
// FNV-1a (sarama's default).
func candidates(job string, n int32) []int32 {
	out := []int32{partition.ForJob(job, n)}
	if p := int32(crc32.ChecksumIEEE([]byte(job)) % uint32(n)); !slices.Contains(out, p) {
		out = append(out, p)
	}
	h := fnv.New32a()
	h.Write([]byte(job))
	p := int32(h.Sum32()) % n
	if p < 0 {
		p = -p
	}
	if !slices.Contains(out, p) {
		out = append(out, p)
	}
	return out
}

// jobWithCandidates returns the first job name scale-job-N whose
// candidates satisfy ok.
func jobWithCandidates(n int32, ok func([]int32) bool) string {
	for i := 0; ; i++ {
		job := fmt.Sprintf("scale-job-%d", i)
		if ok(candidates(job, n)) {
			return job
		}
	}
}

// notCandidates returns the partitions that none of job's candidates is.
func notCandidates(job string, n int32) []int32 {
	c := candidates(job, n)
	var out []int32
	for p := range n {
		if !slices.Contains(c, p) {
			out = append(out, p)
		}
	}
	return out
}

// scaleSession is a tail client that keeps its hello frame, its lines,
// and how many of them came after caught_up.
type scaleSession struct {
	hello struct {
		Partitions []int32 `json:"partitions"`
	}
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	got      []string
	caughtUp int // lines received before caught_up; -1 until it came
	err      error
}

// dialScale opens a tail with query q on livetail at addr and returns
// once hello has arrived.
func dialScale(t *testing.T, addr string, q url.Values) *scaleSession {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	dctx, dcancel := context.WithTimeout(ctx, within)
	defer dcancel()
	conn, _, err := websocket.Dial(dctx, "ws://"+addr+"/api/v1/tail?"+q.Encode(), nil)
	if err != nil {
		cancel()
		t.Fatalf("tail %s at %s: %v", q.Encode(), addr, err)
	}
	conn.SetReadLimit(16 << 20)
	s := &scaleSession{cancel: cancel, caughtUp: -1}
	_, data, err := conn.Read(dctx)
	var hello struct {
		Type string `json:"type"`
	}
	if err == nil {
		err = json.Unmarshal(data, &hello)
	}
	if err == nil {
		err = json.Unmarshal(data, &s.hello)
	}
	if err != nil || hello.Type != "hello" {
		cancel()
		conn.CloseNow()
		t.Fatalf("tail %s: first frame %q, %v; want hello", q.Encode(), data, err)
	}
	s.wg.Go(func() {
		defer conn.CloseNow()
		s.read(ctx, conn)
	})
	t.Cleanup(s.close)
	return s
}

func (s *scaleSession) read(ctx context.Context, conn *websocket.Conn) {
	for {
		_, data, err := conn.Read(ctx)
		var f struct {
			Type    string `json:"type"`
			Entries []struct {
				Line string `json:"line"`
			} `json:"entries"`
		}
		if err == nil {
			err = json.Unmarshal(data, &f)
		}
		s.mu.Lock()
		switch {
		case err != nil:
			s.err = err
		case f.Type == "caught_up":
			s.caughtUp = len(s.got)
		case f.Type == "dropped":
			s.err = fmt.Errorf("dropped frame %s", data)
		case f.Type == "error":
			s.err = fmt.Errorf("error frame %s", data)
		}
		for _, e := range f.Entries {
			s.got = append(s.got, e.Line)
		}
		s.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// close leaves the session; a second call does nothing.
func (s *scaleSession) close() {
	s.cancel()
	s.wg.Wait()
}

func (s *scaleSession) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got)
}

// liveLines returns how many lines came after caught_up.
func (s *scaleSession) liveLines() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.caughtUp < 0 {
		return 0
	}
	return len(s.got) - s.caughtUp
}

// waitAll waits, after caught_up, until the session has as many lines as
// w had written of job at that point, plus more written later.
func (s *scaleSession) waitAll(t *testing.T, w *jobsWriter, job string) {
	t.Helper()
	var want int
	eventually(t, job+": caught_up", func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.err != nil {
			t.Fatalf("%s: the session ended: %v", job, s.err)
		}
		if s.caughtUp < 0 {
			return fmt.Errorf("no caught_up after %d lines", len(s.got))
		}
		return nil
	})
	want = len(w.lines(job)) + 50 // and some more, live
	eventually(t, job+": every line written", func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.err != nil {
			t.Fatalf("%s: the session ended: %v", job, s.err)
		}
		if len(s.got) < want {
			return fmt.Errorf("%d of %d lines", len(s.got), want)
		}
		return nil
	})
}

// checkInOrder checks that got is the start of want: every line in order,
// no gap, no duplicate.
func checkInOrder(t *testing.T, job string, got, want []string) {
	t.Helper()
	if len(got) > len(want) || !slices.Equal(got, want[:len(got)]) {
		t.Fatalf("%s: %d lines, not the first of the %d written: %s", job, len(got), len(want), firstDiff(got, want))
	}
}

// checkOnce checks that got holds each line of want once: no gap, no
// duplicate, whatever the order of the partitions' lines.
func checkOnce(t *testing.T, job string, got, want []string) {
	t.Helper()
	seen := map[string]bool{}
	for _, l := range got {
		if seen[l] {
			t.Fatalf("%s: line %q received twice", job, l)
		}
		seen[l] = true
	}
	if len(got) != len(want) {
		t.Fatalf("%s: %d lines received, %d written", job, len(got), len(want))
	}
	for _, l := range want {
		if !seen[l] {
			t.Fatalf("%s: line %q missing of the %d received", job, l, len(got))
		}
	}
}
