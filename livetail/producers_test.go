package main

import (
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/logpipe/logpipe/common/partition"
	"github.com/logpipe/logpipe/common/record"
	"github.com/logpipe/logpipe/devstack/stack"
	"github.com/logpipe/logpipe/livetail/internal/api"
	"github.com/logpipe/logpipe/livetail/internal/upstream"
	"github.com/logpipe/logpipe/livetail/internal/wire"
)

// Lines of one job written by producers nobody here wrote (kcat as it comes,
// with librdkafka's default partitioner, and with -X
// partitioner=murmur2_random) and by sarama's default partitioner land on up
// to three partitions; livetail shows them all, live, with tail=N, since=
// and cursor=, with no gap and no duplicate.
func TestEveryProducersLines(t *testing.T) {
	stack.ForBackends(t, func(t *testing.T, kind string) {
		s := newKafkaOf(t, stack.Options{Backends: kind})
		testProducers(t, s, s.Topic("logs"))
	})
}

// testProducers runs the cross-producer checks against the Kafka of s and
// its topic, which needs at least three partitions: the same test runs on
// devstack's kfake and on a real broker.
func testProducers(t *testing.T, s *stack.Stack, topic string) {
	if _, err := exec.LookPath("kcat"); err != nil {
		t.Fatalf("kcat is not installed (make test-deps installs it): %v", err)
	}
	cfg := testConfig(s)
	// Live lines of three partitions in the order they were written: the
	// consumers must be in their fetch cycle before the session starts.
	cfg.Consume.Value = "all"
	cfg.Common.KafkaTopic = topic
	ts := startServer(t, cfg)
	w := &writers{t: t, brokers: s.KafkaAddrs(), topic: topic, sarama: newProducer(t, s)}
	w.sarama.topic = topic

	// A job whose three partitioners pick three different partitions.
	job := ""
	for i := 0; job == ""; i++ {
		if c := ts.kafka.Candidates(fmt.Sprintf("mixed-%d", i)); len(c) == 3 {
			job = fmt.Sprintf("mixed-%d", i)
		}
	}
	w.round(job, 3) // 90 lines of history
	time.Sleep(5 * time.Millisecond)
	mark := time.Now()
	time.Sleep(5 * time.Millisecond)

	live := mustDial(t, ts.url(query("job", job)))
	hello := live.mustNext()
	if hello.Type != wire.TypeHello || !slices.Equal(hello.Partitions, sorted(ts.kafka.Candidates(job))) {
		t.Fatalf("hello %+v, want the partitions %v", hello, ts.kafka.Candidates(job))
	}
	live.collect(0, within)
	first := len(w.lines)
	w.round(job, 3) // 90 live lines
	all := w.lines

	got := live.collect(90, within)
	checkLines(t, "live", got, all[first:])
	// Each producer put the job's lines where its partitioner says, the
	// partitions livetail reads history from: murmur2, librdkafka's
	// default (CRC32) and sarama's (FNV-1a), in Candidates' order.
	cand := ts.kafka.Candidates(job)
	want := map[string]int32{"kcat-murmur2_random": cand[0], "kcat-default": cand[1], "sarama": cand[2]}
	for i, l := range got.lines {
		by := strings.Fields(l)[1]
		if p, ok := want[by]; !ok || got.parts[i] != p {
			t.Fatalf("line %q on partition %d, want %s's partition %d (of %v)", l, got.parts[i], by, p, cand)
		}
	}

	eventually(t, within, "the hub caught up", func() bool {
		c := mustDial(t, ts.url(query("job", job, "tail", "200")))
		return len(c.collect(0, within).lines) == len(all)
	})
	for _, n := range []int{1, 50, 180} {
		c := mustDial(t, ts.url(query("job", job, "tail", fmt.Sprint(n))))
		checkLines(t, fmt.Sprintf("tail=%d", n), c.collect(0, within), all[len(all)-n:])
	}

	c := mustDial(t, ts.url(query("job", job, "since", mark.Format(time.RFC3339Nano))))
	checkLines(t, "since", c.collect(0, within), all[first:])

	// Resume from the cursor of the frame after about half the live lines.
	cursor, seen := live.cursorAt(45)
	c = mustDial(t, ts.url(query("job", job, "cursor", cursor)))
	checkLines(t, "cursor "+cursor, c.collect(0, within), all[first+seen:])
}

// writers produce a job's lines with kcat and sarama, as records the agent
// would write, and remember them in order.
type writers struct {
	t       *testing.T
	brokers []string
	topic   string
	sarama  *producer
	lines   []string
}

// round writes n rounds of ten lines from each producer in turn.
func (w *writers) round(job string, n int) {
	w.t.Helper()
	for range n {
		w.kcat(job, kcatDefault, 10)
		w.kcat(job, "murmur2_random", 10)
		w.saramaLines(job, 10)
	}
}

func (w *writers) next(job, by string) record.Record {
	msg := fmt.Sprintf("%s %s line %d", job, by, len(w.lines))
	w.lines = append(w.lines, msg)
	time.Sleep(time.Millisecond) // distinct, increasing times
	return record.Record{
		Timestamp: time.Now(), Message: msg, Job: job,
		Host: record.Host{Name: "node-k"}, Agent: record.Agent{Name: "node-k"},
	}
}

// kcatDefault asks writers.kcat for kcat as a user runs it: no partitioner
// option, so librdkafka's default partitioner.
const kcatDefault = ""

// kcat writes n lines with kcat and the given librdkafka partitioner
// (kcatDefault: none given).
func (w *writers) kcat(job, partitioner string, n int) {
	w.t.Helper()
	by := "kcat-" + partitioner
	args := []string{"-b", strings.Join(w.brokers, ","), "-t", w.topic, "-k", job, "-P"}
	if partitioner == kcatDefault {
		by = "kcat-default"
	} else {
		args = append(args, "-X", "partitioner="+partitioner)
	}
	var in strings.Builder
	for range n {
		rec := w.next(job, by)
		in.Write(rec.AppendJSON(nil))
		in.WriteByte('\n')
	}
	cmd := exec.Command("kcat", args...)
	cmd.Stdin = strings.NewReader(in.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		w.t.Fatalf("kcat: %v\n%s", err, out)
	}
}

// saramaLines writes n lines with sarama's default (FNV-1a) partitioner.
func (w *writers) saramaLines(job string, n int) {
	w.t.Helper()
	msgs := make([]*sarama.ProducerMessage, n)
	for i := range msgs {
		rec := w.next(job, "sarama")
		msgs[i] = &sarama.ProducerMessage{Topic: w.topic, Key: sarama.StringEncoder(job), Value: sarama.ByteEncoder(rec.AppendJSON(nil))}
	}
	if err := w.sarama.p.SendMessages(msgs); err != nil {
		w.t.Fatal(err)
	}
}

// checkLines fails unless got holds exactly want, in order, before
// caught_up (history) or after it (live), and nothing else.
func checkLines(t *testing.T, what string, got collected, want []string) {
	t.Helper()
	lines := got.lines
	if got.caughtUp > 0 {
		lines = lines[:got.caughtUp] // history
		if len(got.lines) > got.caughtUp {
			t.Fatalf("%s: %d lines after caught_up besides the history", what, len(got.lines)-got.caughtUp)
		}
	}
	if !slices.Equal(lines, want) {
		t.Fatalf("%s: got %d lines %q..., want %d lines %q...", what, len(lines), head(lines), len(want), head(want))
	}
	if len(got.dropped) > 0 {
		t.Fatalf("%s: dropped %+v", what, got.dropped)
	}
}

func head(s []string) []string { return s[:min(3, len(s))] }

func sorted(p []int32) []int32 {
	p = slices.Clone(p)
	slices.Sort(p)
	return p
}

// Partitions added while livetail runs: a job whose lines move to a new
// partition is shown within a minute, its history spans both, and a client
// that resumes with the cursor it had before the partitions were added gets
// every line after it, on the old partition and on the new one.
func TestPartitionsAdded(t *testing.T) {
	stack.ForBackends(t, testPartitionsAdded)
}

func testPartitionsAdded(t *testing.T, kind string) {
	s := newKafkaOf(t, stack.Options{Backends: kind}) // 3 partitions
	topic := s.Topic("logs")
	cfg := testConfig(s)
	cfg.Consume.Value = "all" // the job moves to partitions no session watched at its start
	cfg.PartitionRefresh = 200 * time.Millisecond
	ts := startServer(t, cfg)
	w := &writers{t: t, brokers: s.KafkaAddrs(), topic: topic}
	job := movingJob()
	c := mustDial(t, ts.url(query("job", job)))
	c.collect(0, within)
	w.kcat(job, "murmur2_random", 5)
	before := c.collect(5, within)
	if before.parts[0] != partition.ForJob(job, 3) {
		t.Fatalf("lines on partition %d, want %d", before.parts[0], partition.ForJob(job, 3))
	}
	cursor := before.cursors[len(before.cursors)-1]
	w.kcat(job, "murmur2_random", 3) // after the cursor, on the old partition
	checkLines(t, "live before partitions were added", c.collect(3, within), w.lines[5:])

	addPartitions(t, s, topic, 6)
	eventually(t, time.Minute, "livetail consumes 6 partitions", func() bool {
		return ts.metric(t, "livetail_partitions") == 6
	})
	w.kcat(job, "murmur2_random", 5)
	after := c.collect(5, time.Minute)
	checkLines(t, "live after partitions were added", after, w.lines[8:])
	if p := after.parts[0]; p != partition.ForJob(job, 6) {
		t.Fatalf("lines on partition %d, want the new partition %d", p, partition.ForJob(job, 6))
	}
	h := mustDial(t, ts.url(query("job", job, "tail", "10")))
	checkLines(t, "tail=10 over both partitions", h.collect(0, within), w.lines[3:])
	r := mustDial(t, ts.url(query("job", job, "cursor", cursor)))
	checkLines(t, "cursor "+cursor+" from before partitions were added", r.collect(0, within), w.lines[5:])
}

// movingJob returns a job that DESIGN.md's partitioner puts on one of the
// first three partitions of a topic of three, and on one of the three added
// when the topic grows to six.
func movingJob() string {
	for i := 0; ; i++ {
		j := fmt.Sprintf("moving-%d", i)
		if partition.ForJob(j, 6) >= 3 {
			return j
		}
	}
}

// startDefaultRefresh starts livetail on s with the default
// --partition-refresh, and writers to s's log topic.
func startDefaultRefresh(t *testing.T, s *stack.Stack) (*testServer, *writers) {
	t.Helper()
	cfg := testConfig(s)
	cfg.Consume.Value = "all" // the job moves to partitions no session watched at its start
	if cfg.PartitionRefresh != upstream.DefaultRefresh {
		t.Fatalf("testConfig sets --partition-refresh %v, want the default %v", cfg.PartitionRefresh, upstream.DefaultRefresh)
	}
	return startServer(t, cfg), &writers{t: t, brokers: s.KafkaAddrs(), topic: s.Topic("logs")}
}

// With livetail's default --partition-refresh (30 s), a job whose lines
// land on a partition added to the topic is shown within a minute of the
// lines being written (DESIGN.md), to a session that was live before and
// to one that resumes with the cursor it had before, as soon as the
// partitions were added: before livetail looked them up again.
func TestPartitionsAddedDefaultRefresh(t *testing.T) {
	t.Parallel() // it waits for the refresh: beside the other parallel tests, not after them
	s := newKafka(t)
	topic := s.Topic("logs")
	ts, w := startDefaultRefresh(t, s)
	job := movingJob()
	c := mustDial(t, ts.url(query("job", job)))
	c.collect(0, within)
	w.kcat(job, "murmur2_random", 5)
	before := c.collect(5, within)
	cursor := before.cursors[len(before.cursors)-1]

	addPartitions(t, s, topic, 6)
	shown := time.Now().Add(time.Minute) // the promise: a minute after the lines are written
	w.kcat(job, "murmur2_random", 5)
	r := mustDial(t, ts.url(query("job", job, "cursor", cursor)))
	if n := ts.metric(t, "livetail_partitions"); n != 3 {
		t.Logf("livetail had looked the partitions up again (%v) before the resume", n)
	}
	for name, cl := range map[string]*client{"live": c, "resumed with " + cursor: r} {
		// History (when livetail knew the new partition at the resume)
		// and live lines alike.
		got := cl.collect(0, time.Until(shown))
		for len(got.lines) < 5 {
			more := cl.collect(5-len(got.lines), time.Until(shown))
			got.lines = append(got.lines, more.lines...)
			got.parts = append(got.parts, more.parts...)
			got.dropped = append(got.dropped, more.dropped...)
		}
		got.caughtUp = 0
		checkLines(t, name, got, w.lines[5:])
		if p := got.parts[0]; p != partition.ForJob(job, 6) {
			t.Fatalf("%s: lines on partition %d, want the new partition %d", name, p, partition.ForJob(job, 6))
		}
	}
}

// With livetail's default --partition-refresh (30 s), a client whose
// cursor names a partition added to the topic that livetail does not follow
// yet (another replica made the cursor: it had looked the partitions up
// first) is served at once: livetail looks the partitions up when the
// client connects, and the client gets every line of the job after its
// cursor, history and live. A cursor naming a partition Kafka does not have
// either still gets 4400 with its reason.
func TestCursorNamesAddedPartition(t *testing.T) {
	stack.ForBackends(t, testCursorNamesAddedPartition)
}

func testCursorNamesAddedPartition(t *testing.T, kind string) {
	s := newKafkaOf(t, stack.Options{Backends: kind}) // 3 partitions
	topic := s.Topic("logs")
	ts, w := startDefaultRefresh(t, s)
	job := movingJob()
	old, added := partition.ForJob(job, 3), partition.ForJob(job, 6)
	w.kcat(job, "murmur2_random", 5) // offsets 0-4 of the old partition
	addPartitions(t, s, topic, 6)
	w.kcat(job, "murmur2_random", 10) // offsets 0-9 of the added one

	// The cursor of a client that had the job's lines up to offset 4 of
	// the old partition and 3 of the added one, from another replica.
	cursor := fmt.Sprintf("%d:4,%d:3", old, added)
	if n := ts.metric(t, "livetail_partitions"); n != 3 {
		t.Logf("livetail had looked the partitions up again (%v) before the client connected", n)
	}
	c := mustDial(t, ts.url(query("job", job, "cursor", cursor)))
	got := c.collect(0, within)
	checkLines(t, "cursor "+cursor, got, w.lines[9:])
	for i, p := range got.parts {
		if p != added {
			t.Fatalf("line %q on partition %d, want the added partition %d", got.lines[i], p, added)
		}
	}
	w.kcat(job, "murmur2_random", 3)
	checkLines(t, "live after the cursor "+cursor, c.collect(3, within), w.lines[15:])

	bogus := fmt.Sprintf("%d:4,40:0", old)
	expectClose(t, ts.url(query("job", job, "cursor", bogus)), nil, api.StatusBadRequest, "cursor: partition 40 does not exist (the topic has 6)")
}

// addPartitions grows topic to n partitions.
func addPartitions(t testing.TB, s *stack.Stack, topic string, n int32) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.KafkaAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := kmsg.NewPtrCreatePartitionsRequest()
	rt := kmsg.NewCreatePartitionsRequestTopic()
	rt.Topic, rt.Count = topic, n
	req.Topics = append(req.Topics, rt)
	req.TimeoutMillis = 10000
	resp, err := req.RequestWith(t.Context(), cl)
	if err != nil {
		t.Fatalf("adding partitions: %v", err)
	}
	for _, r := range resp.Topics {
		if err := kerr.ErrorForCode(r.ErrorCode); err != nil {
			t.Fatalf("adding partitions to %s: %v", r.Topic, err)
		}
	}
	// Apache Kafka answers before its metadata lists the new partitions
	// with a leader: a producer that asked in between (kcat asks once, at
	// its start) would spread the job's lines over the old count.
	deadline := time.Now().Add(within)
	for {
		mreq := kmsg.NewPtrMetadataRequest()
		mt := kmsg.NewMetadataRequestTopic()
		mt.Topic = kmsg.StringPtr(topic)
		mreq.Topics = append(mreq.Topics, mt)
		mresp, err := mreq.RequestWith(t.Context(), cl)
		ready := 0
		if err == nil && len(mresp.Topics) == 1 {
			for _, p := range mresp.Topics[0].Partitions {
				if p.ErrorCode == 0 && p.Leader >= 0 {
					ready++
				}
			}
		}
		if ready == int(n) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic %s: %d of %d partitions with a leader after %v (%v)", topic, ready, n, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Records without a key (producers that set none: kcat without -k, sarama
// with a nil key) are shown by the job their value names, live and in
// history alike: a session live before them gets them, and so do one
// resuming with the cursor livetail handed out before them, tail=N and
// since=, each exactly once and in order. Those written to a partition no
// partitioner of the job names are found there because livetail saw the
// job's lines on it.
func TestKeylessRecords(t *testing.T) {
	stack.ForBackends(t, func(t *testing.T, kind string) {
		s := newKafkaOf(t, stack.Options{Backends: kind}) // 3 partitions
		cfg := testConfig(s)
		cfg.Consume.Value = "all" // keyless lines on partitions that are not the job's candidates
		ts := startServer(t, cfg)
		topic := s.Topic("logs")
		w := &writers{t: t, brokers: s.KafkaAddrs(), topic: topic, sarama: newProducer(t, s)}
		w.sarama.topic = topic
		job := jobOnlyOn(ts, 0) // every partitioner puts its keyed lines on partition 0

		live := mustDial(t, ts.url(query("job", job)))
		if f := live.mustNext(); f.Type != wire.TypeHello || !slices.Equal(f.Partitions, []int32{0}) {
			t.Fatalf("first frame %+v, want hello with the partitions [0]", f)
		}
		f := live.mustNext()
		if f.Type != wire.TypeCaughtUp || f.Cursor == "" {
			t.Fatalf("second frame %+v, want caught_up with a cursor", f)
		}
		before := f.Cursor // handed out before any line of the job
		time.Sleep(5 * time.Millisecond)
		mark := time.Now()
		time.Sleep(5 * time.Millisecond)

		// Each step's lines reach the live session before the next step
		// writes, so that live order is write order across partitions.
		keyless := 0
		step := func(what string, n int, write func()) {
			t.Helper()
			from := len(w.lines)
			write()
			checkLines(t, "live "+what, live.collect(n, within), w.lines[from:])
		}
		for range 2 {
			step("keyed", 5, func() { w.kcat(job, "murmur2_random", 5) })
			for _, p := range []int32{1, 2} {
				step(fmt.Sprintf("kcat without a key, partition %d", p), 5, func() { w.kcatKeyless(job, p, 5) })
				keyless += 5
			}
			for range 3 {
				step("sarama with a nil key", 1, func() { w.saramaKeyless(job) })
				keyless++
			}
		}
		all := slices.Clone(w.lines)

		r := mustDial(t, ts.url(query("job", job, "cursor", before)))
		hello := r.mustNext()
		if !slices.Equal(hello.Partitions, []int32{0, 1, 2}) {
			t.Fatalf("resumed session's hello %+v, want the partitions [0 1 2]: the job's keyless lines were seen on 1 and 2", hello)
		}
		resumed := r.collect(0, within)
		checkLines(t, "cursor "+before, resumed, all)
		perPartition := map[int32]int{}
		for _, p := range resumed.parts {
			perPartition[p]++
		}
		for _, n := range []int{1, 7, len(all)} {
			c := mustDial(t, ts.url(query("job", job, "tail", fmt.Sprint(n))))
			checkLines(t, fmt.Sprintf("tail=%d", n), c.collect(0, within), all[len(all)-n:])
		}
		c := mustDial(t, ts.url(query("job", job, "since", mark.Format(time.RFC3339Nano))))
		checkLines(t, "since", c.collect(0, within), all)

		// The resumed session goes on live with keyless lines too.
		w.kcatKeyless(job, 2, 3)
		checkLines(t, "live after resuming", r.collect(3, within), w.lines[len(all):])
		checkLines(t, "live", live.collect(3, within), w.lines[len(all):])
		t.Logf("%d lines of job %s, %d of them keyless; by partition %v; resumed with cursor %s", len(all), job, keyless, perPartition, before)
	})
}

// kcatKeyless writes n lines with kcat to partition p, as records without
// a key.
func (w *writers) kcatKeyless(job string, p int32, n int) {
	w.t.Helper()
	var in strings.Builder
	for range n {
		rec := w.next(job, fmt.Sprintf("kcat-keyless-%d", p))
		in.Write(rec.AppendJSON(nil))
		in.WriteByte('\n')
	}
	cmd := exec.Command("kcat", "-b", strings.Join(w.brokers, ","), "-t", w.topic, "-p", fmt.Sprint(p), "-P")
	cmd.Stdin = strings.NewReader(in.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		w.t.Fatalf("kcat: %v\n%s", err, out)
	}
}

// saramaKeyless writes one line with sarama, as a record without a key:
// its default partitioner puts it on a random partition.
func (w *writers) saramaKeyless(job string) {
	w.t.Helper()
	rec := w.next(job, "sarama-keyless")
	if _, _, err := w.sarama.p.SendMessage(&sarama.ProducerMessage{Topic: w.topic, Value: sarama.ByteEncoder(rec.AppendJSON(nil))}); err != nil {
		w.t.Fatal(err)
	}
}
