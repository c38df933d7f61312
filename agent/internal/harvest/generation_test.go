package harvest

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/logpipe/logpipe/agent/internal/registry"
	"github.com/logpipe/logpipe/agent/internal/testkit"
	"github.com/logpipe/logpipe/common/collect"
)

// generations returns, in the order they first appear, the generations of
// tag's records, and the records of each.
func generations(recs []testkit.Record, tag string) ([]string, map[string][]testkit.Record) {
	var order []string
	by := map[string][]testkit.Record{}
	for _, r := range recs {
		if x, _, ok := testkit.Parse(r.Rec.Message); !ok || x != tag {
			continue
		}
		g := r.Rec.Log.File.Generation
		if _, ok := by[g]; !ok {
			order = append(order, g)
		}
		by[g] = append(by[g], r)
	}
	return order, by
}

// copyTruncate copies path aside and truncates it in place, as logrotate's
// copytruncate does.
func copyTruncate(t testing.TB, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".1", data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
}

// Three generations of a file, made by two copytruncates, begin with the
// same lines: each line of each generation is sent once, with its own
// generation, the same for all lines of a generation and kept across a
// restart of the agent.
func TestGenerationPerCopyTruncate(t *testing.T) {
	e := newEnv(t)
	path := e.path("gen.log")
	same := testkit.Numbered("same", 0, 10, 40)
	testkit.Append(t, path, same...)
	e.mgr.Apply(collect.Config{entry(path)})
	e.waitLines("same", 10)
	e.waitRead(path)
	for round := 2; round <= 3; round++ {
		copyTruncate(t, path)
		// The same bytes written again are a new generation only for an
		// agent that saw the file shorter: wait for that, as the premise.
		waitFor(t, "the truncation seen", func() bool {
			fs := e.mgr.Files()
			return len(fs) == 1 && fs[0].Offset == 0 && fs[0].Size == 0
		})
		testkit.Append(t, path, same...)
		e.kafka.WaitFor(waitLimit, "the new generation's lines", func(recs []testkit.Record) bool {
			order, by := generations(recs, "same")
			return len(order) == round && len(by[order[round-1]]) >= 10
		})
		e.waitRead(path)
		if round == 2 {
			// The generation outlives the agent.
			e.stop()
			e.start()
			e.mgr.Apply(collect.Config{entry(path)})
			testkit.Append(t, path, "after 0")
			e.waitLines("after", 1)
			e.waitRead(path)
		}
	}
	recs := e.kafka.Records()
	order, by := generations(recs, "same")
	if len(order) != 3 {
		t.Fatalf("%d generations, want 3: %v", len(order), order)
	}
	for i, g := range order {
		if len(g) != 16 || strings.Trim(g, "0123456789abcdef") != "" || g == strings.Repeat("0", 16) {
			t.Fatalf("generation %q", g)
		}
		if dups, err := testkit.Check(by[g], "same", 10); err != nil || dups != 0 {
			t.Fatalf("generation %d (%s): %v, %d duplicates", i+1, g, err, dups)
		}
		if first := by[g][0].Rec.Log; first.Offset != 0 || first.File.Fingerprint != by[order[0]][0].Rec.Log.File.Fingerprint {
			t.Fatalf("generation %d does not begin like the first: %+v", i+1, first)
		}
	}
	_, after := generations(recs, "after")
	if len(after[order[1]]) != 1 {
		t.Fatalf("the line appended after the restart is not in the second generation: %v", after)
	}
	if got := e.reg.Entries(); len(got) != 1 || got[0].Generation != order[2] {
		t.Fatalf("registry %+v, want generation %s", got, order[2])
	}
}

// A directory that is missing for a while (renamed away, a mount that
// comes late) keeps its files' offsets over many sweeps: when it is back,
// its file is read on from where it was, nothing read twice.
func TestMissingDirectoryKeepsOffsets(t *testing.T) {
	e := newEnv(t)
	e.stop()
	e.opts.SweepInterval = 100 * time.Millisecond
	e.start()
	dir := e.path("mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "late.log")
	testkit.Append(t, path, testkit.Numbered("late", 0, 100, 40)...)
	e.mgr.Apply(collect.Config{entry(path)})
	e.waitRead(path)
	id := identity(t, path)
	away := e.path("away")
	if err := os.Rename(dir, away); err != nil {
		t.Fatal(err)
	}
	testkit.Append(t, filepath.Join(away, "late.log"), testkit.Numbered("late", 100, 150, 40)...)
	// The premise: nobody reads the file any more, so every sweep looks
	// for it (the rotated reader closes after RotatedIdle).
	waitFor(t, "the file closed", func() bool { return len(e.mgr.Files()) == 0 })
	// Well past the two sweeps after which a file missing from a
	// directory that is there is forgotten.
	time.Sleep(20 * e.opts.SweepInterval)
	off, ok := e.reg.Offset(id)
	if !ok {
		t.Fatal("the offset of a file whose directory is missing was forgotten")
	}
	testkit.Append(t, filepath.Join(away, "late.log"), testkit.Numbered("late", 150, 200, 40)...)
	if err := os.Rename(away, dir); err != nil {
		t.Fatal(err)
	}
	testkit.Append(t, path, testkit.Numbered("late", 200, 250, 40)...)
	if dups := e.waitLines("late", 250); dups != 0 {
		t.Fatalf("%d lines read twice (offset kept: %d)", dups, off)
	}
	e.waitRead(path)
	time.Sleep(5 * e.opts.PollMax) // a re-read from 0 would have started by now
	if dups, err := testkit.Check(e.kafka.Records(), "late", 250); err != nil || dups != 0 {
		t.Fatalf("%v, %d lines read twice", err, dups)
	}
}

// A device-number change (simulated: the registry's device numbers are
// rewritten while the agent is stopped, which is what the agent sees after
// a disk comes back under another number): the file is read on from its
// offset, in its generation, nothing read twice.
func TestDeviceNumberChangeKeepsOffset(t *testing.T) {
	e := newEnv(t)
	path := e.path("dev.log")
	testkit.Append(t, path, testkit.Numbered("dev", 0, 100, 40)...)
	e.mgr.Apply(collect.Config{entry(path)})
	e.waitRead(path)
	e.stop()
	renumberDevices(t, e.stateDir, 1000)
	e.start()
	e.mgr.Apply(collect.Config{entry(path)})
	testkit.Append(t, path, testkit.Numbered("dev", 100, 150, 40)...)
	if dups := e.waitLines("dev", 150); dups != 0 {
		t.Fatalf("%d lines read twice after the device number changed", dups)
	}
	e.waitRead(path)
	order, _ := generations(e.kafka.Records(), "dev")
	if len(order) != 1 {
		t.Fatalf("generations %v, want one", order)
	}
	if got := e.reg.Entries(); len(got) != 1 || got[0].Identity != identity(t, path) {
		t.Fatalf("registry %+v", got)
	}
}

// renumberDevices adds delta to every device number in the registry file
// of an agent that is stopped.
func renumberDevices(t testing.TB, stateDir string, delta uint64) {
	t.Helper()
	file := filepath.Join(stateDir, registry.FileName)
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // the fingerprints' 64-bit hashes do not fit a float64
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	files, _ := doc["files"].([]any)
	if len(files) == 0 {
		t.Fatalf("no file in %s", data)
	}
	for _, f := range files {
		id := f.(map[string]any)["identity"].(map[string]any)
		dev, err := strconv.ParseUint(string(id["dev"].(json.Number)), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		id["dev"] = dev + delta
	}
	if data, err = json.Marshal(doc); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A limit, documented in agent/README.md: a file rewritten while the agent
// was stopped, with the same first bytes and at least as long as the
// offset the agent had, cannot be told from the file it had. The agent
// reads on from its offset, in the old generation: the new lines before
// that offset are not read.
func TestRewriteWhileStoppedIsNotNoticed(t *testing.T) {
	e := newEnv(t)
	path := e.path("rw.log")
	header := testkit.Numbered("header", 0, 20, 60) // more than the fingerprint's 1 KiB
	testkit.Append(t, path, slices.Concat(header, testkit.Numbered("old", 0, 10, 60))...)
	e.mgr.Apply(collect.Config{entry(path)})
	e.waitLines("old", 10)
	e.waitRead(path)
	e.stop()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	testkit.Append(t, path, slices.Concat(header, testkit.Numbered("new", 0, 20, 60))...)
	e.start()
	e.mgr.Apply(collect.Config{entry(path)})
	e.waitRead(path)
	recs := e.kafka.Records()
	oldGens, _ := generations(recs, "old")
	newGens, by := generations(recs, "new")
	if len(newGens) != 1 || newGens[0] != oldGens[0] {
		t.Fatalf("the rewrite's generations %v, the old file's %v: the rewrite was noticed; update agent/README.md", newGens, oldGens)
	}
	var got []int
	for _, r := range by[newGens[0]] {
		_, n, _ := testkit.Parse(r.Rec.Message)
		got = append(got, n)
	}
	if want := []int{10, 11, 12, 13, 14, 15, 16, 17, 18, 19}; !slices.Equal(got, want) {
		t.Fatalf("lines of the rewrite read: %v, want %v", got, want)
	}
}
