// Package tail reads the lines of one open log file with exact byte offsets.
//
// A File is one file identity (device and inode) opened once; it keeps its
// descriptor across renames and deletions, so a rotated or deleted file is
// read to its end. Lines are split here, not by github.com/nxadm/tail: that
// library's Line carries neither the file identity nor the line's own start
// offset (Tell is documented as inaccurate), so an offset registry cannot be
// kept exactly; with ReOpen it reopens a renamed file without draining it
// (nxadm/tail#28, hpcloud/tail#127), misses a truncation followed by a quick
// rewrite (nxadm/tail#62), hands out a partial line and then seeks to the end,
// skipping data, unless CompleteLines is set (nxadm/tail#25, #55); its
// MaxLineSize splits a long line instead of truncating it while ReadString
// still buffers the whole line in memory; its inotify watchers share a
// process-wide tracker with a known deadlock (hpcloud/tail#75) and a
// goroutine that never exits; and its poller calls os.Exit on a stat error.
// The pieces of it that matter here (follow a file, notice rotation and
// truncation) are small, so the harvester does them on top of File.
package tail

import (
	"bytes"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/logpipe/logpipe/common/record"
)

// FingerprintSize is how many leading bytes of a file its fingerprint covers;
// the same bytes as a record's log.file.fingerprint.
const FingerprintSize = record.FingerprintSize

// minBuffer is the read buffer of a file whose lines are short.
const minBuffer = 64 << 10

var (
	// ErrNotRegular is returned by Open for directories, pipes and devices.
	ErrNotRegular = errors.New("tail: not a regular file")
	// ErrTruncated is returned by ReadLines when the file no longer starts
	// with the bytes it had: it was truncated (and maybe written again past
	// the read offset) since the last read.
	ErrTruncated = errors.New("tail: file truncated or rewritten")
)

// Identity names a file independently of its path: device and inode.
type Identity struct {
	Dev uint64 `json:"dev"`
	Ino uint64 `json:"ino"`
}

// String is "dev:ino".
func (id Identity) String() string { return fmt.Sprintf("%d:%d", id.Dev, id.Ino) }

// IdentityOf returns the identity of a file from its FileInfo.
func IdentityOf(fi os.FileInfo) Identity {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return Identity{}
	}
	return Identity{Dev: uint64(st.Dev), Ino: uint64(st.Ino)}
}

// Fingerprint is a hash of a file's first Len bytes. It tells a file from
// an earlier one that had the same inode.
type Fingerprint struct {
	Len  int    `json:"len"`
	Hash uint64 `json:"hash"`
}

// Line is one line of a file. Text does not include the newline (nor a
// carriage return before it) and is only valid until the callback returns.
type Line struct {
	Offset    int64 // byte offset of the line's first byte
	End       int64 // byte offset just past the line's newline
	Text      []byte
	Truncated bool // the line was longer than the limit and was cut
}

// File is an open file being read line by line. It is not safe for
// concurrent use.
type File struct {
	f       *os.File
	path    string
	id      Identity
	maxLine int

	buf    []byte
	r, w   int   // unconsumed bytes are buf[r:w]
	rOff   int64 // file offset of buf[r]
	eofOff int64 // file offset of buf[w]: where the next read starts
	readAt time.Time

	skipping  bool   // discarding the rest of a line longer than maxLine
	long      []byte // the first maxLine bytes of that line
	longStart int64  // its offset

	fp    Fingerprint // of the first bytes read: checked before every read
	fpBuf [FingerprintSize]byte

	// The file's first bytes as read, for LineFingerprint: fpBuf[:headLen]
	// (verify and fill keep it), and the hash of all FingerprintSize of them
	// once known.
	headLen  int
	headFull uint64
	headDone bool
}

// Open opens path for reading. maxLine is the longest line kept whole; a
// longer line is cut to maxLine bytes and flagged.
func Open(path string, maxLine int) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%w: %s", ErrNotRegular, path)
	}
	if maxLine < 1 {
		maxLine = 1
	}
	return &File{f: f, path: path, id: IdentityOf(fi), maxLine: maxLine}, nil
}

// Path is the path the file was opened as.
func (t *File) Path() string { return t.path }

// Identity is the file's device and inode.
func (t *File) Identity() Identity { return t.id }

// Close closes the file.
func (t *File) Close() error {
	t.buf, t.long = nil, nil
	return t.f.Close()
}

// Size is the file's current size.
func (t *File) Size() (int64, error) {
	fi, err := t.f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// ReadTime is when the data of the lines being handed out was read: the
// time of the last read from disk.
func (t *File) ReadTime() time.Time { return t.readAt }

// ReadOffset is where the next read from disk starts.
func (t *File) ReadOffset() int64 { return t.eofOff }

// Consumed is the offset of the first byte not yet handed out as part of a
// line: the start of a partial or skipped line, or the read position.
func (t *File) Consumed() int64 {
	if t.skipping {
		return t.longStart
	}
	return t.rOff
}

// SeekTo drops buffered data and continues reading at off. Seeking to 0
// forgets the fingerprint: the file is read as new.
func (t *File) SeekTo(off int64) error {
	if _, err := t.f.Seek(off, io.SeekStart); err != nil {
		return err
	}
	t.r, t.w = 0, 0
	t.rOff, t.eofOff = off, off
	t.skipping, t.long = false, nil
	if cap(t.buf) > minBuffer {
		t.buf = nil
	}
	if off == 0 {
		t.fp = Fingerprint{}
	}
	t.headLen, t.headDone = 0, false
	return nil
}

// LineFingerprint is the log.file.fingerprint of a line at off that was
// handed out since the last SeekTo: the FNV-1a 64 hash of the file's first
// min(off, FingerprintSize) bytes (see record.FingerprintSize). It depends
// only on bytes before the line, so the same line read again after a
// restart has the same one. It does not allocate.
func (t *File) LineFingerprint(off int64) uint64 {
	n := int(min(max(off, 0), FingerprintSize))
	if n > t.headLen {
		// Not reached for lines handed out (fill and verify keep the
		// head), but cheap to get right.
		m, err := t.f.ReadAt(t.fpBuf[:], 0)
		if err != nil && !errors.Is(err, io.EOF) {
			m = 0
		}
		t.headLen, t.headDone = m, false
		n = min(n, m)
	}
	if n == FingerprintSize {
		if !t.headDone {
			t.headFull, t.headDone = fnv1a(t.fpBuf[:]), true
		}
		return t.headFull
	}
	return fnv1a(t.fpBuf[:n])
}

// fnv1a is FNV-1a 64, as hash/fnv computes it, without an allocation.
func fnv1a(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

// SetFingerprint sets the fingerprint the file is expected to start with,
// such as the one stored for it in the registry.
func (t *File) SetFingerprint(fp Fingerprint) { t.fp = fp }

// ReadFingerprint is the fingerprint of the file's first bytes as last
// checked: it covers up to FingerprintSize bytes before the read offset.
func (t *File) ReadFingerprint() Fingerprint { return t.fp }

// verify checks, before a read at a nonzero offset, that the file still
// starts with the bytes its fingerprint was made of, so that a truncation
// is noticed whatever the size looks like now (it may have been written
// again past the read offset) and whenever the reader comes back (it may
// have waited for Kafka meanwhile). It extends the fingerprint while it
// covers less than FingerprintSize bytes.
func (t *File) verify() error {
	want := int(min(t.eofOff, FingerprintSize))
	if t.fp.Len > want {
		want = t.fp.Len
	}
	b := t.fpBuf[:want]
	n, err := t.f.ReadAt(b, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if t.fp.Len > 0 && (n < t.fp.Len || hashBytes(b[:t.fp.Len]) != t.fp.Hash) {
		return fmt.Errorf("%w: %s", ErrTruncated, t.path)
	}
	if n > t.fp.Len {
		t.fp = Fingerprint{Len: n, Hash: hashBytes(b[:n])}
	}
	if n != t.headLen {
		t.headLen, t.headDone = n, false
	}
	return nil
}

// ReadAt reads from the open file at off, independently of line reading.
func (t *File) ReadAt(b []byte, off int64) (int, error) { return t.f.ReadAt(b, off) }

// Fingerprint hashes the first min(size, FingerprintSize) bytes.
func (t *File) Fingerprint() (Fingerprint, error) {
	var b [FingerprintSize]byte
	n, err := t.f.ReadAt(b[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return Fingerprint{}, err
	}
	return Fingerprint{Len: n, Hash: hashBytes(b[:n])}, nil
}

// Matches reports whether the file still starts with the bytes fp was made of.
func (t *File) Matches(fp Fingerprint) (bool, error) {
	if fp.Len == 0 {
		return true, nil
	}
	b := make([]byte, fp.Len)
	n, err := t.f.ReadAt(b, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	return n == fp.Len && hashBytes(b) == fp.Hash, nil
}

func hashBytes(b []byte) uint64 {
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}

// ReadLines reads to the end of the file and calls fn for every complete
// line, in order. It returns nil at the end of the file (a partial last line
// stays buffered until its newline arrives or Flush is called) and the first
// error from reading or from fn. A line longer than the limit is handed out
// once its newline is found, cut and flagged, with End past its newline;
// meanwhile only the kept part is held in memory.
func (t *File) ReadLines(fn func(Line) error) error {
	for {
		if err := t.scan(fn); err != nil {
			return err
		}
		n, err := t.fill()
		if n == 0 || errors.Is(err, io.EOF) {
			if err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			if n == 0 {
				return nil
			}
		} else if err != nil {
			return err
		}
	}
}

// scan hands out the complete lines in the buffer.
func (t *File) scan(fn func(Line) error) error {
	for t.r < t.w {
		data := t.buf[t.r:t.w]
		i := bytes.IndexByte(data, '\n')
		if t.skipping {
			if i < 0 {
				t.rOff += int64(len(data))
				t.r = t.w
				return nil
			}
			end := t.rOff + int64(i) + 1
			line := Line{Offset: t.longStart, End: end, Text: t.long, Truncated: true}
			t.r += i + 1
			t.rOff = end
			t.skipping = false
			if err := fn(line); err != nil {
				return err
			}
			t.long = t.long[:0]
			continue
		}
		if i < 0 {
			if len(data) >= t.maxLine {
				t.long = append(t.long[:0], cut(data, t.maxLine)...)
				t.longStart = t.rOff
				t.skipping = true
				t.rOff += int64(len(data))
				t.r = t.w
			}
			return nil
		}
		text := data[:i]
		if n := len(text); n > 0 && text[n-1] == '\r' {
			text = text[:n-1]
		}
		line := Line{Offset: t.rOff, End: t.rOff + int64(i) + 1, Text: text}
		if len(text) > t.maxLine {
			line.Text, line.Truncated = cut(text, t.maxLine), true
		}
		t.r += i + 1
		t.rOff = line.End
		if err := fn(line); err != nil {
			return err
		}
	}
	return nil
}

// fill reads more of the file into the buffer, making room first.
func (t *File) fill() (int, error) {
	if t.r == t.w {
		t.r, t.w = 0, 0
	}
	if t.buf == nil {
		t.buf = make([]byte, minBuffer)
	}
	if t.eofOff > 0 {
		if err := t.verify(); err != nil {
			return 0, err
		}
	}
	if t.w == len(t.buf) {
		if t.r > 0 {
			t.w = copy(t.buf, t.buf[t.r:t.w])
			t.r = 0
		} else {
			// A partial line fills the buffer: grow it, at most to hold
			// one line of the limit and its newline.
			size := min(2*len(t.buf), t.maxLine+1)
			if size <= len(t.buf) {
				size = len(t.buf) + 1
			}
			nb := make([]byte, size)
			t.w = copy(nb, t.buf[t.r:t.w])
			t.r = 0
			t.buf = nb
		}
	}
	n, err := t.f.Read(t.buf[t.w:])
	if n > 0 {
		t.readAt = time.Now()
		if p := int(min(t.eofOff, FingerprintSize)); p == t.headLen && p < FingerprintSize {
			t.headLen += copy(t.fpBuf[p:], t.buf[t.w:t.w+n])
		}
	}
	t.w += n
	t.eofOff += int64(n)
	if t.r == 0 && t.w < len(t.buf)/4 && len(t.buf) > minBuffer && !t.skipping {
		// Give back a buffer grown for one long line.
		nb := make([]byte, minBuffer)
		t.w = copy(nb, t.buf[:t.w])
		t.buf = nb
	}
	return n, err
}

// Flush hands out a buffered partial last line (or the kept part of a long
// one), for a file that will not be written any more.
func (t *File) Flush(fn func(Line) error) error {
	switch {
	case t.skipping:
		line := Line{Offset: t.longStart, End: t.rOff, Text: t.long, Truncated: true}
		t.skipping = false
		if err := fn(line); err != nil {
			return err
		}
		t.long = nil
	case t.r < t.w:
		data := t.buf[t.r:t.w]
		line := Line{Offset: t.rOff, End: t.rOff + int64(len(data)), Text: data}
		t.r = t.w
		t.rOff = line.End
		if err := fn(line); err != nil {
			return err
		}
	}
	return nil
}

// Pending reports whether a partial line is buffered.
func (t *File) Pending() bool { return t.skipping || t.r < t.w }

// cut returns the first n bytes of b, without a UTF-8 sequence cut short at
// the end.
func cut(b []byte, n int) []byte {
	if len(b) <= n {
		return b
	}
	b = b[:n]
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				return b[:i]
			}
			break
		}
	}
	return b
}
