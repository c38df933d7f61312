package harvest

import (
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/logpipe/logpipe/agent/internal/testkit"
	"github.com/logpipe/logpipe/common/collect"
	"github.com/logpipe/logpipe/common/record"
)

// position is what transfer derives a document's _id from.
type position struct {
	agent, dev, ino, fp string
	offset              int64
	message             string
}

func positionOf(r record.Record) position {
	f := r.Log.File
	return position{r.Agent.Name, f.DeviceID, f.Inode, f.Fingerprint, r.Log.Offset, r.Message}
}

// fingerprintAt is log.file.fingerprint as DESIGN.md defines it, computed
// from the file's content with the standard library.
func fingerprintAt(data []byte, off int64) string {
	h := fnv.New64a()
	h.Write(data[:min(off, record.FingerprintSize)])
	return fmt.Sprintf("%016x", h.Sum64())
}

func positions(recs []testkit.Record) []position {
	out := make([]position, 0, len(recs))
	for _, r := range recs {
		out = append(out, positionOf(r.Rec))
	}
	return out
}

// Every record carries its file's device, inode and the fingerprint of the
// bytes before it; an agent that lost its offsets (killed before it saved
// them) sends each line again with the very same source position: plain
// lines, a line cut at --max-line-bytes, and multiline events (at their
// first line's offset).
func TestSourcePositionSurvivesResend(t *testing.T) {
	e := newEnv(t)
	e.stop()
	e.opts.MaxLineBytes = 300
	e.start()
	path := e.path("pos.log")
	lines := []string{"2026-11-21 first"}
	lines = append(lines, testkit.Numbered("2026-11-21 pos", 0, 30, 60)...)
	lines = append(lines, "2026-11-21 long "+strings.Repeat("x", 1000)) // cut at 300 bytes
	lines = append(lines, "2026-11-21 ERROR boom", "java.lang.RuntimeException: x", "\tat a.B.c(B.java:1)")
	lines = append(lines, "2026-11-21 last")
	testkit.Append(t, path, lines...)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ml := func(c *collect.Entry) { c.Multiline = &collect.Multiline{Pattern: `^\d{4}-`, Negate: true} }
	cfg := collect.Config{entry(path, ml)}
	const events = 1 + 30 + 1 + 1 + 1
	e.mgr.Apply(cfg)
	first := e.kafka.WaitFor(waitLimit, "all events", func(r []testkit.Record) bool { return len(r) >= events })
	e.waitRead(path)

	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	id := identityOf(fi)
	dev, ino := strconv.FormatUint(id.Dev, 10), strconv.FormatUint(id.Ino, 10)
	full := fingerprintAt(data, record.FingerprintSize)
	sawFull, sawCut, sawMultiline := false, false, false
	for _, r := range first {
		f := r.Rec.Log.File
		if f.DeviceID != dev || f.Inode != ino || !r.Rec.HasPosition() {
			t.Fatalf("record at %d: device %q inode %q, want %q %q", r.Rec.Log.Offset, f.DeviceID, f.Inode, dev, ino)
		}
		if want := fingerprintAt(data, r.Rec.Log.Offset); f.Fingerprint != want {
			t.Fatalf("record at %d: fingerprint %s, want %s", r.Rec.Log.Offset, f.Fingerprint, want)
		}
		sawFull = sawFull || (r.Rec.Log.Offset >= record.FingerprintSize && f.Fingerprint == full)
		if r.Rec.HasFlag(record.FlagTruncated) {
			sawCut = len(r.Rec.Message) == 300
		}
		if r.Rec.HasFlag(record.FlagMultiline) {
			sawMultiline = r.Rec.Log.Offset == int64(strings.Index(string(data), "2026-11-21 ERROR"))
		}
	}
	if !sawFull || !sawCut || !sawMultiline {
		t.Fatalf("lines past the first KiB with the file's fingerprint %v, a cut line %v, a multiline event at its first line %v", sawFull, sawCut, sawMultiline)
	}

	// Killed before the offsets were saved: the state is gone, all is sent again.
	e.stop()
	olds, _ := filepath.Glob(filepath.Join(e.stateDir, "*"))
	for _, f := range olds {
		if err := os.RemoveAll(f); err != nil {
			t.Fatal(err)
		}
	}
	e.start()
	e.mgr.Apply(cfg)
	all := e.kafka.WaitFor(waitLimit, "the resend", func(r []testkit.Record) bool { return len(r) >= 2*events })
	if len(all) != 2*events {
		t.Fatalf("%d records, want %d", len(all), 2*events)
	}
	if a, b := positions(all[:events]), positions(all[events:]); !slices.Equal(a, b) {
		t.Fatalf("the resend's source positions differ:\n%v\n%v", a, b)
	}
}

// A file truncated and written again keeps its device and inode, and the
// new lines start at the same offsets: the fingerprint tells them apart,
// and where it cannot (the first line, whose fingerprint covers no byte,
// and lines past the first KiB when that KiB is the same) the message
// does. A line that is the same bytes at the same offset after the same
// first KiB cannot be told apart: it gets the old line's position.
func TestSourcePositionAfterRewrite(t *testing.T) {
	e := newEnv(t)
	path := e.path("rw.log")
	header := testkit.Numbered("header", 0, 20, 60) // more than 1 KiB, kept by the rewrite
	old := append(slices.Clone(header), testkit.Numbered("old", 0, 10, 60)...)
	old = append(old, "same line")
	testkit.Append(t, path, old...)
	e.mgr.Apply(collect.Config{entry(path)})
	e.waitLines("old", 10)
	e.waitRead(path)

	// copytruncate, then different first lines at the same offsets
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	testkit.Append(t, path, testkit.Numbered("new", 0, 10, 60)...)
	e.waitLines("new", 10)
	e.waitRead(path)
	// truncated and rewritten with the same first KiB
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	again := append(slices.Clone(header), testkit.Numbered("again", 0, 10, 60)...)
	again = append(again, "same line")
	testkit.Append(t, path, again...)
	e.waitLines("again", 10)
	e.waitRead(path)

	byTag := map[string][]position{}
	for _, r := range e.kafka.Records() {
		tag, _, ok := testkit.Parse(r.Rec.Message)
		if !ok {
			tag = r.Rec.Message
		}
		byTag[tag] = append(byTag[tag], positionOf(r.Rec))
	}
	for i, o := range byTag["old"] {
		n, a := byTag["new"][i], byTag["again"][i]
		if o.dev != n.dev || o.ino != n.ino {
			t.Fatalf("the truncated file changed identity: %v %v", o, n)
		}
		if n.offset >= record.FingerprintSize && n.fp == o.fp {
			t.Fatalf("line %d at %d after copytruncate: same fingerprint %s", i, n.offset, n.fp)
		}
		if a.fp != o.fp || a.offset != o.offset || a.message == o.message {
			t.Fatalf("line %d of the rewrite with the same first KiB: %v, old %v", i, a, o)
		}
	}
	if len(byTag["header"]) != 40 || byTag["header"][0] != byTag["header"][20] || byTag["header"][5] != byTag["header"][25] {
		t.Fatalf("the same header written again at the same offsets must have the same positions: %d", len(byTag["header"]))
	}
	if same := byTag["same line"]; len(same) != 2 || same[0] != same[1] {
		t.Fatalf("the same line at the same offset after the same first KiB: %v", same)
	}
	if byTag["new"][0].offset != 0 || byTag["new"][0].fp != byTag["header"][0].fp || byTag["new"][0].message == byTag["header"][0].message {
		t.Fatalf("first lines: %v and %v", byTag["new"][0], byTag["header"][0])
	}
}
