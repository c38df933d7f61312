// Package multiline groups physical lines into events, as the collect
// config's "multiline" block asks (Java stack traces are the classic case).
//
// The semantics are Filebeat's: a line "matches" when Pattern matches it,
// inverted by Negate. With match "after", matching lines are appended to the
// line before them; with "before", matching lines are prepended to the line
// after them. An event never has more than MaxLines lines: the line that
// would exceed it starts the next event, so nothing is dropped. Its text is
// cut at MaxBytes and flagged truncated.
package multiline

import (
	"regexp"

	"github.com/logpipe/logpipe/agent/internal/tail"
	"github.com/logpipe/logpipe/common/collect"
)

// Config is a compiled multiline block.
type Config struct {
	Pattern  *regexp.Regexp
	Negate   bool
	Before   bool // match "before"; otherwise "after"
	MaxLines int
	MaxBytes int
}

// FromEntry compiles a resolved collect.Multiline.
func FromEntry(m *collect.Multiline, maxBytes int) (Config, error) {
	re, err := regexp.Compile(m.Pattern)
	if err != nil {
		return Config{}, err
	}
	maxLines := m.MaxLines
	if maxLines <= 0 {
		maxLines = collect.DefaultMaxLines
	}
	return Config{Pattern: re, Negate: m.Negate, Before: m.Match == collect.MatchBefore, MaxLines: maxLines, MaxBytes: maxBytes}, nil
}

// Event is one or more lines grouped together.
type Event struct {
	Offset    int64  // start of the first line
	End       int64  // end of the last line
	Text      []byte // the lines joined by '\n'; valid until the callback returns
	Lines     int
	Truncated bool
}

// Grouper assembles events from lines fed in file order. It is not safe for
// concurrent use.
type Grouper struct {
	cfg     Config
	pending bool
	full    bool // buf reached MaxBytes
	ev      Event
	buf     []byte
}

// New returns a Grouper for cfg.
func New(cfg Config) *Grouper {
	if cfg.MaxLines < 1 {
		cfg.MaxLines = 1
	}
	if cfg.MaxBytes < 1 {
		cfg.MaxBytes = 1
	}
	return &Grouper{cfg: cfg}
}

// Pending returns the start offset of an event still being assembled.
func (g *Grouper) Pending() (int64, bool) { return g.ev.Offset, g.pending }

// Add feeds one line and calls emit for each event it completes.
func (g *Grouper) Add(l tail.Line, emit func(Event) error) error {
	match := g.cfg.Pattern.Match(l.Text) != g.cfg.Negate
	if g.cfg.Before {
		g.append(l)
		if !match || g.ev.Lines >= g.cfg.MaxLines {
			return g.Flush(emit)
		}
		return nil
	}
	if !match || !g.pending || g.ev.Lines >= g.cfg.MaxLines {
		if err := g.Flush(emit); err != nil {
			return err
		}
	}
	g.append(l)
	return nil
}

// Flush emits the event being assembled, if any.
func (g *Grouper) Flush(emit func(Event) error) error {
	if !g.pending {
		return nil
	}
	g.ev.Text = g.buf
	ev := g.ev
	g.pending = false
	g.ev = Event{}
	err := emit(ev)
	g.buf = g.buf[:0]
	if cap(g.buf) > 1<<20 {
		g.buf = nil
	}
	return err
}

func (g *Grouper) append(l tail.Line) {
	if !g.pending {
		g.pending, g.full = true, false
		g.ev = Event{Offset: l.Offset}
		g.buf = g.buf[:0]
	} else {
		g.addText(newline)
	}
	g.ev.End = l.End
	g.ev.Lines++
	if l.Truncated {
		g.ev.Truncated = true
	}
	g.addText(l.Text)
}

var newline = []byte{'\n'}

// addText appends b, cutting at MaxBytes.
func (g *Grouper) addText(b []byte) {
	if g.full {
		return
	}
	if room := g.cfg.MaxBytes - len(g.buf); len(b) > room {
		b = b[:room]
		g.ev.Truncated, g.full = true, true
	}
	g.buf = append(g.buf, b...)
}
