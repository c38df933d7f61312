package harvest

import (
	"os"
	"slices"
	"testing"
	"time"

	"github.com/logpipe/logpipe/agent/internal/tail"
	"github.com/logpipe/logpipe/agent/internal/testkit"
	"github.com/logpipe/logpipe/common/collect"
)

func fromEnd(c *collect.Entry) { c.From = collect.FromEnd }

// exactly checks that tag's lines [0, n) arrived once each, in order, and
// returns their records.
func (e *env) exactly(tag string, n int) []testkit.Record {
	e.t.Helper()
	if dups := e.waitLines(tag, n); dups != 0 {
		e.t.Fatalf("%s: %d duplicates", tag, dups)
	}
	var out []testkit.Record
	for _, r := range e.kafka.Records() {
		if x, _, ok := testkit.Parse(r.Rec.Message); ok && x == tag {
			out = append(out, r)
		}
	}
	return out
}

// A node reboot with logrotate running first: the agent is stopped, the
// application writes on, its log is renamed and a new one created. At start
// the rest of the old file is read (it is no longer at the entry's path)
// and then the whole new file, although the entry starts at the end: the
// new file appeared after the entry was first applied.
func TestRotationWhileStopped(t *testing.T) {
	e := newEnv(t)
	path := e.path("app.log")
	testkit.Append(t, path, testkit.Numbered("before", 0, 50, 40)...)
	cfg := collect.Config{entry(path, fromEnd)}
	e.mgr.Apply(cfg)
	e.waitRead(path)
	testkit.Append(t, path, testkit.Numbered("old", 0, 10, 40)...)
	e.waitLines("old", 10)
	e.waitRead(path)
	e.stop()

	testkit.Append(t, path, testkit.Numbered("old", 10, 110, 40)...)
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	testkit.Append(t, path, testkit.Numbered("new", 0, 100, 40)...)
	e.start()
	e.mgr.Apply(cfg)
	testkit.Append(t, path, testkit.Numbered("new", 100, 200, 40)...)

	old, nw := e.exactly("old", 110), e.exactly("new", 200)
	if total, _ := testkit.Count(e.kafka.Records(), "before"); total != 0 {
		t.Fatalf("%d lines from before the entry was applied", total)
	}
	for _, r := range old {
		if r.Rec.Log.File.Path != path || r.Key != "app" {
			t.Fatalf("record of the rotated file: key %q path %s", r.Key, r.Rec.Log.File.Path)
		}
	}
	// One job, one partition: the old file's lines come before the new one's.
	if last, first := old[len(old)-1], nw[0]; last.Partition != first.Partition || last.Offset > first.Offset {
		t.Fatalf("old file's last line at %d/%d, new file's first at %d/%d", last.Partition, last.Offset, first.Partition, first.Offset)
	}
}

// "from" applies to the files present when an entry is first applied, not
// to files that appear later, even while the agent is stopped. An entry
// removed from the config and added again is applied anew.
func TestFromOnlyAtFirstApply(t *testing.T) {
	e := newEnv(t)
	a, b, c, d := e.path("a.log"), e.path("b.log"), e.path("c.log"), e.path("d.log")
	testkit.Append(t, a, testkit.Numbered("olda", 0, 20, 0)...)
	cfg := collect.Config{entry(e.path("*.log"), fromEnd)}
	e.mgr.Apply(cfg)
	e.waitRead(a)
	testkit.Append(t, a, testkit.Numbered("a", 0, 5, 0)...)
	testkit.Append(t, b, testkit.Numbered("b", 0, 5, 0)...) // appears while running
	e.waitLines("a", 5)
	e.waitLines("b", 5)
	e.waitRead(a)
	e.waitRead(b)
	e.stop()

	testkit.Append(t, c, testkit.Numbered("c", 0, 30, 0)...) // appears while stopped
	testkit.Append(t, a, testkit.Numbered("a", 5, 10, 0)...)
	e.start()
	e.mgr.Apply(cfg)
	e.exactly("c", 30)
	e.exactly("a", 10)
	e.exactly("b", 5)
	if total, _ := testkit.Count(e.kafka.Records(), "olda"); total != 0 {
		t.Fatalf("%d lines from before the entry was first applied", total)
	}

	e.mgr.Apply(collect.Config{})
	testkit.Append(t, d, testkit.Numbered("oldd", 0, 20, 0)...)
	e.mgr.Apply(cfg)
	e.waitRead(d)
	testkit.Append(t, d, testkit.Numbered("d", 0, 5, 0)...)
	e.exactly("d", 5)
	if total, _ := testkit.Count(e.kafka.Records(), "oldd"); total != 0 {
		t.Fatalf("%d lines from before the entry was applied again", total)
	}
}

// The registry forgets a file once the entry covering its path found it
// gone twice, and keeps a rotated one that is still in the directory.
func TestGoneFilesForgotten(t *testing.T) {
	e := newEnv(t)
	e.stop()
	e.opts.SweepInterval = 100 * time.Millisecond
	e.start()
	path := e.path("s.log")
	testkit.Append(t, path, testkit.Numbered("x", 0, 10, 0)...)
	e.mgr.Apply(collect.Config{entry(path)})
	e.waitRead(path)
	kept := identity(t, path)
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	testkit.Append(t, path, testkit.Numbered("y", 0, 10, 0)...)
	e.waitRead(path)
	gone := identity(t, path)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	e.waitLines("y", 10)
	deadline := time.Now().Add(waitLimit)
	for {
		ids := []tail.Identity{}
		for _, x := range e.reg.Entries() {
			ids = append(ids, x.Identity)
		}
		if !slices.Contains(ids, gone) {
			if !slices.Contains(ids, kept) {
				t.Fatalf("the rotated file still in the directory was forgotten too: %v", ids)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deleted file %v still in the registry: %v", gone, ids)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func identity(t testing.TB, path string) tail.Identity {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return tail.IdentityOf(fi)
}
