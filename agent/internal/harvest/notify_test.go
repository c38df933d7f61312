package harvest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/logpipe/logpipe/agent/internal/testkit"
	"github.com/logpipe/logpipe/common/collect"
)

// never is a poll interval no test outlives: with it, only a change
// notification can make a reader, harvester or scan look again.
const never = time.Hour

// newNotifyOnlyEnv is an environment whose reader, harvester and scan
// polls never come within the test: only a change notification makes
// them look again.
func newNotifyOnlyEnv(t *testing.T) *env {
	t.Helper()
	e := newEnv(t)
	e.stop()
	e.opts.PollMax, e.opts.ScanInterval = never, never
	e.start()
	return e
}

func (e *env) wakeups(by string) float64 {
	return testutil.ToFloat64(e.opts.Metrics.Wakeups.WithLabelValues(by))
}

// A line appended to an idle file is read because the kernel reported the
// write: the reader's poll (and the harvester's and the scan's) would not
// come within the test.
func TestAppendReadOnNotification(t *testing.T) {
	e := newNotifyOnlyEnv(t)
	path := e.path("idle.log")
	testkit.Append(t, path, testkit.Numbered("idle", 0, 1, 0)...)
	e.mgr.Apply(collect.Config{entry(path)})
	e.waitLines("idle", 1)
	for i := 1; i <= 5; i++ {
		testkit.Append(t, path, testkit.Numbered("idle", i, i+1, 0)...)
		e.waitLines("idle", i+1)
	}
	if n := e.wakeups("notification"); n < 5 {
		t.Errorf("%v wakeups by notification for 5 appends; want 5 or more", n)
	}
	if n := e.wakeups("poll"); n != 0 {
		t.Errorf("%v wakeups by poll with a poll interval of %v", n, never)
	}
}

// Rotation by rename and create, and a new file created or renamed into a
// watched directory, are noticed through notifications alone.
func TestRenameCreateNotified(t *testing.T) {
	e := newNotifyOnlyEnv(t)
	path := e.path("app.log")
	testkit.Append(t, path, testkit.Numbered("rot", 0, 100, 50)...)
	e.mgr.Apply(collect.Config{entry(path), entry(e.path("*.json"))})
	e.waitRead(path)

	// Rotation: the rest of the old file, then the new one.
	testkit.Append(t, path, testkit.Numbered("rot", 100, 200, 50)...)
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	testkit.Append(t, path, testkit.Numbered("new", 0, 100, 50)...)
	e.waitLines("new", 100)
	if dups := e.waitLines("rot", 200); dups != 0 {
		t.Errorf("%d duplicates across the rotation", dups)
	}

	// A file created where the glob looks, and one renamed to a name it
	// matches.
	testkit.Append(t, e.path("a.json"), testkit.Numbered("created", 0, 10, 0)...)
	e.waitLines("created", 10)
	tmp := e.path("b.tmp")
	testkit.Append(t, tmp, testkit.Numbered("moved", 0, 10, 0)...)
	if err := os.Rename(tmp, e.path("b.json")); err != nil {
		t.Fatal(err)
	}
	e.waitLines("moved", 10)
}

// When the kernel watcher cannot be created (here an injected failure,
// as the inotify instance limit would give), files are polled and every
// line still arrives.
func TestPollingWhenNotifyUnavailable(t *testing.T) {
	e := newEnv(t)
	e.stop()
	e.opts.Notify.NewWatcher = func() (*fsnotify.Watcher, error) {
		return nil, errors.New("inotify_init1: too many open files")
	}
	e.start()
	path := e.path("polled.log")
	testkit.Append(t, path, testkit.Numbered("polled", 0, 10, 0)...)
	e.mgr.Apply(collect.Config{entry(path)})
	e.waitLines("polled", 10)
	testkit.Append(t, path, testkit.Numbered("polled", 10, 20, 0)...)
	e.waitLines("polled", 20)
	if n := e.wakeups("notification"); n != 0 {
		t.Errorf("%v wakeups by notification without a watcher", n)
	}
	if n := e.wakeups("poll"); n == 0 {
		t.Error("no wakeup by poll: how were the later lines read?")
	}
	if st := e.mgr.NotifyStats(); st.Watchers != 0 || st.Failures == 0 {
		t.Errorf("notify stats %+v: want no watcher and the failures counted", st)
	}
}

// Reloading the config many times, with entries in changing directories,
// never holds more than one kernel watcher nor more watches than the
// config has directories, and an empty config leaves none.
func TestReloadKeepsWatchesBounded(t *testing.T) {
	e := newEnv(t)
	base := inotifyFDs(t)
	dirs := make([]string, 4)
	for i := range dirs {
		dirs[i] = filepath.Join(e.dir, fmt.Sprint("d", i))
		if err := os.Mkdir(dirs[i], 0o755); err != nil {
			t.Fatal(err)
		}
		testkit.Append(t, filepath.Join(dirs[i], "app.log"), "line")
	}
	for round := range 40 {
		// Two directories per config, a different pair each time.
		a, b := dirs[round%4], dirs[(round+1)%4]
		e.mgr.Apply(collect.Config{
			entry(filepath.Join(a, "app.log")),
			entry(filepath.Join(b, "*.log"), func(c *collect.Entry) { c.Job = "glob" }),
		})
		st := e.mgr.NotifyStats()
		if st.Watchers > 1 || st.Dirs > 2 {
			t.Fatalf("round %d: notify stats %+v: want one kernel watcher and two directories at most", round, st)
		}
		if n := inotifyFDs(t) - base; n > 1 {
			t.Fatalf("round %d: %d inotify instances open", round, n)
		}
	}
	e.mgr.Apply(nil)
	if st := e.mgr.NotifyStats(); st.Watchers != 0 || st.Dirs != 0 || st.Subs != 0 {
		t.Errorf("notify stats %+v with an empty config: want nothing", st)
	}
	if n := inotifyFDs(t) - base; n != 0 {
		t.Errorf("%d inotify instances open with an empty config", n)
	}
}

// inotifyFDs counts this process's open inotify instances.
func inotifyFDs(t testing.TB) int { return testkit.InotifyFDs(t, os.Getpid()) }
