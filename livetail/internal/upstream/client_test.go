package upstream

import (
	"context"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"slices"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/logpipe/logpipe/common/partition"
	"github.com/logpipe/logpipe/devstack/proc"
	"github.com/logpipe/logpipe/devstack/stack"
	"github.com/logpipe/logpipe/livetail/internal/hub"
)

// The client computes a job's partition as the agent's producer does, reads
// ranges of it, finds offsets by time, and its live consumers publish every
// record into the hub.
func TestClient(t *testing.T) {
	s := stack.New(t, stack.Options{Without: []string{stack.Etcd, stack.ES}})
	pcfg := sarama.NewConfig()
	pcfg.Producer.Return.Successes = true
	prod, err := sarama.NewSyncProducer(s.KafkaAddrs(), pcfg) // the default partitioner, as the agent's
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()

	ctx := t.Context()
	cfg := testConfig()
	cfg.Brokers, cfg.Topic = s.KafkaAddrs(), "logs"
	cfg.Retry = Policy{Tries: 2, Min: 10 * time.Millisecond, Max: 20 * time.Millisecond}
	c, err := Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Partitions() != stack.DefaultPartitions {
		t.Fatalf("partitions = %d", c.Partitions())
	}
	h := hub.New(c.Partitions(), hub.Options{})
	if err := c.Start(ctx, h); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); c.Run(runCtx, h) }()
	defer func() { stop(); <-done }()

	// Partition agrees with the producer for many jobs.
	offsets := map[string][]int64{}
	parts := map[string]int32{}
	start := time.Now().Truncate(time.Millisecond) // Kafka's timestamps are in milliseconds
	var mark time.Time
	for i := range 40 {
		if i == 20 {
			time.Sleep(5 * time.Millisecond)
			mark = time.Now()
			time.Sleep(5 * time.Millisecond)
		}
		job := fmt.Sprintf("job-%d", i%7)
		m := &sarama.ProducerMessage{Topic: "logs", Key: sarama.StringEncoder(job), Value: sarama.StringEncoder(`{"@timestamp":"2026-11-21T10:00:00Z","message":"m","job":"` + job + `"}`)}
		p, off, err := prod.SendMessage(m)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Candidates(job); !slices.Contains(got, p) {
			t.Fatalf("Candidates(%s) = %v, the producer wrote to %d", job, got, p)
		}
		parts[job] = p
		offsets[job] = append(offsets[job], off)
	}

	job := "job-3"
	p := parts[job]
	oldest, newest, err := c.Bounds(ctx, p)
	if err != nil || oldest != 0 || newest <= offsets[job][len(offsets[job])-1] {
		t.Fatalf("bounds %d %d %v", oldest, newest, err)
	}
	var got []int64
	if err := c.Read(ctx, p, 0, newest, []string{job}, func(e *hub.Entry) error {
		if e != nil {
			got = append(got, e.Offset)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, offsets[job]) {
		t.Fatalf("read %v, want %v", got, offsets[job])
	}
	// A sub-range.
	got = nil
	want := offsets[job][1:3]
	if err := c.Read(ctx, p, want[0], want[1]+1, []string{job}, func(e *hub.Entry) error {
		if e != nil {
			got = append(got, e.Offset)
		}
		return nil
	}); err != nil || !slices.Equal(got, want) {
		t.Fatalf("read %v (%v), want %v", got, err, want)
	}
	// By time: the first record of the job from the second half.
	off, err := c.OffsetAt(ctx, p, mark)
	if err != nil {
		t.Fatal(err)
	}
	firstLater := -1
	for i := 20; i < 40; i++ {
		if fmt.Sprintf("job-%d", i%7) == job {
			firstLater = i
			break
		}
	}
	if idx := slices.Index(offsets[job], off); idx < 0 || 7*idx+3 != firstLater {
		t.Fatalf("OffsetAt = %d (index %d of %v), want the record produced %d-th", off, idx, offsets[job], firstLater)
	}
	// Later than everything: the end.
	if off, err := c.OffsetAt(ctx, p, time.Now().Add(time.Hour)); err != nil || off != newest {
		t.Fatalf("OffsetAt(future) = %d %v, want %d", off, err, newest)
	}

	// The oldest record's time (hello's history_from), from its first
	// half, and again from what was remembered.
	for range 2 {
		if ts, err := c.OldestTime(ctx, p); err != nil || ts.Before(start) || !ts.Before(mark) {
			t.Fatalf("OldestTime = %v %v, want between %v and %v", ts, err, start, mark)
		}
	}

	// The live consumer published everything into the hub.
	deadline := time.Now().Add(time.Minute) // generous, for a loaded machine
	for h.Next(p) < newest {
		if time.Now().After(deadline) {
			t.Fatalf("hub at %d, want %d", h.Next(p), newest)
		}
		time.Sleep(10 * time.Millisecond)
	}
	jobs := h.Jobs()
	if len(jobs) != 7 {
		t.Fatalf("jobs %+v", jobs)
	}
}

// Candidates names the partitions of the standard partitioners, the home
// (murmur2) one first, as franz-go's independent implementations of Java's
// and librdkafka's partitioners compute them.
// A since= lookup on a partition where no record is at or after the time
// asked answers the end; a record produced while the lookups are made is
// after that answer, never before it: the session reads from the answer
// on and would not see it. (Kafka answers a time lookup with -1 when it
// finds no such record.)
func TestOffsetAtRecordInBetween(t *testing.T) {
	since := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, arriveAfter := range []int{1, 2} { // the record comes after the first lookup, or after both
		var log []int64 // the partition: each record's time in ms
		calls := 0
		get := func(at int64) (int64, error) {
			var answer int64 = -1
			switch {
			case at == sarama.OffsetNewest:
				answer = int64(len(log))
			default:
				for i, ts := range log {
					if ts >= at {
						answer = int64(i)
						break
					}
				}
			}
			if calls++; calls == arriveAfter {
				log = append(log, since.Add(time.Hour).UnixMilli()) // a line written now
			}
			return answer, nil
		}
		off, err := offsetAt(get, since)
		if err != nil {
			t.Fatal(err)
		}
		if off != 0 {
			t.Errorf("record written after lookup %d: since= starts at offset %d, want 0 (the new record)", arriveAfter, off)
		}
	}
}

func TestCandidates(t *testing.T) {
	java := kgo.StickyKeyPartitioner(nil).ForTopic("logs")
	librdkafka := kgo.StickyKeyPartitioner(kgo.SaramaHasher(crc32.ChecksumIEEE)).ForTopic("logs")
	sar := kgo.StickyKeyPartitioner(kgo.SaramaCompatHasher(fnv32a)).ForTopic("logs")
	for n := int32(1); n <= 12; n++ {
		for i := range 50 {
			job := fmt.Sprintf("job-%d", i)
			r := &kgo.Record{Key: []byte(job)}
			got := candidates(job, n)
			if got[0] != int32(java.Partition(r, int(n))) || got[0] != partition.ForJob(job, n) {
				t.Fatalf("%d partitions: home of %s = %d, want %d", n, job, got[0], java.Partition(r, int(n)))
			}
			for _, want := range []int{librdkafka.Partition(r, int(n)), sar.Partition(r, int(n))} {
				if !slices.Contains(got, int32(want)) {
					t.Fatalf("%d partitions: candidates of %s = %v, want %d among them", n, job, got, want)
				}
			}
		}
	}
}

func fnv32a(b []byte) uint32 {
	h := fnv.New32a()
	h.Write(b)
	return h.Sum32()
}

// Dial gives up after the retries when nothing answers.
func TestDialUnavailable(t *testing.T) {
	cfg := testConfig()
	nowhere := proc.NewRelay(t).Addr() // refuses connections for the whole test
	cfg.Brokers, cfg.Topic = []string{nowhere}, "logs"
	cfg.Retry = Policy{Tries: 1, Min: time.Millisecond, Max: time.Millisecond}
	if _, err := Dial(t.Context(), cfg); err == nil {
		t.Fatal("no error")
	}
}

// History reads go to the pool's least busy client, so that one long scan
// does not hold up the reads of other sessions.
func TestHistoryPoolSpreadsReads(t *testing.T) {
	s := stack.New(t, stack.Options{Without: []string{stack.Etcd, stack.ES}})
	cfg := testConfig()
	cfg.Brokers, cfg.Topic, cfg.HistoryConns = s.KafkaAddrs(), "logs", 3
	c, err := Dial(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if len(c.hist) != 3 {
		t.Fatalf("%d history clients, want 3", len(c.hist))
	}
	var picked []*histConn
	for range 3 {
		h := c.pick()
		h.busy.Add(1) // a read under way
		picked = append(picked, h)
	}
	if picked[0] == picked[1] || picked[1] == picked[2] || picked[0] == picked[2] {
		t.Fatal("three reads at once share a history client while others are idle")
	}
	picked[1].busy.Add(-1)
	if c.pick() != picked[1] {
		t.Fatal("a read did not go to the idle client")
	}
}

// A history read keeps the records the live consumers route to a job: those
// keyed by the job, and keyless ones (other producers) whose value names
// it. A record keyed by another job is not the job's whatever its value
// says, and a keyless value that is not a record has no job.
func TestReadKeylessRecords(t *testing.T) {
	s := stack.New(t, stack.Options{Without: []string{stack.Etcd, stack.ES}})
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.KafkaAddrs()...), kgo.DefaultProduceTopic("logs"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	value := func(job, msg string) []byte {
		return []byte(`{"@timestamp":"2026-11-21T10:00:00Z","message":"` + msg + `","job":"` + job + `"}`)
	}
	const p = 2
	records := []struct {
		key, value []byte
		mine       bool
	}{
		{[]byte("web"), value("web", "keyed"), true},
		{nil, value("web", "keyless"), true},
		{nil, value("db", "keyless of another job"), false},
		{[]byte("db"), value("web", "keyed by another job"), false},
		{nil, []byte(`{"job":"web","message":"no time: not a record"}`), false},
		{nil, []byte("plain text"), false},
		{[]byte("web"), []byte("plain text keyed by the job"), true},
		{[]byte{}, value("web", "empty key"), true},
	}
	var want []string
	for _, r := range records {
		if err := cl.ProduceSync(t.Context(), &kgo.Record{Key: r.key, Value: r.value, Partition: p}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if r.mine {
			e, _ := hub.NewEntry(p, 0, r.key, r.value, time.Now())
			want = append(want, e.Line)
		}
	}
	cfg := testConfig()
	cfg.Brokers, cfg.Topic = s.KafkaAddrs(), "logs"
	c, err := Dial(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var got []string
	if err := c.Read(t.Context(), p, 0, int64(len(records)), []string{"web"}, func(e *hub.Entry) error {
		if e != nil {
			got = append(got, e.Line)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("history of job web: %q, want %q", got, want)
	}
	// The live consumers route the same records to the job.
	var live []string
	for i, r := range records {
		if e, _ := hub.NewEntry(p, int64(i), r.key, r.value, time.Now()); e.Job == "web" {
			live = append(live, e.Line)
		}
	}
	if !slices.Equal(live, want) {
		t.Fatalf("live entries of job web: %q, want %q", live, want)
	}
}
