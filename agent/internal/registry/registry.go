// Package registry is the agent's durable offset registry: for each file
// identity (device, inode and a fingerprint of the first bytes) the offset of
// the first byte not yet acknowledged by Kafka and the file generation being
// read, and which collect entries have been applied before (an entry's
// "from" is only for the files that exist when it is first applied).
//
// A file generation (record.GenerationLen) starts when the registry takes up
// a file it does not know, a known device and inode that no longer start
// with the stored fingerprint (a new file on a reused inode, or one
// rewritten), and when the reader of a file finds it truncated
// (Track.NewGeneration). Every line of a generation carries it, so the
// registry is written before a generation's first line can be sent: a line
// sent again after a crash must carry the generation it was first sent with.
//
// A file whose device number changed (a disk that came back under another
// number) keeps its offset and generation: Attach takes over the entry of
// the same inode and path on another device when nobody reads it and the
// file still starts with its fingerprint.
//
// Nothing is dropped from the registry when the agent starts, however long
// it was stopped: a file's offset is forgotten only when the file is gone
// (the harvester that covers its path looked for it in its directory and
// did not find it, Forget; a missing directory keeps its files) or, for a
// file that no collect entry covers any more, once it has not been read
// for the TTL (Expire, called once the config is applied).
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
	"crypto/rand"
	"encoding/hex"
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
	Generation  string           `json:"generation,omitempty"` // empty for files first read by agents that had none
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

	saveMu sync.Mutex // one Save at a time: a later snapshot is never overwritten by an earlier one
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
// stored offset and known true; a file it knows under the same inode and
// path on another device is taken over (Track.MovedFrom). Otherwise it
// records the file at offset start, in a new generation, and writes the
// registry before it returns. ErrBusy means another reader holds the
// identity.
func (r *Registry) Attach(id tail.Identity, path string, verify func(tail.Fingerprint) (bool, error), start int64) (t *Track, known bool, err error) {
	t, known, err = r.attach(id, path, verify, start, true)
	if err != nil || known {
		return t, known, err
	}
	// A new generation: durable before any of its lines is sent. New files
	// are rare next to lines, so one more write of the registry is cheap.
	if err := r.Save(); err != nil {
		r.mu.Lock()
		if e := r.entries[id]; e != nil && e.track == t {
			delete(r.entries, id)
		}
		r.mu.Unlock()
		return nil, false, fmt.Errorf("recording a new file generation: %w", err)
	}
	return t, false, nil
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
	var moved tail.Identity
	if e == nil && create {
		if e, err = r.movedLocked(id, path, verify); err != nil {
			return nil, false, err
		}
		if e != nil {
			moved = e.Identity
			delete(r.entries, moved)
			e.Identity = id
			r.entries[id] = e
		}
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
		e = &entry{Entry: Entry{Identity: id, Offset: start, Generation: NewGeneration()}}
		r.entries[id] = e
	}
	e.Path = path
	e.Seen = r.now()
	t = newTrack(r, id, e.Offset, e.Fingerprint, e.Generation)
	t.movedFrom = moved
	e.track = t
	return t, known, nil
}

// movedLocked finds the entry of the file at id when its device number
// changed: the same inode and path on another device, read by nobody,
// with a fingerprint that covers bytes and that the file still starts
// with. The path makes it the same file rather than one of another file
// system that happens to have the same inode and first bytes.
func (r *Registry) movedLocked(id tail.Identity, path string, verify func(tail.Fingerprint) (bool, error)) (*entry, error) {
	for other, e := range r.entries {
		if other.Ino != id.Ino || other.Dev == id.Dev || e.track != nil || e.Path != path || e.Fingerprint.Len == 0 {
			continue
		}
		ok, err := verify(e.Fingerprint)
		if err != nil {
			return nil, err
		}
		if ok {
			return e, nil
		}
	}
	return nil, nil
}

// NewGeneration returns a new file generation: 16 lowercase hex digits
// from crypto/rand, never all zeros.
func NewGeneration() string {
	var b [8]byte
	for {
		_, _ = rand.Read(b[:]) // never fails (crypto/rand)
		if b != [8]byte{} {
			return hex.EncodeToString(b[:])
		}
	}
}

// detach records t's final offset and frees its identity.
func (r *Registry) detach(t *Track) {
	off, fp, gen := t.snapshot()
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.entries[t.id]; e != nil && e.track == t {
		e.track = nil
		e.Offset, e.Fingerprint, e.Generation, e.Seen = off, fp, gen, r.now()
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
		off, _, _ := e.track.snapshot()
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
	r.saveMu.Lock()
	defer r.saveMu.Unlock()
	r.mu.Lock()
	now := r.now()
	f := fileFormat{Version: 1, Files: make([]Entry, 0, len(r.entries)), Applied: make([]Applied, 0, len(r.applied))}
	for _, e := range r.entries {
		if e.track != nil {
			e.Offset, e.Fingerprint, e.Generation = e.track.snapshot()
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
			x.Offset, x.Fingerprint, x.Generation = e.track.snapshot()
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
