package tail

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type got struct {
	off, end  int64
	text      string
	truncated bool
}

func collect(t testing.TB, f *File) []got {
	t.Helper()
	var out []got
	err := f.ReadLines(func(l Line) error {
		out = append(out, got{l.Offset, l.End, string(l.Text), l.Truncated})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func write(t testing.TB, path, data string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func open(t testing.TB, path string, maxLine int) *File {
	t.Helper()
	f, err := Open(path, maxLine)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestReadLines(t *testing.T) {
	tests := map[string]struct {
		data    string
		maxLine int
		want    []got
		pending bool
	}{
		"plain": {
			data: "a\nbb\n\nccc\n", maxLine: 100,
			want: []got{{0, 2, "a", false}, {2, 5, "bb", false}, {5, 6, "", false}, {6, 10, "ccc", false}},
		},
		"crlf": {
			data: "a\r\nb\n", maxLine: 100,
			want: []got{{0, 3, "a", false}, {3, 5, "b", false}},
		},
		"partial last line stays": {
			data: "a\nbc", maxLine: 100,
			want: []got{{0, 2, "a", false}}, pending: true,
		},
		"long line cut": {
			data: "0123456789\nab\n", maxLine: 4,
			want: []got{{0, 11, "0123", true}, {11, 14, "ab", false}},
		},
		"exactly the limit": {
			data: "abcd\n", maxLine: 4,
			want: []got{{0, 5, "abcd", false}},
		},
		"cut on a rune boundary": {
			data: "aé€x\n", maxLine: 5, // a(1) é(2) €(3): 5 bytes would split €
			want: []got{{0, 8, "aé", true}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "f.log")
			write(t, path, tc.data)
			f := open(t, path, tc.maxLine)
			g := collect(t, f)
			if len(g) != len(tc.want) {
				t.Fatalf("got %+v, want %+v", g, tc.want)
			}
			for i := range g {
				if g[i] != tc.want[i] {
					t.Errorf("line %d: got %+v, want %+v", i, g[i], tc.want[i])
				}
			}
			if f.Pending() != tc.pending {
				t.Errorf("pending %v, want %v", f.Pending(), tc.pending)
			}
		})
	}
}

func TestPartialLineCompletedLater(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f.log")
	write(t, path, "hel")
	f := open(t, path, 100)
	if g := collect(t, f); len(g) != 0 {
		t.Fatalf("got %+v before the newline", g)
	}
	if f.Consumed() != 0 {
		t.Fatalf("consumed %d, want 0 while the line is partial", f.Consumed())
	}
	write(t, path, "lo\nwor")
	g := collect(t, f)
	if len(g) != 1 || g[0].text != "hello" || g[0].end != 6 {
		t.Fatalf("got %+v", g)
	}
	var flushed []got
	if err := f.Flush(func(l Line) error {
		flushed = append(flushed, got{l.Offset, l.End, string(l.Text), l.Truncated})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(flushed) != 1 || flushed[0] != (got{6, 9, "wor", false}) {
		t.Fatalf("flushed %+v", flushed)
	}
}

func TestLongLineAcrossReadsKeepsMemoryBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f.log")
	const maxLine = 1000
	long := strings.Repeat("x", 3*minBuffer)
	write(t, path, long[:minBuffer+7])
	f := open(t, path, maxLine)
	if g := collect(t, f); len(g) != 0 {
		t.Fatalf("got %+v", g)
	}
	if !f.Pending() || f.Consumed() != 0 {
		t.Fatalf("pending %v consumed %d", f.Pending(), f.Consumed())
	}
	if cap(f.buf) > minBuffer {
		t.Fatalf("buffer grew to %d for a line cut at %d", cap(f.buf), maxLine)
	}
	write(t, path, long[minBuffer+7:]+"\nnext\n")
	g := collect(t, f)
	want := []got{{0, int64(len(long)) + 1, long[:maxLine], true}, {int64(len(long)) + 1, int64(len(long)) + 6, "next", false}}
	if len(g) != 2 || g[0] != want[0] || g[1] != want[1] {
		t.Fatalf("got %d lines: %+v", len(g), g)
	}
}

func TestBufferGrowsForLongLineUpToLimit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f.log")
	const maxLine = 200 << 10
	line := strings.Repeat("y", 150<<10)
	write(t, path, line+"\n")
	f := open(t, path, maxLine)
	g := collect(t, f)
	if len(g) != 1 || g[0].text != line || g[0].truncated {
		t.Fatalf("got %d lines", len(g))
	}
}

func TestSeekAndIdentity(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f.log")
	write(t, path, "one\ntwo\nthree\n")
	f := open(t, path, 100)
	if err := f.SeekTo(4); err != nil {
		t.Fatal(err)
	}
	g := collect(t, f)
	if len(g) != 2 || g[0].text != "two" || g[0].off != 4 {
		t.Fatalf("got %+v", g)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if IdentityOf(fi) != f.Identity() {
		t.Fatalf("identity %v, stat says %v", f.Identity(), IdentityOf(fi))
	}
	// Renamed: same identity, still readable to the end.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	write(t, path+".1", "four\n")
	if g := collect(t, f); len(g) != 1 || g[0].text != "four" {
		t.Fatalf("after rename got %+v", g)
	}
}

func TestFingerprint(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f.log")
	write(t, path, "hello\n")
	f := open(t, path, 100)
	fp, err := f.Fingerprint()
	if err != nil || fp.Len != 6 {
		t.Fatalf("fingerprint %+v %v", fp, err)
	}
	write(t, path, "more\n")
	if ok, _ := f.Matches(fp); !ok {
		t.Fatal("growing file no longer matches its fingerprint")
	}
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	write(t, path, "HELLO\nmore\n")
	if ok, _ := f.Matches(fp); ok {
		t.Fatal("rewritten file still matches")
	}
	if ok, _ := f.Matches(Fingerprint{}); !ok {
		t.Fatal("empty fingerprint must match")
	}
}

func TestOpenRejectsDirectory(t *testing.T) {
	if _, err := Open(t.TempDir(), 10); err == nil {
		t.Fatal("opened a directory")
	}
}

func BenchmarkReadLines(b *testing.B) {
	path := filepath.Join(b.TempDir(), "f.log")
	line := strings.Repeat("z", 199) + "\n"
	write(b, path, strings.Repeat(line, 50000))
	b.ReportAllocs()
	b.SetBytes(int64(len(line) * 50000))
	for b.Loop() {
		f, err := Open(path, 1<<20)
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		_ = f.ReadLines(func(Line) error { n++; return nil })
		f.Close()
		if n != 50000 {
			b.Fatal(n)
		}
	}
}

// A truncation is noticed at the next read whatever the size is by then:
// here the file is written again past the read offset, so only its first
// bytes tell. Lines read before are not affected.
func TestTruncationNoticedWhenRewrittenLonger(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.log")
	write(t, path, "first old line\nsecond old line\n")
	f := open(t, path, 100)
	if lines := collect(t, f); len(lines) != 2 {
		t.Fatalf("lines %+v", lines)
	}
	if fp := f.ReadFingerprint(); fp.Len != 31 {
		t.Fatalf("fingerprint covers %d bytes, want 31", fp.Len)
	}
	if err := os.WriteFile(path, []byte(strings.Repeat("a new and longer line\n", 10)), 0o644); err != nil {
		t.Fatal(err)
	}
	err := f.ReadLines(func(l Line) error {
		t.Fatalf("line %q handed out from the old offset of a rewritten file", l.Text)
		return nil
	})
	if !errors.Is(err, ErrTruncated) {
		t.Fatalf("read after a rewrite: %v, want ErrTruncated", err)
	}
	if err := f.SeekTo(0); err != nil {
		t.Fatal(err)
	}
	if lines := collect(t, f); len(lines) != 10 || lines[0].text != "a new and longer line" {
		t.Fatalf("after seeking to 0: %+v", lines)
	}
}

// A file opened at a stored offset is checked against its stored
// fingerprint before the first read.
func TestStoredFingerprintChecked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.log")
	write(t, path, "one\ntwo\n")
	f := open(t, path, 100)
	fp, err := f.Fingerprint()
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.WriteFile(path, []byte("ONE\ntwo\nthree\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	g := open(t, path, 100)
	g.SetFingerprint(fp)
	if err := g.SeekTo(4); err != nil {
		t.Fatal(err)
	}
	if err := g.ReadLines(func(Line) error { return nil }); !errors.Is(err, ErrTruncated) {
		t.Fatalf("read with a stale fingerprint: %v", err)
	}
}
