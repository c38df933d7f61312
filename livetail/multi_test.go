package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/logpipe/logpipe/devstack/stack"
	"github.com/logpipe/logpipe/livetail/internal/wire"
)

// Two jobs written keyed by job, one stream of both: history and live
// lines merged, each entry with its job; a reconnect with the cursor of a
// frame in the middle, after lines were written meanwhile, has every line
// of each job exactly once across the two connections, and none of a
// third job written to the same partition as the first. Then "load
// earlier" pages back from a short stream's first lines to the start of
// the topic, each line once.
func TestSeveralJobsOneStream(t *testing.T) {
	stack.ForBackends(t, func(t *testing.T, kind string) {
		s := newKafkaOf(t, stack.Options{Backends: kind})
		ts := startServer(t, testConfig(s))
		p := newProducer(t, s)
		a, b, c := jobsForStream(t, p.topic)
		jobs := []string{a, b}
		sent := map[string]int{} // per job, lines written
		write := func(n int) {
			for range n {
				for _, job := range []string{a, c, b} {
					p.produce(t, job, sent[job], 1)
					sent[job]++
				}
			}
		}
		start := time.Now().Truncate(time.Millisecond) // Kafka's timestamps are in milliseconds
		write(20)
		if p.partition(c) != p.partition(a) || p.partition(b) == p.partition(a) {
			t.Fatalf("partitions of %s, %s, %s: %d, %d, %d; want the first and third the same", a, b, c, p.partition(a), p.partition(b), p.partition(c))
		}

		first := mustDial(t, ts.url(url.Values{"job": jobs, "tail": {"1000"}}.Encode()))
		hello := first.mustNext()
		if hello.Type != wire.TypeHello || !slices.Equal(hello.Jobs, jobs) || hello.Job != a || hello.Archive {
			t.Fatalf("hello %+v, want jobs %v and no archive", hello, jobs)
		}
		// history_from: when the oldest record of the stream's partitions was written.
		if from, err := time.Parse(time.RFC3339Nano, hello.HistoryFrom); err != nil || from.Before(start) || from.After(time.Now()) {
			t.Fatalf("hello's history_from %q (%v), want a time since %v", hello.HistoryFrom, err, start)
		}
		history := readJobLines(t, first, 40)
		write(20)
		live := readJobLines(t, first, 40)
		got := append(history, live...)
		mid := got[60].cursor // a frame in the middle of the live lines
		var kept []jobLine
		for _, l := range got {
			kept = append(kept, l)
			if l.cursor == mid && (len(kept) == len(got) || got[len(kept)].cursor != mid) {
				break
			}
		}
		first.c.CloseNow()

		write(15) // while away
		second := mustDial(t, ts.url(url.Values{"job": jobs, "cursor": {mid}}.Encode()))
		second.mustNext()
		rest := readJobLines(t, second, sent[a]+sent[b]-countOf(kept, a)-countOf(kept, b))
		checkEachOnce(t, append(kept, rest...), sent, jobs)

		// Load earlier from a stream of the last 10 lines.
		short := mustDial(t, ts.url(url.Values{"job": jobs, "tail": {"10"}}.Encode()))
		hello = short.mustNext()
		newest := readJobLines(t, short, 10)
		before := map[int32]int64{}
		for _, part := range hello.Partitions {
			before[part] = positionOf(t, newest[len(newest)-1].cursor, part) + 1
		}
		for _, l := range newest {
			before[l.partition] = min(before[l.partition], l.offset)
		}
		all := newest
		pages := 0
		for ; ; pages++ {
			if pages > 10 {
				t.Fatal("more than 10 pages of 20 lines")
			}
			page := historyPage(t, ts, jobs, before, 20)
			all = append(page.lines, all...)
			if !page.More {
				if page.Stop != "start" {
					t.Fatalf("last page stops at %q, want start", page.Stop)
				}
				break
			}
			before = cursorMap(t, page.Before)
		}
		checkEachOnce(t, all, sent, jobs)
		if n := ts.metric(t, "livetail_history_pages_total", "code", "200"); n != float64(pages+1) {
			t.Fatalf("%v pages counted, want %d", n, pages+1)
		}
	})
}

// jobsForStream returns three jobs for a stream of the first two: the
// first and third on the same partition, the second on another, as the
// test's producer (sarama's default partitioner) puts them.
func jobsForStream(t *testing.T, topic string) (a, b, c string) {
	t.Helper()
	part := func(job string) int32 {
		pr := sarama.NewHashPartitioner(topic)
		p, err := pr.Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(job)}, 3)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	a = "multi-a"
	for i := 0; b == "" || c == ""; i++ {
		job := fmt.Sprintf("multi-%d", i)
		switch {
		case c == "" && part(job) == part(a):
			c = job
		case b == "" && part(job) != part(a):
			b = job
		}
	}
	return a, b, c
}

// jobLine is an entry as a client saw it.
type jobLine struct {
	job       string
	line      string
	partition int32
	offset    int64
	cursor    string // of its frame
}

// readJobLines reads frames until n entries came.
func readJobLines(t *testing.T, c *client, n int) []jobLine {
	t.Helper()
	var out []jobLine
	for len(out) < n {
		f := c.mustNext()
		switch f.Type {
		case wire.TypeEntries:
			for _, e := range f.Entries {
				out = append(out, jobLine{job: e.Job, line: e.Line, partition: e.Partition, offset: e.Offset, cursor: f.Cursor})
			}
		case wire.TypeDropped, wire.TypeError:
			t.Fatalf("unexpected frame %+v", f)
		}
	}
	return out
}

func countOf(lines []jobLine, job string) int {
	n := 0
	for _, l := range lines {
		if l.job == job {
			n++
		}
	}
	return n
}

// checkEachOnce fails unless lines hold every line written of jobs once,
// each job's in the order written, each with its own job, and nothing
// else.
func checkEachOnce(t *testing.T, lines []jobLine, sent map[string]int, jobs []string) {
	t.Helper()
	next := map[string]int{}
	for i, l := range lines {
		if !slices.Contains(jobs, l.job) {
			t.Fatalf("line %d %q is of job %q, not of the stream's %v", i, l.line, l.job, jobs)
		}
		if want := line(l.job, next[l.job]); l.line != want {
			t.Fatalf("line %d of job %s: %q, want %q", i, l.job, l.line, want)
		}
		next[l.job]++
	}
	for _, job := range jobs {
		if next[job] != sent[job] {
			t.Fatalf("%d lines of %s, want %d", next[job], job, sent[job])
		}
	}
}

// positionOf returns a cursor's offset for partition p (-1: none).
func positionOf(t *testing.T, cursor string, p int32) int64 {
	t.Helper()
	if off, ok := cursorMap(t, cursor)[p]; ok {
		return off
	}
	return -1
}

func cursorMap(t *testing.T, cursor string) map[int32]int64 {
	t.Helper()
	out := map[int32]int64{}
	for _, part := range strings.Split(cursor, ",") {
		ps, os, _ := strings.Cut(part, ":")
		p, err1 := strconv.ParseInt(ps, 10, 32)
		off, err2 := strconv.ParseInt(os, 10, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("cursor %q", cursor)
		}
		out[int32(p)] = off
	}
	return out
}

// page is an answer of GET /api/v1/history.
type page struct {
	Entries []wire.EntryJSON `json:"entries"`
	Before  string           `json:"before"`
	More    bool             `json:"more"`
	Stop    string           `json:"stop"`
	lines   []jobLine
}

func historyPage(t *testing.T, ts *testServer, jobs []string, before map[int32]int64, limit int) page {
	t.Helper()
	q := url.Values{"job": jobs, "limit": {strconv.Itoa(limit)}}
	q.Set("before", string(wire.AppendCursor(nil, before)))
	resp, err := http.Get("http://" + ts.Addr() + "/api/v1/history?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var pg page
	if err := json.NewDecoder(resp.Body).Decode(&pg); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("history: %d %v", resp.StatusCode, err)
	}
	for _, e := range pg.Entries {
		pg.lines = append(pg.lines, jobLine{job: e.Job, line: e.Line, partition: e.Partition, offset: e.Offset})
	}
	return pg
}
