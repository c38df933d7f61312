package registry

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/logpipe/logpipe/agent/internal/producer"
	"github.com/logpipe/logpipe/agent/internal/tail"
)

func always(tail.Fingerprint) (bool, error) { return true, nil }
func never(tail.Fingerprint) (bool, error)  { return false, nil }

func openReg(t testing.TB, dir string) *Registry {
	t.Helper()
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func msg(start, end int64) *producer.Message { return &producer.Message{Start: start, End: end} }

func TestCommittedAdvancesOnlyContiguously(t *testing.T) {
	r := openReg(t, t.TempDir())
	tr, known, err := r.Attach(tail.Identity{Dev: 1, Ino: 2}, "a.log", always)
	if err != nil || known {
		t.Fatalf("attach: %v known=%v", err, known)
	}
	ms := []*producer.Message{msg(0, 10), msg(10, 20), msg(20, 30)}
	for _, m := range ms {
		tr.Push(m, m.End)
	}
	if c := tr.Committed(); c != 0 {
		t.Fatalf("committed %d with nothing acknowledged", c)
	}
	tr.Done(ms[2], nil) // out of order
	if c := tr.Committed(); c != 0 {
		t.Fatalf("committed %d after the last record only", c)
	}
	tr.Done(ms[0], nil)
	if c := tr.Committed(); c != 10 {
		t.Fatalf("committed %d, want 10", c)
	}
	select {
	case <-tr.Idle():
		t.Fatal("idle with a record in flight")
	default:
	}
	tr.Done(ms[1], nil)
	if c := tr.Committed(); c != 30 {
		t.Fatalf("committed %d, want 30", c)
	}
	<-tr.Idle()
	if tr.Acked() != 3 {
		t.Fatalf("acked %d", tr.Acked())
	}
}

func TestFailureRetriesFromMemory(t *testing.T) {
	r := openReg(t, t.TempDir())
	tr, _, _ := r.Attach(tail.Identity{Dev: 1, Ino: 3}, "b.log", always)
	tr.Advance(100)
	ms := []*producer.Message{msg(100, 110), msg(110, 120), msg(120, 130), msg(130, 140)}
	for _, m := range ms {
		tr.Push(m, m.End)
	}
	tr.Done(ms[0], nil)
	tr.Done(ms[1], errors.New("broker down"))
	tr.Done(ms[2], nil) // after the failure: does not count yet
	tr.Done(ms[3], errors.New("broker down"))
	if failed, err := tr.Failed(); !failed || err == nil {
		t.Fatal("failure not reported")
	}
	if c := tr.Committed(); c != 110 {
		t.Fatalf("committed %d, want 110", c)
	}
	<-tr.Idle()
	again := tr.Retry()
	if len(again) != 3 || again[0] != ms[1] || again[1] != ms[2] || again[2] != ms[3] {
		t.Fatalf("retry gave %d records, want the three from the first failed one, in file order", len(again))
	}
	if failed, _ := tr.Failed(); failed {
		t.Fatal("still failed after retry")
	}
	select {
	case <-tr.Idle():
		t.Fatal("idle with the records sent again")
	default:
	}
	if c, n := tr.Consumed(), tr.Inflight(); c != 140 || n != 3 {
		t.Fatalf("consumed %d and %d in flight after retry, want 140 and 3", c, n)
	}
	tr.Done(ms[2], nil)
	if c := tr.Committed(); c != 110 {
		t.Fatalf("committed %d, want 110 (the first record sent again is not acknowledged)", c)
	}
	tr.Done(ms[1], nil)
	if c := tr.Committed(); c != 130 {
		t.Fatalf("committed %d, want 130", c)
	}
	tr.Done(ms[3], nil)
	<-tr.Idle()
	if c := tr.Committed(); c != 140 {
		t.Fatalf("committed %d, want 140", c)
	}
}

func TestSaveAndReopen(t *testing.T) {
	dir := t.TempDir()
	r := openReg(t, dir)
	id := tail.Identity{Dev: 7, Ino: 8}
	tr, _, _ := r.Attach(id, "c.log", always)
	fp := tail.Fingerprint{Len: 5, Hash: 42}
	tr.SetFingerprint(fp)
	m := msg(0, 50)
	tr.Push(m, 50)
	tr.Done(m, nil)
	if err := r.Save(); err != nil {
		t.Fatal(err)
	}
	tr.Close()

	r2 := openReg(t, dir)
	if off, ok := r2.Offset(id); !ok || off != 50 {
		t.Fatalf("reopened offset %d %v", off, ok)
	}
	var seen tail.Fingerprint
	tr2, known, err := r2.Attach(id, "c.log", func(f tail.Fingerprint) (bool, error) { seen = f; return true, nil })
	if err != nil || !known || tr2.Committed() != 50 || seen != fp {
		t.Fatalf("attach after reopen: known=%v committed=%d fp=%+v err=%v", known, tr2.Committed(), seen, err)
	}
	if _, _, err := r2.Attach(id, "c.log", always); !errors.Is(err, ErrBusy) {
		t.Fatalf("second attach: %v, want ErrBusy", err)
	}
	tr2.Close()
	// Same inode, different content: a new file.
	tr3, known, err := r2.Attach(id, "c.log", never)
	if err != nil || known || tr3.Committed() != 0 {
		t.Fatalf("attach with another fingerprint: known=%v committed=%d err=%v", known, tr3.Committed(), err)
	}
}

func TestSaveSkipsUnchangedAndIsAtomic(t *testing.T) {
	dir := t.TempDir()
	r := openReg(t, dir)
	tr, _, _ := r.Attach(tail.Identity{Dev: 1, Ino: 1}, "d.log", always)
	tr.Advance(5)
	if err := r.Save(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, FileName)
	fi1, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	if err := r.Save(); err != nil {
		t.Fatal(err)
	}
	fi2, _ := os.Stat(path)
	if !fi2.ModTime().Equal(fi1.ModTime()) {
		t.Fatal("unchanged registry written again")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
}

func TestCorruptFileIsKeptAside(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := Open(dir)
	if err == nil || r == nil {
		t.Fatalf("corrupt registry: r=%v err=%v", r, err)
	}
	if _, err := os.Stat(filepath.Join(dir, FileName+".corrupt")); err != nil {
		t.Fatal(err)
	}
}

func TestClosedEntriesExpire(t *testing.T) {
	r := openReg(t, t.TempDir())
	now := time.Now()
	r.now = func() time.Time { return now }
	id := tail.Identity{Dev: 2, Ino: 2}
	tr, _, _ := r.Attach(id, "e.log", always)
	tr.Advance(3)
	tr.Close()
	now = now.Add(DefaultTTL + time.Minute)
	if err := r.Save(); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Offset(id); ok {
		t.Fatal("expired entry kept")
	}
}
