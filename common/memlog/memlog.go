// Package memlog keeps a service's own recent log lines in a bounded
// in-memory ring and streams them to operators.
//
// A *Ring is an io.Writer: give it to the logger next to stderr (see package
// logging) and it retains the last lines written, up to a byte budget. The
// ring's Handler serves those lines at /debug/logs: a plain GET returns them
// as text, a WebSocket connection receives them and then every new line live.
//
// Writers never block on readers. Each subscriber has a bounded channel; when
// it is full the line is dropped for that subscriber only, and the next line
// it does receive is preceded by a notice "memlog: N lines dropped" (see
// DroppedNotice).
package memlog

import (
	"bytes"
	"strconv"
	"sync"
	"unicode/utf8"
)

// DefaultMaxBytes is the ring size New uses when given a size below 1.
const DefaultMaxBytes = 1 << 20

// DefaultBuffer is the subscriber channel capacity used when Subscribe or
// SnapshotAndSubscribe is given a buffer below 1.
const DefaultBuffer = 256

// minBuffer is the smallest subscriber channel capacity: a drop notice and
// the line after it are always delivered together.
const minBuffer = 2

// minSlots is the smallest capacity of the circular line buffer; below it
// the buffer never shrinks.
const minSlots = 64

// DroppedNotice returns the line a subscriber receives in place of n lines
// it was too slow to take: "memlog: 1 line dropped", "memlog: 5 lines dropped".
func DroppedNotice(n int) string {
	if n == 1 {
		return "memlog: 1 line dropped"
	}
	return "memlog: " + strconv.Itoa(n) + " lines dropped"
}

// Ring is a bounded buffer of the most recent complete lines written to it.
//
// The retained lines, each counted with its newline, never exceed the size
// given to New; the oldest lines are evicted first. A line longer than the
// ring is truncated to fit (on a UTF-8 boundary), and an unterminated line
// is held back, bounded by the same size, until its newline arrives.
// Retained memory is therefore proportional to the ring size, whatever the
// rate or shape of the writes.
//
// A Ring is safe for concurrent use. The zero value is not usable; call New.
type Ring struct {
	maxBytes int
	maxLine  int // longest line kept, without its newline

	mu        sync.Mutex
	slots     []string // circular buffer of lines, oldest at head
	head      int
	n         int
	size      int    // bytes retained, one newline per line included
	partial   []byte // the unterminated line being assembled, at most maxLine bytes
	truncated bool   // partial lost bytes beyond maxLine
	subs      map[*subscriber]struct{}
}

type subscriber struct {
	ch      chan string
	dropped int // lines not delivered since the last delivery
}

// New returns a ring that retains at most maxBytes bytes of recent lines,
// newlines included. A maxBytes below 1 means DefaultMaxBytes.
func New(maxBytes int) *Ring {
	if maxBytes < 1 {
		maxBytes = DefaultMaxBytes
	}
	return &Ring{
		maxBytes: maxBytes,
		maxLine:  maxBytes - 1,
		subs:     make(map[*subscriber]struct{}),
	}
}

// Write adds the complete lines in p to the ring and hands each to the
// subscribers; bytes after the last newline are kept until the line is
// completed by a later Write. Write never blocks on subscribers and never
// fails: it always returns len(p), nil.
func (r *Ring) Write(p []byte) (int, error) {
	n := len(p)
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			r.appendPartial(p)
			break
		}
		var line string
		if len(r.partial) == 0 && !r.truncated {
			line = string(r.clip(p[:i]))
		} else {
			r.appendPartial(p[:i])
			b := r.partial
			if r.truncated {
				b = trimIncompleteRune(b)
			}
			line = string(b)
			r.partial = r.partial[:0]
			r.truncated = false
		}
		r.add(line)
		p = p[i+1:]
	}
	return n, nil
}

// clip shortens a line that does not fit in the ring.
func (r *Ring) clip(b []byte) []byte {
	if len(b) <= r.maxLine {
		return b
	}
	return trimIncompleteRune(b[:r.maxLine])
}

// appendPartial adds b to the unterminated line, dropping what exceeds maxLine.
func (r *Ring) appendPartial(b []byte) {
	room := r.maxLine - len(r.partial)
	if len(b) > room {
		b = b[:room]
		r.truncated = true
	}
	r.partial = append(r.partial, b...)
}

// trimIncompleteRune drops a UTF-8 sequence cut short at the end of b.
func trimIncompleteRune(b []byte) []byte {
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

// add stores line, evicting the oldest lines to make room, and fans it out.
// r.mu must be held.
func (r *Ring) add(line string) {
	cost := len(line) + 1
	for r.n > 0 && r.size+cost > r.maxBytes {
		r.evict()
	}
	if r.n == len(r.slots) {
		r.resize(max(minSlots, 2*len(r.slots)))
	}
	r.slots[(r.head+r.n)%len(r.slots)] = line
	r.n++
	r.size += cost

	// Only add sends on a subscriber's channel, under r.mu, so free room
	// seen here cannot shrink before the sends below.
	for s := range r.subs {
		free := cap(s.ch) - len(s.ch)
		switch {
		case s.dropped == 0 && free >= 1:
			s.ch <- line
		case s.dropped > 0 && free >= 2:
			s.ch <- DroppedNotice(s.dropped)
			s.ch <- line
			s.dropped = 0
		default:
			s.dropped++
		}
	}
}

// evict removes the oldest line. r.mu must be held.
func (r *Ring) evict() {
	r.size -= len(r.slots[r.head]) + 1
	r.slots[r.head] = ""
	r.head = (r.head + 1) % len(r.slots)
	r.n--
	if len(r.slots) > minSlots && r.n < len(r.slots)/4 {
		r.resize(len(r.slots) / 2)
	}
}

// resize moves the lines into a circular buffer of the given capacity.
// r.mu must be held.
func (r *Ring) resize(capacity int) {
	slots := make([]string, capacity)
	r.copyLines(slots)
	r.slots = slots
	r.head = 0
}

// copyLines copies the retained lines, oldest first, into dst, which must
// have room for r.n lines. r.mu must be held.
func (r *Ring) copyLines(dst []string) {
	if r.n == 0 {
		return
	}
	end := r.head + r.n
	if end <= len(r.slots) {
		copy(dst, r.slots[r.head:end])
		return
	}
	k := copy(dst, r.slots[r.head:])
	copy(dst[k:], r.slots[:end-len(r.slots)])
}

// Lines returns a snapshot of the retained lines, oldest first, without
// their newlines.
func (r *Ring) Lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.snapshot()
}

func (r *Ring) snapshot() []string {
	lines := make([]string, r.n)
	r.copyLines(lines)
	return lines
}

// Subscribe returns a channel that receives every line completed from now
// on, and a cancel function. The channel holds up to buf lines (DefaultBuffer
// if buf < 1, and at least 2). A line that finds no room is dropped for this
// subscriber; the next line delivered is then preceded by a DroppedNotice
// counting the lines missed, and both are queued only when both fit.
//
// cancel unregisters the subscriber and closes the channel; it is safe to
// call more than once and from any goroutine. Lines still buffered in the
// channel can be read after cancel.
func (r *Ring) Subscribe(buf int) (lines <-chan string, cancel func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.subscribe(buf)
}

// SnapshotAndSubscribe is Lines and Subscribe done atomically: every line is
// either in past or delivered on lines, never both and never neither (unless
// dropped, which is announced).
func (r *Ring) SnapshotAndSubscribe(buf int) (past []string, lines <-chan string, cancel func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	past = r.snapshot()
	lines, cancel = r.subscribe(buf)
	return past, lines, cancel
}

// subscribe registers a subscriber. r.mu must be held.
func (r *Ring) subscribe(buf int) (<-chan string, func()) {
	if buf < 1 {
		buf = DefaultBuffer
	}
	buf = max(buf, minBuffer)
	s := &subscriber{ch: make(chan string, buf)}
	r.subs[s] = struct{}{}
	cancel := func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if _, ok := r.subs[s]; ok {
			delete(r.subs, s)
			close(s.ch)
		}
	}
	return s.ch, cancel
}

// Subscribers returns the number of active subscriptions.
func (r *Ring) Subscribers() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.subs)
}
