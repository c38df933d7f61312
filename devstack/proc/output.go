package proc

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
)

// Limits of the output kept per process: the first headBytes, then the
// last tailBytes. Lines are matched by Await as they arrive, whether kept or
// not.
const (
	headBytes = 4 << 20
	tailBytes = 4 << 20
	// maxLine splits a line longer than this, so that a program that
	// never prints a newline cannot grow a pending line without bound.
	maxLine = 1 << 20
)

type line struct {
	text   string
	stdout bool
}

// output is the lines of one process, and who waits for which.
type output struct {
	mu       sync.Mutex
	head     []line
	headSize int
	tail     []line // once head is full
	tailSize int
	left     int // lines dropped between head and tail
	waiters  map[*waiter]struct{}
}

type waiter struct {
	match func(string) (string, bool)
	found chan string // buffered: gets the first match
}

func newOutput() *output { return &output{waiters: map[*waiter]struct{}{}} }

// add keeps a line and hands it to the waiters it matches.
func (o *output) add(l line) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for w := range o.waiters {
		if r, ok := w.match(l.text); ok {
			w.found <- r
			delete(o.waiters, w)
		}
	}
	if o.headSize+len(l.text) <= headBytes && o.tail == nil {
		o.head = append(o.head, l)
		o.headSize += len(l.text)
		return
	}
	o.tail = append(o.tail, l)
	o.tailSize += len(l.text)
	for o.tailSize > tailBytes && len(o.tail) > 1 {
		o.tailSize -= len(o.tail[0].text)
		o.tail[0] = line{}
		o.tail = o.tail[1:] // append reallocates now and then, leaving the dropped lines behind
		o.left++
	}
}

// watch returns a channel that gets the result of the first kept or later
// line that match accepts, and a function that stops watching.
func (o *output) watch(match func(string) (string, bool)) (<-chan string, func()) {
	w := &waiter{match: match, found: make(chan string, 1)}
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, part := range [][]line{o.head, o.tail} {
		for _, l := range part {
			if r, ok := match(l.text); ok {
				w.found <- r
				return w.found, func() {}
			}
		}
	}
	o.waiters[w] = struct{}{}
	return w.found, func() {
		o.mu.Lock()
		delete(o.waiters, w)
		o.mu.Unlock()
	}
}

// text is the kept lines, each with prefix; onlyStdout leaves stderr out.
func (o *output) text(prefix string, onlyStdout bool) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var b strings.Builder
	write := func(ls []line) {
		for _, l := range ls {
			if !onlyStdout || l.stdout {
				b.WriteString(prefix)
				b.WriteString(l.text)
				b.WriteByte('\n')
			}
		}
	}
	write(o.head)
	if o.left > 0 {
		fmt.Fprintf(&b, "%s[%d lines left out]\n", prefix, o.left)
	}
	write(o.tail)
	return b.String()
}

// stream returns the writer of stdout or of stderr.
func (o *output) stream(stderr bool) *lineWriter {
	return &lineWriter{o: o, stdout: !stderr}
}

// lineWriter cuts what a process writes into lines. exec.Cmd calls Write
// from one goroutine per stream.
type lineWriter struct {
	o       *output
	stdout  bool
	pending []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.pending = append(w.pending, p...)
			if len(w.pending) >= maxLine {
				w.flush()
			}
			break
		}
		w.pending = append(w.pending, p[:i]...)
		w.emit()
		p = p[i+1:]
	}
	return n, nil
}

// flush emits a last line that has no newline.
func (w *lineWriter) flush() {
	if len(w.pending) > 0 {
		w.emit()
	}
}

func (w *lineWriter) emit() {
	w.o.add(line{text: string(bytes.TrimSuffix(w.pending, []byte("\r"))), stdout: w.stdout})
	w.pending = w.pending[:0]
}
