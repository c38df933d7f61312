// Package collect is the agent's collect config: the JSON array stored at
// /logpipe/agents/<name> that says which files to tail and how to label them
// (DESIGN.md, "etcd keys"). Parse validates the whole config and names the bad
// entry and field, so that a bad `etcdctl put` can be reported and the last
// good config kept.
package collect

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strings"
)

// Where a file the agent has never seen starts being read.
const (
	FromEnd       = "end"
	FromBeginning = "beginning"
)

// Multiline match modes, as in Filebeat: a line that matches (or, with
// Negate, does not match) Pattern belongs to the event after or before it.
const (
	MatchAfter  = "after"
	MatchBefore = "before"
)

// DefaultMaxLines bounds a multiline event when max_lines is not given.
const DefaultMaxLines = 500

// ErrInvalid wraps every validation error.
var ErrInvalid = errors.New("invalid collect config")

// Entry is one element of the collect config.
type Entry struct {
	Path      string            `json:"path"`                // file path or glob; required
	Topic     string            `json:"topic,omitempty"`     // default: the agent's --kafka-topic
	Job       string            `json:"job,omitempty"`       // default: the file's base name without extension
	Labels    map[string]string `json:"labels,omitempty"`    // copied into every record
	From      string            `json:"from,omitempty"`      // FromEnd (default) or FromBeginning, for the files present when the entry is first applied
	Multiline *Multiline        `json:"multiline,omitempty"` // optional grouping of physical lines into events
}

// Multiline groups physical lines into one event.
type Multiline struct {
	Pattern  string `json:"pattern"`             // RE2
	Negate   bool   `json:"negate,omitempty"`    // group the lines that do NOT match
	Match    string `json:"match,omitempty"`     // MatchAfter (default) or MatchBefore
	MaxLines int    `json:"max_lines,omitempty"` // default DefaultMaxLines
}

// Config is a whole collect config.
type Config []Entry

// Parse decodes and validates a collect config. Unknown fields are errors, so
// that a typo is reported instead of silently ignored. Defaults are not
// applied: see Entry.Resolve.
func Parse(data []byte) (Config, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, describeJSONError(err))
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the JSON array", ErrInvalid)
	}
	if c == nil {
		return nil, fmt.Errorf("%w: want a JSON array of entries, got null", ErrInvalid)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Validate checks every entry; the error names the first bad entry (counting
// from 1) and field.
func (c Config) Validate() error {
	seen := make(map[string]int, len(c))
	for i, e := range c {
		if err := e.Validate(); err != nil {
			return fmt.Errorf("%w: entry %d: %w", ErrInvalid, i+1, err)
		}
		if j, dup := seen[e.Path]; dup {
			return fmt.Errorf("%w: entry %d: path %q is already in entry %d", ErrInvalid, i+1, e.Path, j)
		}
		seen[e.Path] = i + 1
	}
	return nil
}

// Validate checks one entry.
func (e Entry) Validate() error {
	if strings.TrimSpace(e.Path) == "" {
		return errors.New("path is empty")
	}
	if _, err := filepath.Match(e.Path, ""); err != nil {
		return fmt.Errorf("path %q: bad glob: %w", e.Path, err)
	}
	if e.Topic != "" {
		if err := checkTopic(e.Topic); err != nil {
			return fmt.Errorf("topic %q: %w", e.Topic, err)
		}
	}
	if e.Job != "" && strings.ContainsFunc(e.Job, isControl) {
		return fmt.Errorf("job %q: contains a control character", e.Job)
	}
	for k := range e.Labels {
		if k == "" {
			return errors.New("labels: empty label name")
		}
	}
	switch e.From {
	case "", FromEnd, FromBeginning:
	default:
		return fmt.Errorf("from %q: want %q or %q", e.From, FromEnd, FromBeginning)
	}
	if m := e.Multiline; m != nil {
		if m.Pattern == "" {
			return errors.New("multiline.pattern is empty")
		}
		if _, err := regexp.Compile(m.Pattern); err != nil {
			return fmt.Errorf("multiline.pattern %q: %w", m.Pattern, err)
		}
		switch m.Match {
		case "", MatchAfter, MatchBefore:
		default:
			return fmt.Errorf("multiline.match %q: want %q or %q", m.Match, MatchAfter, MatchBefore)
		}
		if m.MaxLines < 0 {
			return fmt.Errorf("multiline.max_lines %d: must not be negative", m.MaxLines)
		}
	}
	return nil
}

// Resolve returns e with its defaults filled in: topic, from and the
// multiline defaults. The job depends on the file for globs: see JobFor.
func (e Entry) Resolve(defaultTopic string) Entry {
	if e.Topic == "" {
		e.Topic = defaultTopic
	}
	if e.From == "" {
		e.From = FromEnd
	}
	if e.Multiline != nil {
		m := *e.Multiline
		if m.Match == "" {
			m.Match = MatchAfter
		}
		if m.MaxLines == 0 {
			m.MaxLines = DefaultMaxLines
		}
		e.Multiline = &m
	}
	return e
}

// JobFor is the job of a file tailed under e: e.Job when set, else the file's
// base name without its extension ("/var/log/web-1.log" → "web-1").
func (e Entry) JobFor(file string) string {
	if e.Job != "" {
		return e.Job
	}
	base := filepath.Base(file)
	if ext := filepath.Ext(base); ext != "" && ext != base {
		base = strings.TrimSuffix(base, ext)
	}
	return base
}

// IsGlob reports whether e.Path holds glob metacharacters.
func (e Entry) IsGlob() bool { return strings.ContainsAny(e.Path, "*?[") }

// Equal reports whether two entries are the same configuration.
func (e Entry) Equal(o Entry) bool {
	a, _ := json.Marshal(e) // map keys are sorted by encoding/json
	b, _ := json.Marshal(o)
	return bytes.Equal(a, b)
}

// checkTopic applies Kafka's rules for topic names.
func checkTopic(t string) error {
	if len(t) > 249 {
		return errors.New("longer than 249 characters")
	}
	if t == "." || t == ".." {
		return errors.New(`"." and ".." are not topic names`)
	}
	for _, r := range t {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("character %q not allowed (only letters, digits, '.', '_', '-')", r)
		}
	}
	return nil
}

func isControl(r rune) bool { return r < ' ' || r == 0x7f }

func describeJSONError(err error) string {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		if typeErr.Field == "" {
			return fmt.Sprintf("want a JSON array of entries, got %s", typeErr.Value)
		}
		return fmt.Sprintf("field %q: want %s, got %s", typeErr.Field, typeErr.Type, typeErr.Value)
	case errors.As(err, &syntaxErr):
		return fmt.Sprintf("bad JSON at byte %d: %v", syntaxErr.Offset, err)
	case errors.Is(err, io.EOF):
		return "empty value: want a JSON array of entries"
	}
	return err.Error()
}
