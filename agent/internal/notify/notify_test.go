package notify

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
	"go.uber.org/goleak"

	"github.com/logpipe/logpipe/agent/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitLimit bounds waits for an event: generous, for a loaded machine.
const waitLimit = time.Minute

func newWatcher(t *testing.T, opts Options) (*Watcher, *test.Hook) {
	t.Helper()
	log, hook := test.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	opts.Log = log
	w := New(opts)
	t.Cleanup(w.Close)
	return w, hook
}

func woken(t *testing.T, s *Sub, what string) {
	t.Helper()
	select {
	case <-s.C():
	case <-time.After(waitLimit):
		t.Fatalf("%s: no wakeup within %v", what, waitLimit)
	}
}

func pending(s *Sub) bool {
	select {
	case <-s.C():
		return true
	default:
		return false
	}
}

func appendTo(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

// inotifyFDs counts this process's open inotify instances.
func inotifyFDs(t testing.TB) int { return testkit.InotifyFDs(t, os.Getpid()) }

// A write wakes the subscribers of that file only: the dispatcher handles
// events in order, so once a later event has woken its subscriber, an
// earlier one that concerned another file has been handled too.
func TestWriteWakesItsFileOnly(t *testing.T) {
	dir := t.TempDir()
	a, b, c := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log"), filepath.Join(dir, "c.log")
	for _, p := range []string{a, b, c} {
		appendTo(t, p, "")
	}
	w, _ := newWatcher(t, Options{})
	sa, sb, sc := w.Watch(a, Write), w.Watch(b, Write), w.Watch(c, Write)
	defer sa.Close()
	defer sb.Close()
	defer sc.Close()
	for _, s := range []*Sub{sa, sb, sc} {
		if !s.Notified() {
			t.Fatalf("%s/%s: not notified on a local file system", s.dir, s.name)
		}
	}
	appendTo(t, a, "one\n")
	appendTo(t, c, "barrier\n")
	woken(t, sc, "c.log written")
	woken(t, sa, "a.log written")
	if pending(sb) {
		t.Error("b.log's subscriber woken by writes to a.log and c.log")
	}
	if st := w.Stats(); st.Watchers != 1 || st.Dirs != 1 || st.Subs != 3 || st.Events < 2 {
		t.Errorf("stats %+v: want one kernel watcher, one directory, three subscribers, two events or more", st)
	}
}

// Creations, renames and deletions in the directory wake the subscribers
// of the names concerned, and those of a glob that matches them.
func TestCreateRenameRemove(t *testing.T) {
	dir := t.TempDir()
	app := filepath.Join(dir, "app.log")
	w, _ := newWatcher(t, Options{})
	path := w.Watch(app, Create|Remove|Rename)
	defer path.Close()
	glob := w.WatchGlob(filepath.Join(dir, "*.log"), Create|Rename)
	defer glob.Close()
	other := w.Watch(filepath.Join(dir, "other"), Create|Remove|Rename)
	defer other.Close()

	appendTo(t, app, "")
	woken(t, path, "app.log created")
	woken(t, glob, "app.log created (glob)")

	if err := os.Rename(app, app+".1"); err != nil {
		t.Fatal(err)
	}
	woken(t, path, "app.log renamed away")
	woken(t, glob, "app.log renamed away (glob)")

	if err := os.Rename(app+".1", filepath.Join(dir, "new.log")); err != nil {
		t.Fatal(err)
	}
	woken(t, glob, "new.log renamed into the directory (glob)")

	appendTo(t, app, "")
	woken(t, path, "app.log created again")
	if err := os.Remove(app); err != nil {
		t.Fatal(err)
	}
	woken(t, path, "app.log removed")
	if pending(other) {
		t.Error("the subscriber of another name woken")
	}
}

// Every file of a directory shares one watch, and every directory one
// kernel watcher; the last subscriber to leave closes it.
func TestSharedWatchClosedWithLastSub(t *testing.T) {
	base := inotifyFDs(t)
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	w, _ := newWatcher(t, Options{})
	var subs []*Sub
	for _, d := range dirs {
		for i := range 5 {
			subs = append(subs, w.Watch(filepath.Join(d, fmt.Sprintf("f%d.log", i)), Write))
		}
	}
	if st := w.Stats(); st.Watchers != 1 || st.Dirs != 3 || st.Subs != 15 {
		t.Errorf("stats %+v: want one kernel watcher, three directories, 15 subscribers", st)
	}
	if n := inotifyFDs(t) - base; n != 1 {
		t.Errorf("%d inotify instances open for 15 files in 3 directories; want 1", n)
	}
	for _, s := range subs[:14] {
		s.Close()
	}
	if st := w.Stats(); st.Watchers != 1 || st.Dirs != 1 || st.Subs != 1 {
		t.Errorf("stats %+v after 14 of 15 subscribers left: want one watcher, one directory, one subscriber", st)
	}
	subs[14].Close()
	subs[14].Close() // a second Close does nothing
	if st := w.Stats(); st.Watchers != 0 || st.Dirs != 0 || st.Subs != 0 {
		t.Errorf("stats %+v after every subscriber left: want nothing open", st)
	}
	if n := inotifyFDs(t) - base; n != 0 {
		t.Errorf("%d inotify instances still open after every subscriber left", n)
	}
}

// When the kernel watcher cannot be created (the inotify instance limit),
// subscribers are told to poll, and that is logged once.
func TestNewWatcherFails(t *testing.T) {
	limit := errors.New("too many open files")
	w, hook := newWatcher(t, Options{NewWatcher: func() (*fsnotify.Watcher, error) { return nil, limit }})
	for range 10 {
		s := w.Watch(filepath.Join(t.TempDir(), "app.log"), Write)
		if s.Notified() {
			t.Error("notified without a kernel watcher")
		}
		defer s.Close()
	}
	st := w.Stats()
	if st.Watchers != 0 || st.Dirs != 0 || st.Failures != 10 {
		t.Errorf("stats %+v: want no watcher, no directory watched, 10 failures", st)
	}
	if n := warnings(hook, "cannot watch files"); n != 1 {
		t.Errorf("the failure logged %d times; want once", n)
	}
}

// A directory on a network file system is polled: no kernel watcher.
func TestRemoteDirectoryPolled(t *testing.T) {
	w, _ := newWatcher(t, Options{Remote: func(string) bool { return true }})
	s := w.Watch(filepath.Join(t.TempDir(), "app.log"), Write)
	defer s.Close()
	if s.Notified() {
		t.Error("notified on a file system said to be remote")
	}
	if st := w.Stats(); st.Watchers != 0 || st.Dirs != 0 {
		t.Errorf("stats %+v: want nothing watched", st)
	}
	if RemoteFS(t.TempDir()) {
		t.Errorf("the test's temporary directory taken for a network file system")
	}
}

// Losing the kernel's queue (more events than it holds while nobody
// reads them) wakes every subscriber once, and is logged once.
func TestOverflowWakesEveryone(t *testing.T) {
	dir, elsewhere := t.TempDir(), t.TempDir()
	a, b := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")
	quiet := filepath.Join(elsewhere, "quiet.log")
	appendTo(t, a, "")
	appendTo(t, b, "")
	w, hook := newWatcher(t, Options{})
	sa, sb := w.Watch(a, Write), w.Watch(b, Write)
	sq := w.Watch(quiet, Write)
	defer sa.Close()
	defer sb.Close()
	defer sq.Close()
	fa, err := os.OpenFile(a, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fa.Close()
	fb, err := os.OpenFile(b, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	// Hold the dispatcher while writing more alternating events (the
	// kernel merges only identical neighbours) than the kernel queue and
	// fsnotify's read buffer hold together.
	queued := 16384
	if b, err := os.ReadFile("/proc/sys/fs/inotify/max_queued_events"); err == nil {
		fmt.Sscan(strings.TrimSpace(string(b)), &queued)
	}
	w.mu.Lock()
	for range queued + 8192 {
		fa.WriteString("x")
		fb.WriteString("y")
	}
	w.mu.Unlock()
	deadline := time.Now().Add(waitLimit)
	for w.Stats().Overflows == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no overflow reported within %v after %d events", waitLimit, 2*(queued+8192))
		}
		time.Sleep(10 * time.Millisecond)
	}
	woken(t, sq, "the quiet file's subscriber on overflow")
	if !sa.Notified() || !sq.Notified() {
		t.Error("an overflow turned notifications off; they go on once the queue is read")
	}
	if n := warnings(hook, "overflowed"); n != 1 {
		t.Errorf("the overflow logged %d times; want once", n)
	}
}

// Any other error of the kernel watcher turns notifications off for
// every subscriber, wakes them, and is logged once; the next subscriber
// after the last one left gets notifications again.
func TestWatcherErrorFallsBackToPolling(t *testing.T) {
	dir := t.TempDir()
	w, hook := newWatcher(t, Options{})
	s1, s2 := w.Watch(filepath.Join(dir, "a.log"), Write), w.Watch(filepath.Join(t.TempDir(), "b.log"), Write)
	w.mu.Lock()
	fw := w.fw
	w.mu.Unlock()
	w.failed(fw, errors.New("read: input/output error"))
	w.failed(fw, errors.New("read: input/output error"))
	for _, s := range []*Sub{s1, s2} {
		if s.Notified() {
			t.Error("still notified after the watcher failed")
		}
		if !pending(s) {
			t.Error("a subscriber was not woken when the watcher failed")
		}
	}
	s3 := w.Watch(filepath.Join(t.TempDir(), "c.log"), Write)
	if s3.Notified() {
		t.Error("a new subscriber notified by a failed watcher")
	}
	if n := warnings(hook, "notifications failed"); n != 1 {
		t.Errorf("the failure logged %d times; want once", n)
	}
	s1.Close()
	s2.Close()
	s3.Close()
	s4 := w.Watch(filepath.Join(dir, "a.log"), Write)
	defer s4.Close()
	if !s4.Notified() {
		t.Error("not notified again once every subscriber of the failed watcher left")
	}
}

// A watched directory that is removed tells its subscribers to poll.
func TestDirectoryRemoved(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	w, _ := newWatcher(t, Options{})
	s := w.Watch(filepath.Join(dir, "app.log"), Write|Remove)
	defer s.Close()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(waitLimit)
	for s.Notified() {
		if time.Now().After(deadline) {
			t.Fatal("still notified after the directory was removed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func warnings(h *test.Hook, substr string) int {
	n := 0
	for _, e := range h.AllEntries() {
		if e.Level == logrus.WarnLevel && strings.Contains(e.Message, substr) {
			n++
		}
	}
	return n
}

// A directory that does not exist yet is polled; once it exists, the next
// subscriber there starts its watch, for the earlier ones too.
func TestDirectoryCreatedLater(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "later")
	w, _ := newWatcher(t, Options{})
	early := w.Watch(filepath.Join(dir, "a.log"), Write)
	defer early.Close()
	if early.Notified() {
		t.Fatal("notified for a directory that does not exist")
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	late := w.Watch(filepath.Join(dir, "b.log"), Write)
	defer late.Close()
	if !late.Notified() || !early.Notified() {
		t.Fatalf("not notified once the directory exists: early %v, late %v", early.Notified(), late.Notified())
	}
	appendTo(t, filepath.Join(dir, "a.log"), "line\n")
	woken(t, early, "a.log written")
}

// A file followed through a symbolic link to its directory is woken by
// writes through the real path, and both paths share one watch.
func TestSymlinkedDirectory(t *testing.T) {
	target := t.TempDir()
	link := filepath.Join(t.TempDir(), "logs")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	w, _ := newWatcher(t, Options{})
	viaLink := w.Watch(filepath.Join(link, "app.log"), Write)
	defer viaLink.Close()
	viaReal := w.Watch(filepath.Join(target, "app.log"), Write)
	defer viaReal.Close()
	appendTo(t, filepath.Join(target, "app.log"), "line\n")
	woken(t, viaLink, "app.log written, followed through the link")
	woken(t, viaReal, "app.log written")
	if st := w.Stats(); st.Dirs != 1 {
		t.Errorf("stats %+v: want one directory watched for both paths", st)
	}
}
