package registry

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/logpipe/logpipe/agent/internal/tail"
)

var generationForm = regexp.MustCompile(`^[0-9a-f]{16}$`)

func matchesOnly(want tail.Fingerprint) func(tail.Fingerprint) (bool, error) {
	return func(fp tail.Fingerprint) (bool, error) { return fp == want, nil }
}

// A new file starts a generation, which is on disk when Attach returns:
// a crash right after its first lines were sent must not give their
// resends another generation.
func TestNewFileGenerationDurableAtAttach(t *testing.T) {
	dir := t.TempDir()
	r := openReg(t, dir)
	id := tail.Identity{Dev: 1, Ino: 2}
	tr, known, err := r.Attach(id, "a.log", always, 0)
	if err != nil || known {
		t.Fatalf("attach: %v known=%v", err, known)
	}
	gen := tr.Generation()
	if !generationForm.MatchString(gen) || gen == strings.Repeat("0", 16) {
		t.Fatalf("generation %q", gen)
	}
	// No Save: what Attach wrote is what a restart finds.
	r2 := openReg(t, dir)
	tr2, known, err := r2.Attach(id, "a.log", always, 0)
	if err != nil || !known || tr2.Generation() != gen {
		t.Fatalf("after a crash: %v known=%v generation %q, want %q", err, known, tr2.Generation(), gen)
	}
}

// A known file keeps its generation; a new file on its inode (its first
// bytes differ) starts another one, and so does a truncation.
func TestGenerationBumps(t *testing.T) {
	dir := t.TempDir()
	r := openReg(t, dir)
	id := tail.Identity{Dev: 1, Ino: 2}
	fp := tail.Fingerprint{Len: 10, Hash: 42}
	tr, _, _ := r.Attach(id, "a.log", always, 0)
	first := tr.Generation()
	tr.SetFingerprint(fp)
	tr.Advance(100)
	tr.Close()

	tr, known, _ := r.Attach(id, "a.log", matchesOnly(fp), 0)
	if !known || tr.Generation() != first || tr.Committed() != 100 {
		t.Fatalf("the same file: known=%v generation %q (was %q) offset %d", known, tr.Generation(), first, tr.Committed())
	}
	// Truncated: the reader starts over at 0 in a new generation, on disk
	// before NewGeneration returns.
	tr.Advance(0)
	tr.SetFingerprint(tail.Fingerprint{})
	second, err := tr.NewGeneration()
	if err != nil || second == first || tr.Generation() != second {
		t.Fatalf("after a truncation: %v generation %q (was %q)", err, second, first)
	}
	if e := onDisk(t, dir, id); e.Generation != second || e.Offset != 0 {
		t.Fatalf("on disk after the truncation: %+v", e)
	}
	tr.SetFingerprint(fp)
	tr.Advance(50)
	tr.Close()

	// Another file on the same inode.
	tr, known, _ = r.Attach(id, "a.log", never, 0)
	third := tr.Generation()
	if known || third == first || third == second || tr.Committed() != 0 {
		t.Fatalf("a new file on the inode: known=%v generation %q offset %d", known, third, tr.Committed())
	}
	if e := onDisk(t, dir, id); e.Generation != third {
		t.Fatalf("on disk after a new file on the inode: %+v", e)
	}
}

// An entry written by an agent that had no generations keeps none, so
// that the lines it sends again keep their _id; its next generation gets
// one.
func TestEntryWithoutGenerationKeepsNone(t *testing.T) {
	dir := t.TempDir()
	old := `{"version":1,"files":[{"identity":{"dev":1,"ino":2},"fingerprint":{"len":10,"hash":42},"path":"a.log","offset":100,"seen":"2026-11-21T10:00:00Z"}],"applied":[]}`
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	r := openReg(t, dir)
	tr, known, err := r.Attach(tail.Identity{Dev: 1, Ino: 2}, "a.log", always, 0)
	if err != nil || !known || tr.Generation() != "" || tr.Committed() != 100 {
		t.Fatalf("attach: %v known=%v generation %q offset %d", err, known, tr.Generation(), tr.Committed())
	}
	if gen, err := tr.NewGeneration(); err != nil || gen == "" {
		t.Fatalf("new generation %q: %v", gen, err)
	}
}

// A file whose device number changed is the file the registry knows
// under the same inode and path: its entry moves to the new identity with
// its offset and generation.
func TestDeviceNumberChangeTakesEntryOver(t *testing.T) {
	dir := t.TempDir()
	r := openReg(t, dir)
	was, now := tail.Identity{Dev: 2049, Ino: 7}, tail.Identity{Dev: 2050, Ino: 7}
	fp := tail.Fingerprint{Len: 10, Hash: 42}
	tr, _, _ := r.Attach(was, "a.log", always, 0)
	gen := tr.Generation()
	tr.SetFingerprint(fp)
	tr.Advance(100)
	tr.Close()

	// Not taken over: another path, or other first bytes.
	if tr, known, _ := r.Attach(tail.Identity{Dev: 2060, Ino: 7}, "b.log", always, 0); known || tr.Generation() == gen {
		t.Fatalf("a file of another path took the entry over: known=%v", known)
	} else {
		tr.Close()
	}
	if _, ok := r.Offset(was); !ok {
		t.Fatal("the old entry is gone after a file of another path")
	}
	other := tail.Identity{Dev: 2051, Ino: 7}
	if tr, known, _ := r.Attach(other, "a.log", never, 0); known {
		t.Fatal("a file with other first bytes took the entry over")
	} else {
		tr.Close()
	}
	// Not while the old identity is being read.
	old, _, _ := r.Attach(was, "a.log", matchesOnly(fp), 0)
	third := tail.Identity{Dev: 2052, Ino: 7}
	if tr, known, _ := r.Attach(third, "a.log", always, 0); known {
		t.Fatal("an entry being read was taken over")
	} else {
		tr.Close()
	}
	old.Close()

	tr, known, err := r.Attach(now, "a.log", matchesOnly(fp), 0)
	if err != nil || !known || tr.Generation() != gen || tr.Committed() != 100 {
		t.Fatalf("after the renumbering: %v known=%v generation %q (want %q) offset %d", err, known, tr.Generation(), gen, tr.Committed())
	}
	if from, ok := tr.MovedFrom(); !ok || from != was {
		t.Fatalf("moved from %v %v, want %v", from, ok, was)
	}
	if _, ok := r.Offset(was); ok {
		t.Fatal("the entry is still under its old identity")
	}
}

func onDisk(t *testing.T, dir string, id tail.Identity) Entry {
	t.Helper()
	r := openReg(t, dir)
	for _, e := range r.Entries() {
		if e.Identity == id {
			return e
		}
	}
	t.Fatalf("%v not on disk", id)
	return Entry{}
}
