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
	tr, known, err := r.Attach(tail.Identity{Dev: 1, Ino: 2}, "a.log", always, 0)
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
	tr, _, _ := r.Attach(tail.Identity{Dev: 1, Ino: 3}, "b.log", always, 100)
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
	tr, _, _ := r.Attach(id, "c.log", always, 0)
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
	tr2, known, err := r2.Attach(id, "c.log", func(f tail.Fingerprint) (bool, error) { seen = f; return true, nil }, 0)
	if err != nil || !known || tr2.Committed() != 50 || seen != fp {
		t.Fatalf("attach after reopen: known=%v committed=%d fp=%+v err=%v", known, tr2.Committed(), seen, err)
	}
	if _, _, err := r2.Attach(id, "c.log", always, 0); !errors.Is(err, ErrBusy) {
		t.Fatalf("second attach: %v, want ErrBusy", err)
	}
	tr2.Close()
	// Same inode, different content: a new file.
	tr3, known, err := r2.Attach(id, "c.log", never, 0)
	if err != nil || known || tr3.Committed() != 0 {
		t.Fatalf("attach with another fingerprint: known=%v committed=%d err=%v", known, tr3.Committed(), err)
	}
}

func TestSaveSkipsUnchangedAndIsAtomic(t *testing.T) {
	dir := t.TempDir()
	r := openReg(t, dir)
	tr, _, _ := r.Attach(tail.Identity{Dev: 1, Ino: 1}, "d.log", always, 0)
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

// However old the entries, nothing is dropped by opening and saving the
// registry: an agent that was stopped for days and cannot reach Kafka yet
// keeps every offset. Expire drops only files no entry covers.
func TestOldEntriesKeptUntilExpiredByConfig(t *testing.T) {
	dir := t.TempDir()
	r := openReg(t, dir)
	past := time.Now().Add(-3 * DefaultTTL)
	r.now = func() time.Time { return past }
	covered, other := tail.Identity{Dev: 2, Ino: 2}, tail.Identity{Dev: 2, Ino: 3}
	for _, x := range []struct {
		id   tail.Identity
		path string
	}{{covered, "/logs/a.log"}, {other, "/old/b.log"}} {
		tr, _, _ := r.Attach(x.id, x.path, always, 3)
		tr.Close()
	}
	if err := r.Save(); err != nil {
		t.Fatal(err)
	}

	r2 := openReg(t, dir)
	for range 3 {
		if err := r2.Save(); err != nil {
			t.Fatal(err)
		}
	}
	r3 := openReg(t, dir)
	if len(r3.Entries()) != 2 {
		t.Fatalf("entries after reopening and saving: %+v", r3.Entries())
	}
	gone := r3.Expire(func(path string) bool { return filepath.Dir(path) == "/logs" })
	if len(gone) != 1 || gone[0].Identity != other {
		t.Fatalf("expired %+v, want only %v", gone, other)
	}
	if off, ok := r3.Offset(covered); !ok || off != 3 {
		t.Fatalf("covered entry: offset %d %v", off, ok)
	}
}

func TestForgetOnlyDetachedAndSameFile(t *testing.T) {
	r := openReg(t, t.TempDir())
	id := tail.Identity{Dev: 4, Ino: 4}
	fp := tail.Fingerprint{Len: 3, Hash: 9}
	tr, _, _ := r.Attach(id, "f.log", always, 0)
	tr.SetFingerprint(fp)
	if r.Forget(id, fp) {
		t.Fatal("forgot a file being read")
	}
	tr.Close()
	if d := r.Detached(func(p string) bool { return p == "f.log" }); len(d) != 1 || d[0].Fingerprint != fp {
		t.Fatalf("detached %+v", d)
	}
	if r.Forget(id, tail.Fingerprint{Len: 3, Hash: 10}) {
		t.Fatal("forgot another file with the same inode")
	}
	if !r.Forget(id, fp) {
		t.Fatal("did not forget a detached file")
	}
	if _, ok := r.Offset(id); ok {
		t.Fatal("forgotten file still there")
	}
}

func TestAppliedEntriesPersist(t *testing.T) {
	dir := t.TempDir()
	r := openReg(t, dir)
	r.MarkApplied("/logs/*.log")
	r.MarkApplied("/logs/app.log")
	if err := r.Save(); err != nil {
		t.Fatal(err)
	}
	r2 := openReg(t, dir)
	if !r2.Applied("/logs/*.log") || !r2.Applied("/logs/app.log") || r2.Applied("/logs/other.log") {
		t.Fatal("applied entries not kept across a reopen")
	}
	r2.KeepApplied([]string{"/logs/app.log"})
	if err := r2.Save(); err != nil {
		t.Fatal(err)
	}
	r3 := openReg(t, dir)
	if r3.Applied("/logs/*.log") || !r3.Applied("/logs/app.log") {
		t.Fatal("an entry removed from the config is still remembered as applied")
	}
}

func TestUnknownFileStartsWhereAsked(t *testing.T) {
	r := openReg(t, t.TempDir())
	id := tail.Identity{Dev: 5, Ino: 5}
	if _, err := r.Reattach(id, "g.log", always); !errors.Is(err, ErrUnknown) {
		t.Fatalf("reattach of an unknown file: %v", err)
	}
	if len(r.Entries()) != 0 {
		t.Fatal("reattach recorded an unknown file")
	}
	tr, known, err := r.Attach(id, "g.log", always, 42)
	if err != nil || known || tr.Committed() != 42 {
		t.Fatalf("attach at 42: known=%v committed=%d err=%v", known, tr.Committed(), err)
	}
	if off, _ := r.Offset(id); off != 42 {
		t.Fatalf("registry offset %d before anything was read", off)
	}
	tr.Close()
	tr2, err := r.Reattach(id, "g.log", always)
	if err != nil || tr2.Committed() != 42 {
		t.Fatalf("reattach: %v", err)
	}
}
