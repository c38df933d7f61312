package memlog_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/logpipe/logpipe/common/memlog"
)

// deadline is how long an operation that should finish promptly may take
// before a test gives up; it is not a performance assertion.
const deadline = 10 * time.Second

func write(t testing.TB, r *memlog.Ring, chunks ...string) {
	t.Helper()
	for _, c := range chunks {
		n, err := r.Write([]byte(c))
		if err != nil || n != len(c) {
			t.Errorf("Write(%q) = %d, %v; want %d, nil", c, n, err, len(c))
		}
	}
}

// retained is the number of bytes lines occupy in a ring.
func retained(lines []string) int {
	n := 0
	for _, l := range lines {
		n += len(l) + 1
	}
	return n
}

func TestRingKeepsLastLines(t *testing.T) {
	tests := map[string]struct {
		maxBytes int
		writes   []string
		want     []string
	}{
		"empty":                       {maxBytes: 10, writes: nil, want: []string{}},
		"fits":                        {maxBytes: 100, writes: []string{"a\nbb\n"}, want: []string{"a", "bb"}},
		"exact fit":                   {maxBytes: 9, writes: []string{"aa\nbb\ncc\n"}, want: []string{"aa", "bb", "cc"}},
		"one byte short evicts":       {maxBytes: 8, writes: []string{"aa\nbb\ncc\n"}, want: []string{"bb", "cc"}},
		"evicts several":              {maxBytes: 6, writes: []string{"a\nb\nc\nd\n", "eeee\n"}, want: []string{"eeee"}},
		"keeps order":                 {maxBytes: 6, writes: []string{"1\n", "2\n", "3\n", "4\n"}, want: []string{"2", "3", "4"}},
		"empty lines cost one byte":   {maxBytes: 3, writes: []string{"\n\n\n\n\n"}, want: []string{"", "", ""}},
		"long line truncated":         {maxBytes: 4, writes: []string{"abcdefgh\n"}, want: []string{"abc"}},
		"long line evicts all":        {maxBytes: 5, writes: []string{"a\nb\nabcdefgh\n"}, want: []string{"abcd"}},
		"truncation keeps whole rune": {maxBytes: 4, writes: []string{"a€b\n"}, want: []string{"a"}},
		"truncation at rune end":      {maxBytes: 4, writes: []string{"aé€\n"}, want: []string{"aé"}},
		"size one keeps empty lines":  {maxBytes: 1, writes: []string{"abc\n", "d\n"}, want: []string{""}},
		"partial line held back":      {maxBytes: 10, writes: []string{"a\nb"}, want: []string{"a"}},
		"partial writes assemble":     {maxBytes: 10, writes: []string{"a", "b\nc", "\n"}, want: []string{"ab", "c"}},
		"newline alone completes":     {maxBytes: 10, writes: []string{"abc", "\n"}, want: []string{"abc"}},
		"byte by byte":                {maxBytes: 10, writes: strings.Split("ab\ncd\n", ""), want: []string{"ab", "cd"}},
		"long partial truncated":      {maxBytes: 4, writes: []string{"ab", "cd", "ef\n"}, want: []string{"abc"}},
		"long partial then lines":     {maxBytes: 4, writes: []string{"abcdef", "gh\nxy\n"}, want: []string{"xy"}},
		"long partial cut in rune":    {maxBytes: 4, writes: []string{"a", "€", "b\n"}, want: []string{"a"}},
		"size below one is default":   {maxBytes: 0, writes: []string{"a\n"}, want: []string{"a"}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			r := memlog.New(tt.maxBytes)
			write(t, r, tt.writes...)
			got := r.Lines()
			if !slices.Equal(got, tt.want) {
				t.Errorf("Lines() = %q, want %q", got, tt.want)
			}
			if tt.maxBytes > 0 && retained(got) > tt.maxBytes {
				t.Errorf("retained %d bytes, more than %d", retained(got), tt.maxBytes)
			}
		})
	}
}

// TestRingMatchesModel splits random text into random writes and compares
// the ring with a direct computation: the last complete lines, each cut to
// fit, whose total fits.
func TestRingMatchesModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "b", "é", "€", "\n", "\n", "xyz"}
	for iter := range 500 {
		maxBytes := 1 + rng.IntN(40)
		var sb strings.Builder
		for range rng.IntN(200) {
			sb.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		text := sb.String()

		r := memlog.New(maxBytes)
		for rest := text; len(rest) > 0; {
			n := 1 + rng.IntN(min(len(rest), 16))
			write(t, r, rest[:n])
			rest = rest[n:]
		}

		var want []string
		if i := strings.LastIndexByte(text, '\n'); i >= 0 {
			all := strings.Split(text[:i], "\n")
			size := 0
			for j := len(all) - 1; j >= 0; j-- {
				l := all[j]
				if len(l) > maxBytes-1 {
					l = l[:maxBytes-1]
					for !utf8.ValidString(l) {
						l = l[:len(l)-1]
					}
				}
				if size+len(l)+1 > maxBytes {
					break
				}
				size += len(l) + 1
				want = append(want, l)
			}
			slices.Reverse(want)
		}
		if got := r.Lines(); !slices.Equal(got, want) {
			t.Fatalf("iteration %d, maxBytes %d, text %q:\nLines() = %q\nwant      %q", iter, maxBytes, text, got, want)
		}
	}
}

func TestConcurrentWriters(t *testing.T) {
	const writers, perWriter = 8, 500
	r := memlog.New(1 << 20)
	lines, cancel := r.Subscribe(writers * perWriter)
	defer cancel()

	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				fmt.Fprintf(r, "w%d %d\n", w, i)
			}
		})
	}
	// Readers and short-lived subscribers run alongside the writers.
	stop := make(chan struct{})
	var readers sync.WaitGroup
	readers.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = r.Lines()
			_, _, c := r.SnapshotAndSubscribe(1)
			c()
		}
	})
	wg.Wait()
	close(stop)
	readers.Wait()

	check := func(source string, got []string) {
		t.Helper()
		if len(got) != writers*perWriter {
			t.Fatalf("%s: %d lines, want %d", source, len(got), writers*perWriter)
		}
		next := make([]int, writers)
		for _, l := range got {
			var w, i int
			if _, err := fmt.Sscanf(l, "w%d %d", &w, &i); err != nil {
				t.Fatalf("%s: malformed line %q", source, l)
			}
			if i != next[w] {
				t.Fatalf("%s: writer %d: line %d, want %d", source, w, i, next[w])
			}
			next[w]++
		}
	}
	check("Lines", r.Lines())
	cancel()
	var streamed []string
	for l := range lines {
		streamed = append(streamed, l)
	}
	check("subscription", streamed)
}

func TestSlowSubscriberDoesNotBlockWriters(t *testing.T) {
	const writers, perWriter = 4, 5000
	r := memlog.New(4096)
	lines, cancel := r.Subscribe(2) // never read while writing
	defer cancel()

	done := make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		for range writers {
			wg.Go(func() {
				for range perWriter {
					write(t, r, "a line that nobody reads\n")
				}
			})
		}
		wg.Wait()
	}()
	select {
	case <-done:
	case <-time.After(deadline):
		t.Fatal("writers blocked by a subscriber that does not read")
	}

	// The subscriber got the first two lines, then learns how many it
	// missed before the next line.
	<-lines
	<-lines
	write(t, r, "next\n")
	want := []string{memlog.DroppedNotice(writers*perWriter - 2), "next"}
	for _, w := range want {
		if got := <-lines; got != w {
			t.Fatalf("received %q, want %q", got, w)
		}
	}
}

func TestDroppedNoticeComesWithTheNextLine(t *testing.T) {
	r := memlog.New(1024)
	lines, cancel := r.Subscribe(1) // raised to 2
	defer cancel()

	expect := func(want ...string) {
		t.Helper()
		for _, w := range want {
			select {
			case got := <-lines:
				if got != w {
					t.Fatalf("received %q, want %q", got, w)
				}
			default:
				t.Fatalf("nothing received, want %q", w)
			}
		}
		select {
		case got := <-lines:
			t.Fatalf("received %q, want nothing more", got)
		default:
		}
	}

	write(t, r, "1\n2\n3\n4\n") // 1 and 2 queued, 3 and 4 dropped
	if got := <-lines; got != "1" {
		t.Fatalf("received %q, want 1", got)
	}
	write(t, r, "5\n") // one free slot: no room for notice and line, 5 dropped
	expect("2")
	write(t, r, "6\n")
	expect(memlog.DroppedNotice(3), "6")
	write(t, r, "7\n")
	expect("7")
}

func TestSnapshotAndSubscribeHasNoGapOrDuplicate(t *testing.T) {
	const total = 5000
	r := memlog.New(1 << 20)

	started := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range total {
			if i == total/10 {
				close(started)
			}
			write(t, r, strconv.Itoa(i)+"\n")
		}
	}()

	<-started
	past, lines, cancel := r.SnapshotAndSubscribe(total)
	<-done
	cancel()

	got := past
	for l := range lines {
		got = append(got, l)
	}
	if len(got) != total {
		t.Fatalf("past %d + streamed %d = %d lines, want %d", len(past), len(got)-len(past), len(got), total)
	}
	for i, l := range got {
		if l != strconv.Itoa(i) {
			t.Fatalf("line %d is %q", i, l)
		}
	}
}

func TestSubscribeSeesOnlyNewLines(t *testing.T) {
	r := memlog.New(100)
	write(t, r, "old\n", "partial")
	lines, cancel := r.Subscribe(4)
	defer cancel()
	write(t, r, " line\nnew\n")
	for _, want := range []string{"partial line", "new"} {
		if got := <-lines; got != want {
			t.Fatalf("received %q, want %q", got, want)
		}
	}
}

func TestCancelFreesSubscriber(t *testing.T) {
	r := memlog.New(100)
	lines, cancel := r.Subscribe(4)
	_, _, cancel2 := r.SnapshotAndSubscribe(4)
	if n := r.Subscribers(); n != 2 {
		t.Fatalf("Subscribers() = %d, want 2", n)
	}
	write(t, r, "kept\n")

	cancel()
	cancel() // idempotent
	cancel2()
	if n := r.Subscribers(); n != 0 {
		t.Fatalf("Subscribers() after cancel = %d, want 0", n)
	}
	write(t, r, "after cancel\n")

	if got, ok := <-lines; !ok || got != "kept" {
		t.Fatalf("received %q, %v; want the line buffered before cancel", got, ok)
	}
	if got, ok := <-lines; ok {
		t.Fatalf("received %q after cancel; want a closed channel", got)
	}
}

func TestCancelRacesWithWriters(t *testing.T) {
	r := memlog.New(1024)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 1000 {
				write(t, r, "line\n")
			}
		})
	}
	for range 4 {
		wg.Go(func() {
			for range 200 {
				lines, cancel := r.Subscribe(1)
				go cancel()
				cancel()
				for range lines {
				}
			}
		})
	}
	wg.Wait()
	if n := r.Subscribers(); n != 0 {
		t.Fatalf("Subscribers() = %d, want 0", n)
	}
}

func BenchmarkWrite(b *testing.B) {
	line := []byte(`time="2026-11-21T10:00:00.123Z" level=info msg="batch indexed" docs=500 took=12ms` + "\n")
	b.Run("no subscribers", func(b *testing.B) {
		r := memlog.New(1 << 20)
		b.ReportAllocs()
		b.SetBytes(int64(len(line)))
		for b.Loop() {
			r.Write(line)
		}
	})
	b.Run("slow subscriber", func(b *testing.B) {
		r := memlog.New(1 << 20)
		_, cancel := r.Subscribe(16)
		defer cancel()
		b.ReportAllocs()
		b.SetBytes(int64(len(line)))
		for b.Loop() {
			r.Write(line)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		r := memlog.New(1 << 20)
		b.ReportAllocs()
		b.SetBytes(int64(len(line)))
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				r.Write(line)
			}
		})
	})
}
