// Package registry is the agent's durable offset registry: for each file
// identity (device, inode and a fingerprint of the first bytes) the offset of
// the first byte not yet acknowledged by Kafka, and which collect entries
// have been applied before (an entry's "from" is only for the files that
// exist when it is first applied).
//
// Nothing is dropped from the registry when the agent starts, however long
// it was stopped: a file's offset is forgotten only when the file is gone
// (the harvester that covers its path looked for it and did not find it,
// Forget) or, for a file that no collect entry covers any more, once it has
// not been read for the TTL (Expire, called once the config is applied).
//
// A Track follows the records of one file in flight. Kafka acknowledgements
// may complete out of order across partitions, but a file's committed offset
// only advances over a contiguous prefix of acknowledged records. The
// registry file is rewritten atomically (temporary file, fsync, rename, fsync
// of the directory), so a crash leaves either the old or the new version.
package registry

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/logpipe/logpipe/agent/internal/tail"
)

// FileName is the registry's file inside the state directory.
const FileName = "offsets.json"

// DefaultTTL is how long the offset of a file that no collect entry covers
// is kept after it was last read.
const DefaultTTL = 24 * time.Hour

var (
	// ErrBusy is returned by Attach for a file identity another reader holds.
	ErrBusy = errors.New("registry: file is already being read")
	// ErrUnknown is returned by Reattach for a file the registry does not know.
	ErrUnknown = errors.New("registry: file not in the registry")
)

// Entry is one file in the registry file.
type Entry struct {
	Identity    tail.Identity    `json:"identity"`
	Fingerprint tail.Fingerprint `json:"fingerprint"`
	Path        string           `json:"path"`
	Offset      int64            `json:"offset"`
	Seen        time.Time        `json:"seen"`
}

// Applied is a collect entry, by its path, applied since At.
type Applied struct {
	Path string    `json:"path"`
	At   time.Time `json:"at"`
}

type fileFormat struct {
	Version int       `json:"version"`
	Files   []Entry   `json:"files"`
	Applied []Applied `json:"applied"`
}

type entry struct {
	Entry
	track *Track
}

// Registry holds the offsets of every known file.
type Registry struct {
	path string
	ttl  time.Duration
	now  func() time.Time

	mu      sync.Mutex
	entries map[tail.Identity]*entry
	applied map[string]time.Time // collect entries by path: when first applied
	last    []byte               // what was last written

	acked chan struct{} // told (without blocking) when Kafka acknowledged records
}

// Open loads the registry from dir, creating dir if needed. A registry file
// that cannot be parsed is kept aside as offsets.json.corrupt and reported,
// and the registry starts empty.
func Open(dir string) (*Registry, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("state dir %s: %w", dir, err)
	}
	r := &Registry{
		path:    filepath.Join(dir, FileName),
		ttl:     DefaultTTL,
		now:     time.Now,
		entries: make(map[tail.Identity]*entry),
		applied: make(map[string]time.Time),
		acked:   make(chan struct{}, 1),
	}
	// Temporary files of a write cut short by a crash.
	if stale, _ := filepath.Glob(r.path + ".tmp-*"); len(stale) > 0 {
		for _, s := range stale {
			_ = os.Remove(s)
		}
	}
	data, err := os.ReadFile(r.path)
	if errors.Is(err, os.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", r.path, err)
	}
	var f fileFormat
	if err := json.Unmarshal(data, &f); err != nil {
		aside := r.path + ".corrupt"
		_ = os.Rename(r.path, aside)
		return r, fmt.Errorf("registry %s does not parse (kept as %s); starting empty: %w", r.path, aside, err)
	}
	for _, e := range f.Files {
		r.entries[e.Identity] = &entry{Entry: e}
	}
	for _, a := range f.Applied {
		r.applied[a.Path] = a.At
	}
	return r, nil
}

// Attach claims the file with identity id for reading under path. verify
// tells whether the file still starts with a stored fingerprint. When the
// registry knows the file, Attach returns its Track positioned at the
// stored offset and known true; otherwise it records the file at offset
// start. ErrBusy means another reader holds the identity.
func (r *Registry) Attach(id tail.Identity, path string, verify func(tail.Fingerprint) (bool, error), start int64) (t *Track, known bool, err error) {
	return r.attach(id, path, verify, start, true)
}

// Reattach is Attach for a file the registry knows only: ErrUnknown when it
// does not know it (or the fingerprint differs), and nothing is recorded.
func (r *Registry) Reattach(id tail.Identity, path string, verify func(tail.Fingerprint) (bool, error)) (*Track, error) {
	t, _, err := r.attach(id, path, verify, 0, false)
	return t, err
}

func (r *Registry) attach(id tail.Identity, path string, verify func(tail.Fingerprint) (bool, error), start int64, create bool) (t *Track, known bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.entries[id]
	if e != nil && e.track != nil {
		return nil, false, ErrBusy
	}
	if e != nil {
		ok, err := verify(e.Fingerprint)
		if err != nil {
			return nil, false, err
		}
		if !ok {
			e = nil // a different file that got the same inode
		}
	}
	switch {
	case e != nil:
		known = true
	case !create:
		return nil, false, ErrUnknown
	default:
		e = &entry{Entry: Entry{Identity: id, Offset: start}}
		r.entries[id] = e
	}
	e.Path = path
	e.Seen = r.now()
	t = newTrack(r, id, e.Offset, e.Fingerprint)
	e.track = t
	return t, known, nil
}

// detach records t's final offset and frees its identity.
func (r *Registry) detach(t *Track) {
	off, fp := t.snapshot()
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.entries[t.id]; e != nil && e.track == t {
		e.track = nil
		e.Offset, e.Fingerprint, e.Seen = off, fp, r.now()
	}
}

// Offset returns the stored or live committed offset of a file.
func (r *Registry) Offset(id tail.Identity) (int64, bool) {
	r.mu.Lock()
	e := r.entries[id]
	r.mu.Unlock()
	if e == nil {
		return 0, false
	}
	if e.track != nil {
		off, _ := e.track.snapshot()
		return off, true
	}
	return e.Offset, true
}

// Acked hears, coalesced, when Kafka acknowledged records of any file: the
// moment to Save, so that a killed agent sends again as little as possible.
func (r *Registry) Acked() <-chan struct{} { return r.acked }

func (r *Registry) notifyAcked() {
	select {
	case r.acked <- struct{}{}:
	default:
	}
}

// Save writes the registry if it changed.
func (r *Registry) Save() error {
	r.mu.Lock()
	now := r.now()
	f := fileFormat{Version: 1, Files: make([]Entry, 0, len(r.entries)), Applied: make([]Applied, 0, len(r.applied))}
	for _, e := range r.entries {
		if e.track != nil {
			e.Offset, e.Fingerprint = e.track.snapshot()
			e.Seen = now
		}
		f.Files = append(f.Files, e.Entry)
	}
	for path, at := range r.applied {
		f.Applied = append(f.Applied, Applied{Path: path, At: at})
	}
	r.mu.Unlock()
	slices.SortFunc(f.Files, func(a, b Entry) int {
		return cmp.Or(cmp.Compare(a.Path, b.Path), cmp.Compare(a.Identity.Dev, b.Identity.Dev), cmp.Compare(a.Identity.Ino, b.Identity.Ino))
	})
	slices.SortFunc(f.Applied, func(a, b Applied) int { return cmp.Compare(a.Path, b.Path) })
	// Seen changes on every save; compare without it to skip idle writes.
	cmpView := fileFormat{Files: make([]Entry, len(f.Files)), Applied: f.Applied}
	copy(cmpView.Files, f.Files)
	for i := range cmpView.Files {
		cmpView.Files[i].Seen = time.Time{}
	}
	key, _ := json.Marshal(cmpView)
	data, err := json.MarshalIndent(f, "", " ")
	if err != nil {
		return err
	}
	r.mu.Lock()
	same := bytes.Equal(key, r.last)
	r.mu.Unlock()
	if same {
		return nil
	}
	if err := writeAtomic(r.path, data); err != nil {
		return err
	}
	r.mu.Lock()
	r.last = key
	r.mu.Unlock()
	return nil
}

// writeAtomic replaces path with data: temporary file, fsync, rename, fsync
// of the directory.
func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing registry: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename this fails harmlessly
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing registry: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("writing registry: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing registry: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing registry: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("writing registry: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("writing registry: %w", err)
	}
	return nil
}

// Entries returns a copy of the registry, live offsets included.
func (r *Registry) Entries() []Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Entry, 0, len(r.entries))
	for _, e := range r.entries {
		x := e.Entry
		if e.track != nil {
			x.Offset, x.Fingerprint = e.track.snapshot()
		}
		out = append(out, x)
	}
	return out
}

// Applied reports whether the collect entry with this path was applied
// before (and not removed from the config since).
func (r *Registry) Applied(entry string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.applied[entry]
	return ok
}

// MarkApplied records that the collect entry with this path has been
// applied: from now on, across restarts, its "from" no longer applies.
func (r *Registry) MarkApplied(entry string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.applied[entry]; !ok {
		r.applied[entry] = r.now().UTC()
	}
}

// KeepApplied forgets the applied collect entries not in entries: the
// config no longer has them, and should one come back, it is applied anew.
func (r *Registry) KeepApplied(entries []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for path := range r.applied {
		if !slices.Contains(entries, path) {
			delete(r.applied, path)
		}
	}
}

// Detached returns the files that nobody reads and whose path covered
// tells, sorted by when they were last read.
func (r *Registry) Detached(covered func(path string) bool) []Entry {
	r.mu.Lock()
	var out []Entry
	for _, e := range r.entries {
		if e.track == nil && covered(e.Path) {
			out = append(out, e.Entry)
		}
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b Entry) int {
		return cmp.Or(a.Seen.Compare(b.Seen), cmp.Compare(a.Identity.Ino, b.Identity.Ino))
	})
	return out
}

// Forget drops a file that is gone: only when nobody reads it and it still
// has fingerprint fp (it was not taken up again as another file since).
func (r *Registry) Forget(id tail.Identity, fp tail.Fingerprint) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.entries[id]
	if e == nil || e.track != nil || e.Fingerprint != fp {
		return false
	}
	delete(r.entries, id)
	return true
}

// Expire drops the files that nobody reads, that no collect entry covers
// (covered tells by path) and that were last read more than the TTL ago,
// and returns them. The agent calls it once a config is applied, never
// before: a file is not forgotten because the agent could not read it yet.
func (r *Registry) Expire(covered func(path string) bool) []Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	var out []Entry
	for id, e := range r.entries {
		if e.track == nil && now.Sub(e.Seen) > r.ttl && !covered(e.Path) {
			out = append(out, e.Entry)
			delete(r.entries, id)
		}
	}
	return out
}
