// Package testkit holds the helpers that the agent's tests share: a Kafka
// reader that collects the records the agent produced, writers of
// numbered log lines whose arrival can be checked line by line, and a
// count of a process's inotify instances.
package testkit

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/logpipe/logpipe/common/record"
)

// Record is a Kafka record decoded.
type Record struct {
	Key       string
	Partition int32
	Offset    int64
	Rec       record.Record
}

// Reader consumes a topic from the start in the background.
type Reader struct {
	tb     testing.TB
	cl     *kgo.Client
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once

	mu   sync.Mutex
	recs []Record
	errs []error
}

// NewReader starts reading topic from brokers, with the client options
// extra (TLS, SASL); it stops at test cleanup.
func NewReader(tb testing.TB, brokers []string, topic string, extra ...kgo.Opt) *Reader {
	tb.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(100 * time.Millisecond),
	}, extra...)...)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Reader{tb: tb, cl: cl, cancel: cancel, done: make(chan struct{})}
	go r.loop(ctx)
	tb.Cleanup(r.Close)
	return r
}

func (r *Reader) loop(ctx context.Context) {
	defer close(r.done)
	for ctx.Err() == nil {
		fs := r.cl.PollFetches(ctx)
		var batch []Record
		var errs []error
		fs.EachRecord(func(kr *kgo.Record) {
			rec, err := record.Decode(kr.Value)
			if err != nil {
				errs = append(errs, fmt.Errorf("partition %d offset %d: %w: %q", kr.Partition, kr.Offset, err, kr.Value))
				return
			}
			batch = append(batch, Record{Key: string(kr.Key), Partition: kr.Partition, Offset: kr.Offset, Rec: rec})
		})
		r.mu.Lock()
		r.recs = append(r.recs, batch...)
		r.errs = append(r.errs, errs...)
		r.mu.Unlock()
	}
}

// Close stops reading.
func (r *Reader) Close() {
	r.once.Do(func() {
		r.cancel()
		<-r.done
		r.cl.Close()
	})
}

// Records returns what was read so far; it fails the test on undecodable records.
func (r *Reader) Records() []Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.errs) > 0 {
		r.tb.Errorf("undecodable records: %v", r.errs)
	}
	return slices.Clone(r.recs)
}

// ForPath returns the records of one file path, in Kafka order.
func (r *Reader) ForPath(path string) []Record {
	var out []Record
	for _, x := range r.Records() {
		if x.Rec.Log.File.Path == path {
			out = append(out, x)
		}
	}
	return out
}

// WaitFor polls until cond holds on the records read, or fails after timeout.
func (r *Reader) WaitFor(timeout time.Duration, what string, cond func([]Record) bool) []Record {
	r.tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		recs := r.Records()
		if cond(recs) {
			return recs
		}
		if time.Now().After(deadline) {
			r.tb.Fatalf("timed out after %v waiting for %s (%d records read)", timeout, what, len(recs))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Line is a numbered test line: "<tag> <n> <padding>".
func Line(tag string, n int, pad int) string {
	s := tag + " " + strconv.Itoa(n)
	if pad > len(s) {
		s += " " + strings.Repeat("x", pad-len(s)-1)
	}
	return s
}

// Parse returns the tag and number of a Line.
func Parse(msg string) (tag string, n int, ok bool) {
	f := strings.Fields(msg)
	if len(f) < 2 {
		return "", 0, false
	}
	n, err := strconv.Atoi(f[1])
	return f[0], n, err == nil
}

// Check verifies the numbered lines of tag in recs: every number in [0, n)
// present and, by first occurrence, in order. It returns the number of
// duplicates.
func Check(recs []Record, tag string, n int) (dups int, err error) {
	seen := make([]bool, n)
	next := 0
	for _, x := range recs {
		t, i, ok := Parse(x.Rec.Message)
		if !ok || t != tag {
			continue
		}
		if i < 0 || i >= n {
			return dups, fmt.Errorf("%s: unexpected line %d", tag, i)
		}
		if seen[i] {
			dups++
			continue
		}
		if i != next {
			return dups, fmt.Errorf("%s: line %d arrived before line %d", tag, i, next)
		}
		seen[i] = true
		next++
	}
	if next != n {
		return dups, fmt.Errorf("%s: %d of %d lines arrived; first missing %d", tag, next, n, next)
	}
	return dups, nil
}

// CheckLast verifies the numbered lines of tag in recs: every number in
// [0, n) present and their last copies in order, which is what the agent
// guarantees when Kafka failed records and they were sent again (Kafka may
// have kept later ones meanwhile). It returns the number of duplicates.
func CheckLast(recs []Record, tag string, n int) (dups int, err error) {
	last := make([]int, n)
	for i := range last {
		last[i] = -1
	}
	for pos, x := range recs {
		t, i, ok := Parse(x.Rec.Message)
		if !ok || t != tag {
			continue
		}
		if i < 0 || i >= n {
			return dups, fmt.Errorf("%s: unexpected line %d", tag, i)
		}
		if last[i] >= 0 {
			dups++
		}
		last[i] = pos
	}
	for i, pos := range last {
		switch {
		case pos < 0:
			return dups, fmt.Errorf("%s: line %d of %d missing", tag, i, n)
		case i > 0 && pos < last[i-1]:
			return dups, fmt.Errorf("%s: the last copy of line %d comes before that of line %d", tag, i, i-1)
		}
	}
	return dups, nil
}

// Count returns how many records carry tag, and how many distinct numbers.
func Count(recs []Record, tag string) (total, distinct int) {
	seen := map[int]bool{}
	for _, x := range recs {
		if t, i, ok := Parse(x.Rec.Message); ok && t == tag {
			total++
			seen[i] = true
		}
	}
	return total, len(seen)
}

// Append appends lines to path, creating it.
func Append(tb testing.TB, path string, lines ...string) {
	tb.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		tb.Fatal(err)
	}
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	if _, err := f.WriteString(b.String()); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
}

// Numbered returns Line(tag, i, pad) for i in [from, to).
func Numbered(tag string, from, to, pad int) []string {
	out := make([]string, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, Line(tag, i, pad))
	}
	return out
}

// InotifyFDs counts the inotify instances that process pid holds open
// (os.Getpid() for the test's own).
func InotifyFDs(tb testing.TB, pid int) int {
	tb.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	des, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	n := 0
	for _, de := range des {
		if l, err := os.Readlink(filepath.Join(dir, de.Name())); err == nil && l == "anon_inode:inotify" {
			n++
		}
	}
	return n
}
