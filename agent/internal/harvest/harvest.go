// Package harvest turns the collect config into running file readers and
// keeps them in step with it.
//
// A Manager reconciles by difference: Apply starts entries that are new,
// stops entries that are gone, restarts an entry whose settings changed
// (resuming from the offsets it had acknowledged) and leaves the others
// running untouched. Each entry rescans its glob to pick up new files. Each
// matching path has a harvester that notices rotation (the path now names a
// different file), deletion and truncation; each open file identity has a
// reader that sends its lines to Kafka and follows the acknowledgements.
// A rotated or deleted file is read to its end, and kept open until it has
// not grown for RotatedIdle, before it is closed.
//
// An entry's "from" only applies to the files its first scan finds the
// first time it is applied (the registry remembers applied entries across
// restarts): any file found later, including one created while the agent
// was stopped, is read from its first byte. When an entry starts, it also
// looks for the files of its paths that the registry knows and nobody
// reads: one renamed away while the agent was stopped (found in the same
// directory) is read from its stored offset to its end, before the new
// file at its path; one that is gone from a directory that is there is
// forgotten. A directory that is missing (not mounted yet, renamed away for
// a while) keeps its files' offsets until no entry covers them.
package harvest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/logpipe/logpipe/agent/internal/notify"
	"github.com/logpipe/logpipe/agent/internal/producer"
	"github.com/logpipe/logpipe/agent/internal/registry"
	"github.com/logpipe/logpipe/agent/internal/tail"
	"github.com/logpipe/logpipe/common/collect"
)

// Options configure a Manager.
type Options struct {
	AgentName      string
	HostName       string
	DefaultTopic   string
	MaxLineBytes   int
	MaxRecordBytes int           // largest record value Kafka accepts
	ScanInterval   time.Duration // glob rescans and rotation checks
	PollMin        time.Duration // first wait at the end of a file
	PollMax        time.Duration // longest wait at the end of a file
	ReadGap        time.Duration // least time between two notified reads that find lines: under load, lines gather in between
	RotatedIdle    time.Duration // a rotated or deleted file is closed after this long without growth
	MultilineFlush time.Duration // a pending multiline event is sent after this long without a new line
	StopTimeout    time.Duration // how long a stopped file waits for its records in flight
	SweepInterval  time.Duration // how often an entry looks for the registry's files nobody reads
	Log            logrus.FieldLogger
	Metrics        *Metrics
	// Notify configures the change notifications that wake readers,
	// harvesters and glob scans (its Log defaults to Log).
	Notify notify.Options
}

// DefaultOptions returns the defaults.
func DefaultOptions() Options {
	return Options{
		DefaultTopic:   "logs",
		MaxLineBytes:   1 << 20,
		MaxRecordBytes: 1000000,
		ScanInterval:   time.Second,
		PollMin:        10 * time.Millisecond,
		PollMax:        250 * time.Millisecond,
		ReadGap:        10 * time.Millisecond,
		RotatedIdle:    5 * time.Second,
		MultilineFlush: time.Second,
		StopTimeout:    5 * time.Second,
		SweepInterval:  time.Minute,
	}
}

// FileStatus is one file in the agent's status.
type FileStatus struct {
	Path   string `json:"path"`
	Job    string `json:"job"`
	Offset int64  `json:"offset"`
	Size   int64  `json:"size"`
	Inode  uint64 `json:"inode"`
}

// Manager runs the readers of a collect config.
type Manager struct {
	opts   Options
	prod   *producer.Producer
	reg    *registry.Registry
	notify *notify.Watcher

	ctx context.Context
	wg  sync.WaitGroup

	mu      sync.Mutex
	closed  bool               // Wait has begun: no new entries
	targets map[string]*target // by entry path
	paths   map[string]*harvester
	readers map[*reader]struct{}
	errs    map[string]string // per file path, the last error
}

// New returns a Manager; its readers live until ctx is done.
func New(ctx context.Context, opts Options, prod *producer.Producer, reg *registry.Registry) *Manager {
	if opts.Log == nil {
		l := logrus.New()
		l.SetOutput(discard{})
		opts.Log = l
	}
	if opts.Notify.Log == nil {
		opts.Notify.Log = opts.Log
	}
	return &Manager{
		opts:    opts,
		prod:    prod,
		reg:     reg,
		notify:  notify.New(opts.Notify),
		ctx:     ctx,
		targets: make(map[string]*target),
		paths:   make(map[string]*harvester),
		readers: make(map[*reader]struct{}),
		errs:    make(map[string]string),
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// Apply reconciles the running entries with cfg and returns once removed
// and changed entries have stopped and new ones have started.
func (m *Manager) Apply(cfg collect.Config) {
	want := make(map[string]collect.Entry, len(cfg))
	for _, e := range cfg {
		want[e.Path] = e.Resolve(m.opts.DefaultTopic)
	}
	m.mu.Lock()
	var stopping []*target
	for path, t := range m.targets {
		if e, ok := want[path]; !ok || !e.Equal(t.entry) {
			stopping = append(stopping, t)
			delete(m.targets, path)
		}
	}
	m.mu.Unlock()
	for _, t := range stopping {
		t.cancel()
	}
	for _, t := range stopping {
		<-t.done
	}
	m.mu.Lock()
	if m.closed || m.ctx.Err() != nil {
		m.mu.Unlock()
		return
	}
	paths := make([]string, 0, len(cfg))
	for _, e := range cfg { // config order: the first entry to match a file owns it
		paths = append(paths, e.Path)
		if _, ok := m.targets[e.Path]; ok {
			continue
		}
		t := m.newTarget(want[e.Path])
		m.targets[e.Path] = t
		m.wg.Go(t.run)
	}
	m.mu.Unlock()
	m.reg.KeepApplied(paths)
	m.expire()
}

// expire forgets the offsets of files that no entry of the applied config
// covers and that were not read for the registry's TTL.
func (m *Manager) expire() {
	m.mu.Lock()
	entries := make([]collect.Entry, 0, len(m.targets))
	for _, t := range m.targets {
		entries = append(entries, t.entry)
	}
	m.mu.Unlock()
	gone := m.reg.Expire(func(path string) bool {
		for _, e := range entries {
			if covers(e, path) {
				return true
			}
		}
		return false
	})
	for _, e := range gone {
		m.opts.Log.WithFields(logrus.Fields{"path": e.Path, "inode": e.Identity.Ino, "offset": e.Offset}).
			Info("forgetting the offset of a file that no collect entry covers any more")
	}
}

// covers reports whether the entry's path or glob names path.
func covers(e collect.Entry, path string) bool {
	if path == e.Path {
		return true
	}
	ok, _ := filepath.Match(e.Path, path)
	return ok
}

// Wait returns when every reader has stopped, after the Manager's context
// is done.
func (m *Manager) Wait() {
	<-m.ctx.Done()
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.wg.Wait()
	m.notify.Close()
}

// NotifyStats returns the counters of the change notifications.
func (m *Manager) NotifyStats() notify.Stats { return m.notify.Stats() }

// Files returns the status of every open file.
func (m *Manager) Files() []FileStatus {
	m.mu.Lock()
	rs := make([]*reader, 0, len(m.readers))
	for r := range m.readers {
		rs = append(rs, r)
	}
	m.mu.Unlock()
	out := make([]FileStatus, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.status())
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		return out[i].Inode < out[j].Inode
	})
	return out
}

// Errors returns the last error of each file that has one, sorted.
func (m *Manager) Errors() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.errs))
	for _, e := range m.errs {
		out = append(out, e)
	}
	slices.Sort(out)
	return out
}

func (m *Manager) setErr(path string, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err == nil {
		delete(m.errs, path)
		return
	}
	msg := fmt.Sprintf("%s: %v", path, err)
	if m.errs[path] != msg {
		m.opts.Log.WithField("path", path).Warn(err)
	}
	m.errs[path] = msg
}

// target runs one collect entry: it rescans the glob and owns a harvester
// per matching path.
type target struct {
	m      *Manager
	entry  collect.Entry
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

func (m *Manager) newTarget(e collect.Entry) *target {
	ctx, cancel := context.WithCancel(m.ctx)
	return &target{m: m, entry: e, ctx: ctx, cancel: cancel, done: make(chan struct{})}
}

func (t *target) run() {
	defer close(t.done)
	var wg sync.WaitGroup
	defer wg.Wait()
	m := t.m
	log := m.opts.Log.WithField("entry", t.entry.Path)
	applied := m.reg.Applied(t.entry.Path)
	log.WithField("first_time", !applied).Info("collect entry started")
	defer log.Info("collect entry stopped")
	missing := make(map[tail.Identity]bool)
	orphans := t.sweep(missing, true)
	lastSweep := time.Now()
	initial := true
	// A file created or renamed into the entry's directory is picked up at
	// once, not at the next scan (the directory of a glob such as
	// /var/log/*/app.log is not watched: its scans find new files).
	var created <-chan struct{}
	if !hasGlobMeta(filepath.Dir(t.entry.Path)) {
		watch := m.notify.Watch
		if hasGlobMeta(filepath.Base(t.entry.Path)) {
			watch = m.notify.WatchGlob
		}
		sub := watch(t.entry.Path, notify.Create|notify.Rename)
		defer sub.Close()
		created = sub.C()
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-t.ctx.Done():
			return
		case <-timer.C:
		case <-created:
			timer.Stop()
		}
		matches, err := filepath.Glob(t.entry.Path)
		if err != nil {
			m.setErr(t.entry.Path, err)
		}
		var opened chan struct{}
		if initial && !applied {
			opened = make(chan struct{}, len(matches))
		}
		started := 0
		for _, path := range matches {
			if h := t.claim(path, initial && !applied, orphans[path], opened); h != nil {
				started++
				wg.Go(func() { h.run(t.ctx) })
			}
			delete(orphans, path)
		}
		for path, files := range orphans { // their path names no file now
			if h := t.claim(path, false, files, nil); h != nil {
				wg.Go(func() { h.run(t.ctx) })
			}
		}
		orphans = nil
		if initial && !applied {
			// "from" applied to the files found now: remember that it has,
			// once they are in the registry, so that after a restart any
			// other file is read from its start.
			for range started {
				select {
				case <-opened:
				case <-t.ctx.Done():
					return
				}
			}
			m.reg.MarkApplied(t.entry.Path)
		}
		initial = false
		if time.Since(lastSweep) >= m.opts.SweepInterval {
			t.sweep(missing, false)
			m.expire()
			lastSweep = time.Now()
		}
		timer.Reset(m.opts.ScanInterval)
	}
}

// orphan is a file the registry knows under one of the entry's paths,
// found at another path of the same directory.
type orphan struct {
	entry registry.Entry
	at    string
}

// sweep looks for the files of the entry's paths that the registry knows
// and nobody reads. A file still at its path is left to the scan. One
// found elsewhere in the same directory (renamed by a rotation while the
// agent was stopped) is returned by path when orphans is set and it has
// bytes not read yet. One found nowhere is forgotten when it was already
// missing at the previous sweep (missing keeps that between sweeps), so
// that a file renamed into a path another entry covers is taken up there
// first. A file whose directory is missing is not looked for: the
// directory may come back (a late mount, a directory renamed away for a
// while), and only an entry that no longer covers the file lets its offset
// go (Registry.Expire).
func (t *target) sweep(missing map[tail.Identity]bool, orphans bool) map[string][]orphan {
	m := t.m
	detached := m.reg.Detached(func(path string) bool { return covers(t.entry, path) })
	out := make(map[string][]orphan)
	dirs := make(map[string]map[tail.Identity]string) // per directory: where each file is; nil when unreadable
	for _, e := range detached {
		if fi, err := os.Stat(e.Path); err == nil && identityOf(fi) == e.Identity {
			delete(missing, e.Identity)
			continue
		}
		dir := filepath.Dir(e.Path)
		files, ok := dirs[dir]
		if !ok {
			files = listDir(dir)
			dirs[dir] = files
		}
		if files == nil {
			continue // cannot tell, or the directory is missing for now
		}
		at, found := files[e.Identity]
		switch {
		case found:
			delete(missing, e.Identity)
			if orphans && !covers(t.entry, at) {
				out[e.Path] = append(out[e.Path], orphan{entry: e, at: at})
			}
		case missing[e.Identity]:
			delete(missing, e.Identity)
			if m.reg.Forget(e.Identity, e.Fingerprint) {
				m.opts.Log.WithFields(logrus.Fields{"path": e.Path, "inode": e.Identity.Ino, "offset": e.Offset}).
					Info("file gone: forgetting its offset")
			}
		default:
			missing[e.Identity] = true
		}
	}
	return out
}

// listDir maps the identities of the regular files in dir to their paths;
// nil when dir cannot be read, or does not exist.
func listDir(dir string) map[tail.Identity]string {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	files := make(map[tail.Identity]string, len(des))
	for _, de := range des {
		if !de.Type().IsRegular() {
			continue
		}
		if fi, err := de.Info(); err == nil {
			files[identityOf(fi)] = filepath.Join(dir, de.Name())
		}
	}
	return files
}

// claim creates the harvester of path unless the path has one. initial
// tells that "from" applies to the first file it opens; orphans are files
// of the path renamed away while the agent was stopped, read to their end
// first; opened, when set, hears once the harvester has tried to open its
// first file.
func (t *target) claim(path string, initial bool, orphans []orphan, opened chan<- struct{}) *harvester {
	if len(orphans) == 0 {
		fi, err := os.Stat(path)
		if err != nil || !fi.Mode().IsRegular() {
			return nil
		}
	}
	t.m.mu.Lock()
	defer t.m.mu.Unlock()
	if _, ok := t.m.paths[path]; ok {
		return nil
	}
	h := &harvester{t: t, path: path, job: t.entry.JobFor(path), initial: initial, orphans: orphans, opened: opened}
	t.m.paths[path] = h
	return h
}

func (t *target) release(h *harvester) {
	t.m.mu.Lock()
	defer t.m.mu.Unlock()
	if t.m.paths[h.path] == h {
		delete(t.m.paths, h.path)
	}
}

// harvester follows one path through rotations: it opens each new file
// that appears at the path and tells the reader of the previous one that it
// was rotated away.
type harvester struct {
	t       *target
	path    string
	job     string
	initial bool            // found by the first scan of an entry applied for the first time: "from" applies
	orphans []orphan        // files of this path renamed away while the agent was stopped
	opened  chan<- struct{} // told once the first file was tried
}

// tried tells the target that the first file was tried.
func (h *harvester) tried() {
	if h.opened != nil {
		h.opened <- struct{}{}
		h.opened = nil
	}
}

func (h *harvester) run(ctx context.Context) {
	defer h.t.release(h)
	defer h.tried()
	m := h.t.m
	var (
		wg       sync.WaitGroup
		cur      *reader
		before   *reader // the last file renamed away from the path (while the agent was stopped, or since): the next file waits for its end
		live     = make(map[*reader]struct{})
		ended    = make(chan *reader, 16+len(h.orphans))
		first    = true
		interval = min(m.opts.ScanInterval, m.opts.PollMax)
	)
	defer wg.Wait()
	start := func(r *reader) {
		live[r] = struct{}{}
		wg.Go(func() {
			r.run(ctx)
			select {
			case ended <- r:
			case <-ctx.Done():
			}
		})
	}
	for _, o := range h.orphans {
		r, err := h.openOrphan(o, before)
		if err != nil {
			m.opts.Log.WithFields(logrus.Fields{"path": h.path, "at": o.at}).WithError(err).Info("not reading the rest of a file renamed away")
			continue
		}
		before = r
		start(r)
	}
	// A rename, deletion or creation at the path is checked at once; the
	// timer stays as the safety net.
	sub := m.notify.Watch(h.path, notify.Create|notify.Remove|notify.Rename)
	defer sub.Close()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-ended:
			delete(live, r)
			if r == cur {
				cur = nil
			}
			if r == before {
				before = nil
			}
			continue
		case <-timer.C:
		case <-sub.C():
			timer.Stop()
		}
		timer.Reset(interval)
		fi, err := os.Stat(h.path)
		switch {
		case err == nil && fi.Mode().IsRegular():
			if cur != nil && cur.f.Identity() == identityOf(fi) {
				continue
			}
			prev := cur
			if prev == nil {
				prev = before
			}
			r, err := h.open(first, prev)
			h.tried()
			if errors.Is(err, registry.ErrBusy) {
				continue // still read under another path: try again later
			}
			if err != nil {
				m.setErr(h.path, err)
				continue
			}
			m.setErr(h.path, nil)
			if cur != nil {
				m.opts.Metrics.Rotations.Inc()
				m.opts.Log.WithField("path", h.path).Info("file rotated: reading the old one to its end and the new one from its start")
				cur.rotate()
			}
			first, before = false, nil
			cur = r
			start(r)
		case err != nil && errors.Is(err, os.ErrNotExist):
			h.tried()
			if cur != nil {
				m.opts.Metrics.Rotations.Inc()
				m.opts.Log.WithField("path", h.path).Info("file deleted or moved: reading it to its end")
				cur.rotate()
				// A new file at the path waits for it to be read to its end.
				cur, before = nil, cur
			}
			if len(live) == 0 {
				return // gone and read: a later scan picks up a new file at this path
			}
		case err != nil:
			h.tried()
			m.setErr(h.path, err)
		default:
			h.tried()
		}
	}
}

// open opens the file now at the path and attaches it to the registry: a
// known file resumes at its offset; a new one starts at its end when
// "from" is "end" and applies (first is the harvester's first file, found
// by the first scan of an entry applied for the first time), else at 0.
func (h *harvester) open(first bool, prev *reader) (*reader, error) {
	m := h.t.m
	r, err := newReader(h, h.path, prev)
	if err != nil {
		return nil, err
	}
	start := int64(0)
	if first && h.initial && h.t.entry.From == collect.FromEnd {
		if start, err = lastLineStart(r.f); err != nil {
			r.f.Close()
			return nil, err
		}
	}
	t, known, err := m.reg.Attach(r.f.Identity(), h.path, r.f.Matches, start)
	if err != nil {
		r.f.Close()
		return nil, err
	}
	if err := r.attached(t); err != nil {
		return nil, err
	}
	if was, moved := t.MovedFrom(); moved {
		m.opts.Log.WithFields(logrus.Fields{"path": h.path, "inode": r.f.Identity().Ino, "device": r.f.Identity().Dev, "was_device": was.Dev, "offset": t.Committed()}).
			Info("file found under another device number: reading on from its offset")
	}
	m.opts.Log.WithFields(logrus.Fields{"path": h.path, "inode": r.f.Identity().Ino, "offset": t.Committed(), "known": known}).Info("file opened")
	return r, nil
}

// openOrphan opens a file of the path that was renamed away while the
// agent was stopped, to read it from its stored offset to its end.
func (h *harvester) openOrphan(o orphan, prev *reader) (*reader, error) {
	m := h.t.m
	r, err := newReader(h, o.at, prev)
	if err != nil {
		return nil, err
	}
	if r.f.Identity() != o.entry.Identity {
		r.f.Close()
		return nil, fmt.Errorf("%s is another file now", o.at)
	}
	t, err := m.reg.Reattach(o.entry.Identity, h.path, r.f.Matches)
	if err != nil {
		r.f.Close()
		return nil, err
	}
	if err := r.attached(t); err != nil {
		return nil, err
	}
	r.rotate()
	m.opts.Metrics.Rotations.Inc()
	m.opts.Log.WithFields(logrus.Fields{"path": h.path, "at": o.at, "inode": r.f.Identity().Ino, "offset": t.Committed()}).
		Info("file rotated while the agent was stopped: reading it to its end")
	return r, nil
}

// hasGlobMeta reports whether path has glob characters (filepath.Match).
func hasGlobMeta(path string) bool { return strings.ContainsAny(path, `*?[\`) }
