// Package notify wakes the agent's file readers when the kernel reports a
// change in a file's directory (inotify, through github.com/fsnotify/fsnotify),
// so that a line appended to an idle file is read at once instead of at
// the next poll.
//
// One Watcher serves the whole agent: it holds one kernel watcher (one
// inotify instance, one file descriptor) and one watch per directory,
// shared by every file followed there and removed when the last of them
// stops; the kernel watcher itself is closed, and its goroutine ends, when
// no directory is watched any more. A Sub is one interest in one name (or
// glob) of a directory; its channel C gets a token when that name is
// written, created, renamed or removed. A stream of writes to one file is
// thinned: after routing a write that repeats the previous event, the
// Watcher lets the next events wait Options.Window in the kernel's queue,
// where the file's writes merge into one event.
//
// Notifications are a shortcut, never the only way: Notified tells a
// subscriber whether it can rely on them, and the caller keeps polling
// (slowly when notified, at its fast adaptive pace when not). They are off
// for a directory on a network file system (NFS, SMB, FUSE, ...), where
// another machine's writes raise no event here, and for every directory
// when the kernel watcher cannot be created (the inotify instance limit) or
// fails; a directory that cannot be watched (the watch limit) is polled
// alone. Each of these is logged once, not per line. A queue overflow
// (events lost) wakes every subscriber once, which is a poll of every file.
package notify

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// Ops are the events a subscriber hears.
type Ops = fsnotify.Op

// The events: Write is also what a truncation raises.
const (
	Write  = fsnotify.Write
	Create = fsnotify.Create
	Remove = fsnotify.Remove
	Rename = fsnotify.Rename
)

// Options configure a Watcher.
type Options struct {
	Log logrus.FieldLogger
	// NewWatcher creates the kernel watcher; nil means fsnotify.NewWatcher
	// (unbuffered: while the router waits, events wait in the kernel's
	// queue, where a file's repeated writes merge). Tests make it fail.
	NewWatcher func() (*fsnotify.Watcher, error)
	// Remote reports whether dir is on a file system whose changes the
	// kernel may not report (another machine writes there); nil means
	// RemoteFS.
	Remote func(dir string) bool
	// Window is how long the events that follow a repeated write to one
	// file wait, so that a stream of writes wakes its reader once per
	// window; 0 means DefaultWindow.
	Window time.Duration
}

// DefaultWindow is the default Options.Window.
const DefaultWindow = 2 * time.Millisecond

// Stats are counters for metrics and tests.
type Stats struct {
	Watchers  int    // kernel watchers open: 0 or 1
	Dirs      int    // directories the kernel reports the changes of
	Subs      int    // subscribers, notified or not
	Events    uint64 // events that woke at least one subscriber
	Overflows uint64 // queue overflows: every subscriber was woken
	Failures  uint64 // kernel watchers that could not be created or failed
}

// Watcher wakes subscribers on changes in their directories.
type Watcher struct {
	opts Options
	log  logrus.FieldLogger

	mu     sync.Mutex
	fw     *fsnotify.Watcher // nil when no directory is watched, or notifications are off
	done   chan struct{}     // closed when fw's dispatcher has returned
	broken bool              // fw failed: poll every directory until no subscriber is left
	closed bool              // Close was called: poll from then on
	dirs   map[string]*dir

	events, overflows, failures atomic.Uint64
	warnedCreate, warnedFail    bool // logged once per Watcher
	warnedOverflow              bool
}

// dir is one directory and its subscribers.
type dir struct {
	path    string
	watched bool // the kernel reports its changes
	missing bool // not watched because it did not exist, or was removed
	byName  map[string]map[*Sub]struct{}
	globs   map[*Sub]struct{}
	refs    int
}

// Sub is one subscriber: a name, or a glob, in a directory.
type Sub struct {
	w        *Watcher
	dir      string
	name     string
	glob     bool
	ops      Ops
	c        chan struct{}
	notified atomic.Bool
	closed   bool // under w.mu
}

// New returns a Watcher; it opens nothing until the first Watch.
func New(opts Options) *Watcher {
	if opts.NewWatcher == nil {
		opts.NewWatcher = fsnotify.NewWatcher
	}
	if opts.Remote == nil {
		opts.Remote = RemoteFS
	}
	if opts.Window <= 0 {
		opts.Window = DefaultWindow
	}
	log := opts.Log
	if log == nil {
		l := logrus.New()
		l.SetLevel(logrus.PanicLevel)
		log = l
	}
	return &Watcher{opts: opts, log: log, dirs: make(map[string]*dir)}
}

// Watch subscribes to the events ops of the file at path (its name in its
// directory: whatever file has that name). The Sub must be closed.
func (w *Watcher) Watch(path string, ops Ops) *Sub { return w.watch(path, ops, false) }

// WatchGlob subscribes to the events ops of every name in pattern's
// directory that pattern's base name matches (filepath.Match). The
// directory itself is taken literally. The Sub must be closed.
func (w *Watcher) WatchGlob(pattern string, ops Ops) *Sub { return w.watch(pattern, ops, true) }

func (w *Watcher) watch(path string, ops Ops, glob bool) *Sub {
	dirPath, name := filepath.Split(filepath.Clean(path))
	dirPath = filepath.Clean(dirPath)
	// The kernel names events by the directory watched first: two paths
	// of one directory (a symbolic link) share its real path's watch.
	if resolved, err := filepath.EvalSymlinks(dirPath); err == nil {
		dirPath = resolved
	}
	s := &Sub{w: w, dir: dirPath, name: name, glob: glob, ops: ops, c: make(chan struct{}, 1)}
	w.mu.Lock()
	defer w.mu.Unlock()
	d := w.dirs[dirPath]
	if d == nil {
		d = &dir{path: dirPath, byName: make(map[string]map[*Sub]struct{}), globs: make(map[*Sub]struct{})}
		w.dirs[dirPath] = d
		d.watched, d.missing = w.add(dirPath)
	} else if d.missing {
		// The directory did not exist, or was removed: it may be back.
		if d.watched, d.missing = w.add(dirPath); d.watched {
			d.each(func(s *Sub) { s.notified.Store(true) })
		}
	}
	d.refs++
	if s.glob {
		d.globs[s] = struct{}{}
	} else {
		if d.byName[name] == nil {
			d.byName[name] = make(map[*Sub]struct{})
		}
		d.byName[name][s] = struct{}{}
	}
	s.notified.Store(d.watched)
	return s
}

// add starts watching dir, opening the kernel watcher when needed; it
// reports whether the kernel will report dir's changes, or else whether
// dir is missing (worth trying again later). Called with w.mu.
func (w *Watcher) add(dirPath string) (watched, missing bool) {
	if w.broken || w.closed {
		return false, false
	}
	if w.opts.Remote(dirPath) {
		w.log.WithField("dir", dirPath).Info("directory on a network file system: its files are polled")
		return false, false
	}
	if w.fw == nil {
		fw, err := w.opts.NewWatcher()
		if err != nil {
			w.failures.Add(1)
			if !w.warnedCreate {
				w.warnedCreate = true
				w.log.WithError(err).Warn("cannot watch files for changes (inotify): polling them instead")
			}
			return false, false
		}
		w.fw, w.done = fw, make(chan struct{})
		go w.dispatch(fw, w.done)
	}
	if err := w.fw.Add(dirPath); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, true
		}
		w.log.WithField("dir", dirPath).WithError(err).Warn("cannot watch a directory for changes: polling its files instead")
		return false, false
	}
	return true, false
}

// C gets a token when a change the Sub listens to happens (tokens do not
// pile up: one pending token stands for any number of changes).
func (s *Sub) C() <-chan struct{} { return s.c }

// Notified reports whether changes are notified: when false, the caller
// must poll at its own pace.
func (s *Sub) Notified() bool { return s.notified.Load() }

// Close ends the subscription; the last one of a directory removes its
// watch, and the last one of all closes the kernel watcher and waits for
// its goroutine.
func (s *Sub) Close() {
	w := s.w
	w.mu.Lock()
	if s.closed {
		w.mu.Unlock()
		return
	}
	s.closed = true
	d := w.dirs[s.dir]
	if s.glob {
		delete(d.globs, s)
	} else {
		delete(d.byName[s.name], s)
		if len(d.byName[s.name]) == 0 {
			delete(d.byName, s.name)
		}
	}
	d.refs--
	if d.refs > 0 {
		w.mu.Unlock()
		return
	}
	delete(w.dirs, s.dir)
	if d.watched && w.fw != nil {
		_ = w.fw.Remove(d.path) // fails only when the directory is gone, and its watch with it
	}
	var fw *fsnotify.Watcher
	var done chan struct{}
	if len(w.dirs) == 0 {
		fw, done = w.fw, w.done
		w.fw, w.done, w.broken = nil, nil, false
	}
	w.mu.Unlock()
	if fw != nil {
		_ = fw.Close()
		<-done
	}
}

// Close closes the kernel watcher, if open, and waits for its goroutine;
// subscribers left, and any later one, are polled from then on.
func (w *Watcher) Close() {
	w.mu.Lock()
	fw, done := w.fw, w.done
	w.fw, w.done, w.closed = nil, nil, true
	for _, d := range w.dirs {
		d.watched = false
		d.each(func(s *Sub) { s.notified.Store(false) })
	}
	w.mu.Unlock()
	if fw != nil {
		_ = fw.Close()
		<-done
	}
}

// Stats returns the counters.
func (w *Watcher) Stats() Stats {
	w.mu.Lock()
	st := Stats{Events: w.events.Load(), Overflows: w.overflows.Load(), Failures: w.failures.Load()}
	if w.fw != nil {
		st.Watchers = 1
	}
	for _, d := range w.dirs {
		if d.watched {
			st.Dirs++
		}
		st.Subs += d.refs
	}
	w.mu.Unlock()
	return st
}

// dispatch routes fw's events until fw is closed.
func (w *Watcher) dispatch(fw *fsnotify.Watcher, done chan struct{}) {
	defer close(done)
	events, errs := fw.Events, fw.Errors
	last := ""
	for events != nil || errs != nil {
		select {
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			w.route(ev)
			// A write to the file written just before (a stream of
			// writes): let the next events wait in the kernel's queue,
			// which merges the file's repeated writes meanwhile, so that
			// its reader and this router wake once per window instead of
			// once per write. Events of other files (a flood over many of
			// them) are routed without waiting.
			if ev.Name == last && ev.Op == fsnotify.Write {
				time.Sleep(w.opts.Window)
			}
			last = ev.Name
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			w.failed(fw, err)
		}
	}
}

// route wakes the subscribers of the event's name.
func (w *Watcher) route(ev fsnotify.Event) {
	dirPath, name := filepath.Split(ev.Name)
	dirPath = filepath.Clean(dirPath)
	w.mu.Lock()
	defer w.mu.Unlock()
	if d := w.dirs[ev.Name]; d != nil && ev.Op&(Remove|Rename) != 0 {
		// The watched directory itself went away: its watch with it.
		d.watched, d.missing = false, true
		d.each(func(s *Sub) {
			s.notified.Store(false)
			s.wake()
		})
		w.log.WithField("dir", ev.Name).Info("watched directory removed or renamed: polling its files")
		return
	}
	d := w.dirs[dirPath]
	if d == nil {
		return
	}
	woke := false
	for s := range d.byName[name] {
		if s.ops&ev.Op != 0 {
			s.wake()
			woke = true
		}
	}
	for s := range d.globs {
		if s.ops&ev.Op != 0 {
			if ok, _ := filepath.Match(s.name, name); ok {
				s.wake()
				woke = true
			}
		}
	}
	if woke {
		w.events.Add(1)
	}
}

// failed handles an error of the kernel watcher: an overflow wakes every
// subscriber (events were lost); any other error turns notifications off
// until no subscriber is left.
func (w *Watcher) failed(fw *fsnotify.Watcher, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	wakeAll := func() {
		for _, d := range w.dirs {
			d.each(func(s *Sub) { s.wake() })
		}
	}
	if errors.Is(err, fsnotify.ErrEventOverflow) {
		w.overflows.Add(1)
		if !w.warnedOverflow {
			w.warnedOverflow = true
			w.log.Warn("file change notifications overflowed (more changes than the kernel queue holds): every file is checked again; later overflows are counted, not logged")
		}
		wakeAll()
		return
	}
	if w.fw != fw || w.broken {
		return
	}
	w.failures.Add(1)
	w.broken = true
	if !w.warnedFail {
		w.warnedFail = true
		w.log.WithError(err).Warn("file change notifications failed: polling every file instead")
	}
	for _, d := range w.dirs {
		d.watched = false
		d.each(func(s *Sub) { s.notified.Store(false) })
	}
	wakeAll()
	// The kernel watcher is closed by the last Sub or Close; closing it
	// here would wait for this goroutine's own return.
}

func (d *dir) each(f func(*Sub)) {
	for _, subs := range d.byName {
		for s := range subs {
			f(s)
		}
	}
	for s := range d.globs {
		f(s)
	}
}

func (s *Sub) wake() {
	select {
	case s.c <- struct{}{}:
	default:
	}
}

// Magic numbers of network and user-space file systems (statfs f_type):
// changes made through another machine, or by a user-space server, raise
// no inotify event here.
var remoteFS = map[int64]string{
	0x6969:     "nfs",
	0x517b:     "smb",
	0xff534d42: "cifs",
	0xfe534d42: "smb2",
	0x65735546: "fuse",
	0x00c36400: "ceph",
	0x5346414f: "afs",
	0x6b414653: "afs",
	0x01161970: "gfs2",
	0x47504653: "gpfs",
	0x0bd00bd0: "lustre",
	0x73757245: "coda",
	0x564c:     "ncp",
	0x7461636f: "ocfs2",
}

// RemoteFS reports whether dir is on a network or user-space file system
// (or cannot be checked).
func RemoteFS(dir string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false // a directory that does not exist yet: watching it fails anyway
	}
	_, ok := remoteFS[int64(st.Type)&0xffffffff]
	return ok
}
