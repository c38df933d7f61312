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
package harvest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/logpipe/logpipe/agent/internal/producer"
	"github.com/logpipe/logpipe/agent/internal/registry"
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
	RotatedIdle    time.Duration // a rotated or deleted file is closed after this long without growth
	MultilineFlush time.Duration // a pending multiline event is sent after this long without a new line
	StopTimeout    time.Duration // how long a stopped file waits for its records in flight
	Log            logrus.FieldLogger
	Metrics        *Metrics
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
		RotatedIdle:    5 * time.Second,
		MultilineFlush: time.Second,
		StopTimeout:    5 * time.Second,
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
	opts Options
	prod *producer.Producer
	reg  *registry.Registry

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
	return &Manager{
		opts:    opts,
		prod:    prod,
		reg:     reg,
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
	defer m.mu.Unlock()
	if m.closed || m.ctx.Err() != nil {
		return
	}
	for _, e := range cfg { // config order: the first entry to match a file owns it
		if _, ok := m.targets[e.Path]; ok {
			continue
		}
		t := m.newTarget(want[e.Path])
		m.targets[e.Path] = t
		m.wg.Go(t.run)
	}
}

// Wait returns when every reader has stopped, after the Manager's context
// is done.
func (m *Manager) Wait() {
	<-m.ctx.Done()
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.wg.Wait()
}

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
	log := t.m.opts.Log.WithField("entry", t.entry.Path)
	log.Info("collect entry started")
	defer log.Info("collect entry stopped")
	initial := true
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-t.ctx.Done():
			return
		case <-timer.C:
		}
		matches, err := filepath.Glob(t.entry.Path)
		if err != nil {
			t.m.setErr(t.entry.Path, err)
		}
		for _, path := range matches {
			if h := t.claim(path, initial); h != nil {
				wg.Go(func() { h.run(t.ctx) })
			}
		}
		initial = false
		timer.Reset(t.m.opts.ScanInterval)
	}
}

// claim creates the harvester of path unless the path has one.
func (t *target) claim(path string, initial bool) *harvester {
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return nil
	}
	t.m.mu.Lock()
	defer t.m.mu.Unlock()
	if _, ok := t.m.paths[path]; ok {
		return nil
	}
	h := &harvester{t: t, path: path, job: t.entry.JobFor(path), initial: initial}
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
	initial bool // found by the entry's first scan: "from" applies
}

func (h *harvester) run(ctx context.Context) {
	defer h.t.release(h)
	m := h.t.m
	var (
		wg       sync.WaitGroup
		cur      *reader
		live     = make(map[*reader]struct{})
		ended    = make(chan *reader, 16)
		first    = true
		interval = min(m.opts.ScanInterval, m.opts.PollMax)
	)
	defer wg.Wait()
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
			continue
		case <-timer.C:
		}
		timer.Reset(interval)
		fi, err := os.Stat(h.path)
		switch {
		case err == nil && fi.Mode().IsRegular():
			if cur != nil && cur.f.Identity() == identityOf(fi) {
				continue
			}
			r, err := h.open(first, cur)
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
			first = false
			cur = r
			live[r] = struct{}{}
			wg.Go(func() {
				r.run(ctx)
				select {
				case ended <- r:
				case <-ctx.Done():
				}
			})
		case err != nil && errors.Is(err, os.ErrNotExist):
			if cur != nil {
				m.opts.Metrics.Rotations.Inc()
				m.opts.Log.WithField("path", h.path).Info("file deleted or moved: reading it to its end")
				cur.rotate()
				cur = nil
			}
			if len(live) == 0 {
				return // gone and read: a later scan picks up a new file at this path
			}
		case err != nil:
			m.setErr(h.path, err)
		}
	}
}

// open opens the file now at the path and attaches it to the registry.
func (h *harvester) open(first bool, prev *reader) (*reader, error) {
	m := h.t.m
	r, err := newReader(h, prev)
	if err != nil {
		return nil, err
	}
	t, known, err := m.reg.Attach(r.f.Identity(), h.path, r.f.Matches)
	if err != nil {
		r.f.Close()
		return nil, err
	}
	r.track = t
	start := int64(0)
	switch {
	case known:
		start = t.Committed()
	case first && h.initial && h.t.entry.From == collect.FromEnd:
		start, err = lastLineStart(r.f)
		if err != nil {
			t.Close()
			r.f.Close()
			return nil, err
		}
	}
	if err := r.f.SeekTo(start); err != nil {
		t.Close()
		r.f.Close()
		return nil, err
	}
	r.f.SetFingerprint(t.Fingerprint())
	t.Advance(start)
	m.mu.Lock()
	m.readers[r] = struct{}{}
	m.mu.Unlock()
	m.opts.Metrics.FilesTailed.Inc()
	m.opts.Log.WithFields(logrus.Fields{"path": h.path, "inode": r.f.Identity().Ino, "offset": start, "known": known}).Info("file opened")
	return r, nil
}
