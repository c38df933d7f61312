package main

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/logpipe/logpipe/devstack/stack"
	"github.com/logpipe/logpipe/livetail/internal/wire"
)

// watchedConfig is testConfig in mode watched with a short grace.
func watchedConfig(s *stack.Stack) Config {
	cfg := testConfig(s)
	cfg.Consume.Value = "watched"
	cfg.ConsumeGrace = 200 * time.Millisecond
	return cfg
}

// readLive returns the records and bytes ts read for live sessions.
func readLive(t testing.TB, ts *testServer) (records, bytes float64) {
	t.Helper()
	return ts.metric(t, "livetail_kafka_read_records_total", "purpose", "live"),
		ts.metric(t, "livetail_kafka_read_bytes_total", "purpose", "live")
}

func consumed(t testing.TB, ts *testServer) float64 {
	t.Helper()
	return ts.metric(t, "livetail_partitions_consumed")
}

// In mode watched a replica without sessions reads nothing of the log
// topic, while one in mode all reads what is written. A session makes its
// partition consumed, a second one on it shares the consumer, and the
// consumer stops after the grace once both left. A session that starts
// while its partition is not consumed, with lines being written, and one
// resuming with a cursor after the consumer stopped, each get every line
// exactly once.
func TestConsumeWatched(t *testing.T) {
	stack.ForBackends(t, testConsumeWatched)
}

func testConsumeWatched(t *testing.T, kind string) {
	s := newKafkaOf(t, stack.Options{Backends: kind})
	ts := startServer(t, watchedConfig(s))
	allCfg := testConfig(s)
	allCfg.Consume.Value = "all"
	all := startServer(t, allCfg)
	p := newProducer(t, s)
	job, other := jobOnlyOn(ts, 0), jobOnlyOn(ts, 1)

	p.produce(t, job, 0, 20)
	p.produce(t, other, 0, 20)
	eventually(t, within, "the replica in mode all read the 40 lines", func() bool {
		n, _ := readLive(t, all)
		return n >= 40
	})
	if n, b := readLive(t, ts); n != 0 || b != 0 {
		t.Fatalf("a replica without sessions read %v records (%v bytes) of the log topic", n, b)
	}
	if n := consumed(t, ts); n != 0 {
		t.Fatalf("livetail_partitions_consumed = %v without sessions, want 0", n)
	}
	if n := consumed(t, all); n != 3 {
		t.Fatalf("livetail_partitions_consumed = %v in mode all, want 3", n)
	}

	// Two sessions on the job: one consumer, of its partition only.
	a := mustDial(t, ts.url(query("job", job, "since", "1h")))
	b := mustDial(t, ts.url(query("job", job)))
	if got := a.collect(0, within); !slices.Equal(got.offsets, p.offsets(job)) {
		t.Fatalf("history %v, want %v", got.offsets, p.offsets(job))
	}
	b.collect(0, within)
	if n := consumed(t, ts); n != 1 {
		t.Fatalf("livetail_partitions_consumed = %v with two sessions on partition 0, want 1", n)
	}
	p.produce(t, job, 20, 10)
	p.produce(t, other, 20, 10)
	want := p.offsets(job)
	checkContiguous(t, a.collect(10, within).offsets, want, 20)
	checkContiguous(t, b.collect(10, within).offsets, want, 20)
	cursor, _ := b.cursorAt(10)
	a.c.CloseNow()
	b.c.CloseNow()
	eventually(t, within, "the partition's consumer stopped after the grace", func() bool { return consumed(t, ts) == 0 })
	liveRead, _ := readLive(t, ts)
	if liveRead >= 60 {
		t.Fatalf("the replica read %v records live; only partition 0's 10 were written while it was consumed", liveRead)
	}

	// Lines written while nobody watches, then during the join.
	p.produce(t, job, 30, 10)
	stop := p.background(job, 40, 5, 2*time.Millisecond)
	t.Cleanup(func() { stop() })
	c := mustDial(t, ts.url(query("job", job, "since", "1h")))
	r := mustDial(t, ts.url(query("job", job, "cursor", cursor)))
	first := c.collect(20, within)
	resumed := r.collect(20, within)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	want = p.offsets(job)
	rest := c.collect(len(want)-len(first.offsets), within)
	checkContiguous(t, append(first.offsets, rest.offsets...), want, 0)
	restR := r.collect(len(want)-30-len(resumed.offsets), within)
	checkContiguous(t, append(resumed.offsets, restR.offsets...), want, 30)
	t.Logf("%d lines; the session that started unconsumed caught up after %d; the resumed one after %d", len(want), first.caughtUp, resumed.caughtUp)
}

// Records of a job nobody watches are skipped undecoded, even when their
// value is not JSON, while the watched job's lines on the same partition
// are delivered.
func TestSkipUnwatchedUndecoded(t *testing.T) {
	stack.ForBackends(t, func(t *testing.T, kind string) {
		s := newKafkaOf(t, stack.Options{Backends: kind})
		ts := startServer(t, watchedConfig(s))
		p := newProducer(t, s)
		job, noise := jobOnlyOn(ts, 0), ""
		for i := 0; noise == ""; i++ { // another job every partitioner puts on 0
			if c := ts.kafka.Candidates(fmt.Sprintf("noise-%d", i)); slices.Equal(c, []int32{0}) {
				noise = fmt.Sprintf("noise-%d", i)
			}
		}
		c := mustDial(t, ts.url(query("job", job)))
		c.collect(0, within)
		const n = 50
		msgs := make([]*sarama.ProducerMessage, n)
		for i := range msgs {
			msgs[i] = &sarama.ProducerMessage{Topic: p.topic, Partition: 0, Key: sarama.StringEncoder(noise), Value: sarama.StringEncoder("not json, line " + fmt.Sprint(i))}
		}
		if err := p.p.SendMessages(msgs); err != nil {
			t.Fatal(err)
		}
		p.produce(t, job, 0, 5) // after the noise: once they arrive, the noise was read
		checkContiguous(t, c.collect(5, within).offsets, p.offsets(job), 0)
		if msgs[0].Partition != p.partition(job) {
			t.Fatalf("noise on partition %d, the job's lines on %d", msgs[0].Partition, p.partition(job))
		}
		if got := ts.metric(t, "livetail_records_skipped_undecoded_total"); got < n {
			t.Fatalf("livetail_records_skipped_undecoded_total = %v, want at least the %d records of %s", got, n, noise)
		}
		if got := ts.metric(t, "livetail_records_undecodable_total"); got != 0 {
			t.Fatalf("livetail_records_undecodable_total = %v: a record nobody watches was decoded", got)
		}
	})
}

// Sessions asking for the same history at once (a reconnect storm with
// since=) share scans: livetail reads the partition at most twice, not once
// per session, and each session gets every line once.
func TestHistoryScansShared(t *testing.T) {
	stack.ForBackends(t, func(t *testing.T, kind string) {
		s := newKafkaOf(t, stack.Options{Backends: kind})
		const lines, sessions = 3000, 20
		cfg := watchedConfig(s)
		cfg.MaxConnsPerUser = sessions
		ts := startServer(t, cfg)
		job := jobOnlyOn(ts, 0)
		produceOn(t, s, 0, job, lines)
		readHistory := func() float64 {
			return ts.metric(t, "livetail_kafka_read_records_total", "purpose", "history")
		}
		before := readHistory()
		var wg sync.WaitGroup
		got := make([]int, sessions)
		for i := range sessions {
			wg.Go(func() {
				c, err := dial(t, ts.url(query("job", job, "since", "1h")), nil)
				if err != nil {
					t.Error(err)
					return
				}
				defer c.c.CloseNow()
				n := 0
				for {
					f, err := c.next(within)
					if err != nil {
						t.Error(err)
						return
					}
					n += len(f.Entries)
					if f.Type == wire.TypeCaughtUp {
						got[i] = n
						return
					}
				}
			})
		}
		wg.Wait()
		for i, n := range got {
			if n != lines {
				t.Fatalf("session %d got %d lines of history, want %d", i, n, lines)
			}
		}
		read := readHistory() - before
		if read > 2*lines {
			t.Fatalf("%d sessions read %v records for history from a partition of %d: more than two scans", sessions, read, lines)
		}
		t.Logf("%d sessions with since=1h on a partition of %d records: %v records read for history in %v scans", sessions, lines, read, ts.metric(t, "livetail_history_scans_total"))
	})
}

// A keyless line of the job on a partition that no partitioner names
// reaches a session in mode watched through the placement hook (the jobs
// catalogue), in its history and live. Placement comes first: the session
// reads and consumes the placed partition alone, not the partitioner's
// candidate, while a job the hook does not know is read on its candidates.
func TestPlacementHook(t *testing.T) {
	stack.ForBackends(t, func(t *testing.T, kind string) {
		s := newKafkaOf(t, stack.Options{Backends: kind})
		ts := startServer(t, watchedConfig(s))
		topic := s.Topic("logs")
		w := &writers{t: t, brokers: s.KafkaAddrs(), topic: topic, sarama: newProducer(t, s)}
		w.sarama.topic = topic
		job := jobOnlyOn(ts, 0)
		w.kcatKeyless(job, 2, 3)

		without := mustDial(t, ts.url(query("job", job, "since", "1h")))
		if f := without.mustNext(); f.Type != wire.TypeHello || !slices.Equal(f.Partitions, []int32{0}) {
			t.Fatalf("without the hook: %+v, want hello with the partitions [0]", f)
		}
		if got := without.collect(0, within); len(got.lines) != 0 {
			t.Fatalf("without the hook the session found %q on a partition it does not read", got.lines)
		}
		without.c.CloseNow()
		eventually(t, within, "the candidate's consumer stopped after the grace", func() bool { return consumed(t, ts) == 0 })

		ts.setPlacement(func(j string) []int32 {
			if j == job {
				return []int32{2}
			}
			return nil
		})
		c := mustDial(t, ts.url(query("job", job, "since", "1h")))
		if f := c.mustNext(); f.Type != wire.TypeHello || !slices.Equal(f.Partitions, []int32{2}) || f.Partition == nil || *f.Partition != 2 {
			t.Fatalf("with the hook: %+v, want hello with the partition 2 and the partitions [2]", f)
		}
		checkLines(t, "history through the hook", c.collect(0, within), w.lines)
		if n := consumed(t, ts); n != 1 {
			t.Fatalf("livetail_partitions_consumed = %v for a job placed on one partition, want 1 (not its candidate too)", n)
		}
		from := len(w.lines)
		w.kcatKeyless(job, 2, 2)
		checkLines(t, "live through the hook", c.collect(2, within), w.lines[from:])
	})
}

// 100 clients re-issuing since=1h on one job, each reconnecting as soon as
// it has its history, three rounds over (the rounds overlap: a client starts
// its next round without waiting for the others), make livetail read the
// partition a few times, not 300 times, in bytes as in records. The bound:
// a since=1h read starts before the next record of any scan under way, so
// it never joins one; it waits for the next scan, which serves every read
// waiting. A client's k-th read is so served by at most the partition's
// 2k-th scan, and three rounds cost at most six scans, whatever the number
// of clients. One client alone first measures what one scan reads.
func TestReconnectStormSinceShared(t *testing.T) {
	stack.ForBackends(t, func(t *testing.T, kind string) {
		s := newKafkaOf(t, stack.Options{Backends: kind})
		const lines, clients, rounds = 500, 100, 3
		cfg := watchedConfig(s)
		// A client reconnects before livetail has seen its last connection
		// close: room for every connection of the test at once.
		cfg.MaxConnsPerUser = clients * rounds
		ts := startServer(t, cfg)
		job := jobOnlyOn(ts, 0)
		produceOn(t, s, 0, job, lines)
		readHistory := func() (records, bytes float64) {
			return ts.metric(t, "livetail_kafka_read_records_total", "purpose", "history"),
				ts.metric(t, "livetail_kafka_read_bytes_total", "purpose", "history")
		}
		history := func() (int, error) {
			c, err := dial(t, ts.url(query("job", job, "since", "1h")), nil)
			if err != nil {
				return 0, err
			}
			defer c.c.CloseNow()
			n := 0
			for {
				f, err := c.next(within)
				if err != nil {
					return n, err
				}
				n += len(f.Entries)
				if f.Type == wire.TypeCaughtUp {
					return n, nil
				}
			}
		}

		r0, b0 := readHistory()
		if n, err := history(); err != nil || n != lines {
			t.Fatalf("one client alone: %d lines of history (%v), want %d", n, err, lines)
		}
		r1, b1 := readHistory()
		scanRecords, scanBytes := r1-r0, b1-b0
		if scanRecords < lines || scanBytes <= 0 {
			t.Fatalf("one scan read %v records (%v bytes) for history of %d lines", scanRecords, scanBytes, lines)
		}

		scans0 := ts.metric(t, "livetail_history_scans_total")
		var wg sync.WaitGroup
		var mu sync.Mutex
		sessions := 0
		for i := range clients {
			wg.Go(func() {
				for r := range rounds {
					n, err := history()
					if err != nil || n != lines {
						t.Errorf("client %d, round %d: %d lines of history (%v), want %d", i, r, n, err, lines)
						return
					}
					mu.Lock()
					sessions++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		if sessions != clients*rounds {
			t.Fatalf("%d sessions got their history, want %d", sessions, clients*rounds)
		}
		r2, b2 := readHistory()
		records, bytes := r2-r1, b2-b1
		scans := ts.metric(t, "livetail_history_scans_total") - scans0
		const bound = 2 * rounds
		t.Logf("%d sessions with since=1h (%d clients, %d rounds) on %d lines: %v bytes and %v records read for history (%.1f scans' worth; one scan %v bytes), in %v scans",
			sessions, clients, rounds, lines, bytes, records, bytes/scanBytes, scanBytes, scans)
		if bytes > bound*scanBytes || records > bound*scanRecords {
			t.Fatalf("%d sessions read %v bytes (%v records) for history, more than %d scans of %v bytes (%v records)",
				sessions, bytes, records, bound, scanBytes, scanRecords)
		}
	})
}

// A client that resumes with its cursor just as its partition's consumer
// stops (the grace after it left expiring) gets every line written while
// it was away, once, then its live lines. The reconnects sweep the moment
// of the stop: each comes a little later after the last one left, from
// before the grace ends to after the consumer stopped (how long that takes
// is measured first), and resumes from the cursor of the one before.
// Nothing is written around the moment itself, so that the
// consumer waits in a fetch when it is told to stop and takes a while to
// end: a reconnect in that while finds it ending. The test checks that the
// sweep straddled the stop: some reconnects found the partition still
// consumed past the grace (its consumer ending), others not consumed.
func TestResumeAtConsumerStop(t *testing.T) {
	stack.ForBackends(t, func(t *testing.T, kind string) {
		s := newKafkaOf(t, stack.Options{Backends: kind})
		cfg := watchedConfig(s)
		const grace = 100 * time.Millisecond
		cfg.ConsumeGrace = grace
		ts := startServer(t, cfg)
		p := newProducer(t, s)
		job := jobOnlyOn(ts, 0)
		written := 0
		write := func(n int) {
			p.produce(t, job, written, n)
			written += n
		}
		write(5)

		// resume connects with query, and returns the lines it got up to
		// caught_up and the first live ones, the cursor after them, and
		// how many lines that cursor is past.
		resume := func(query string) (got []int64, cursor string, past int) {
			c := mustDial(t, ts.url(query))
			defer c.c.CloseNow()
			history := c.collect(0, within)
			write(3)
			live := c.collect(3, within)
			cursor, n := c.cursorAt(3)
			return append(history.offsets, live.offsets...), cursor, len(history.offsets) + n
		}
		got, cursor, next := resume(query("job", job, "since", "1h"))
		checkContiguous(t, got, p.offsets(job), 0)

		// How long after the last session left the consumer stops: the
		// grace, and its end.
		write(2)
		left := time.Now()
		eventually(t, within, "the partition's consumer stopped after the grace", func() bool { return consumed(t, ts) == 0 })
		stopped := time.Since(left)
		got, cursor, n := resume(query("job", job, "cursor", cursor))
		checkContiguous(t, got, p.offsets(job), next)
		next += n

		const steps = 12
		from, span := grace-20*time.Millisecond, stopped-grace+40*time.Millisecond
		var before, after, ending int // reconnects that found the partition consumed, not, and consumed past the grace
		for i := range steps {
			d := from + span*time.Duration(i)/(steps-1)
			write(2) // while it is away, the consumer still running
			time.Sleep(d)
			if consumed(t, ts) > 0 {
				before++
				if d > grace {
					ending++
				}
			} else {
				after++
			}
			got, cursor, n = resume(query("job", job, "cursor", cursor))
			checkContiguous(t, got, p.offsets(job), next)
			next += n
		}
		t.Logf("the consumer stopped %v after the last session left (grace %v); %d reconnects from %v to %v after: %d found the partition consumed (%d of them past the grace), %d not; %d lines resumed without a gap",
			stopped.Round(time.Millisecond), grace, steps, from, from+span, before, ending, after, next)
		if before == 0 || after == 0 || ending == 0 {
			t.Fatalf("the reconnects did not straddle the consumer's stop: %d found it consumed (%d past the grace), %d not", before, ending, after)
		}
	})
}
