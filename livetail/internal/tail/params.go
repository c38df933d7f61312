package tail

import (
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits on query parameters.
const (
	maxJobLen  = 256
	maxGrepLen = 1024
)

// Mode says where a session's history starts.
type Mode int

// Modes, from the query parameters tail, since and cursor.
const (
	ModeLive   Mode = iota // no history: live lines only
	ModeTail               // the job's last Tail lines
	ModeSince              // lines written at Since or later
	ModeCursor             // lines after the positions of Cursor
)

// Params are the query parameters of /api/v1/tail.
type Params struct {
	Job    string
	Mode   Mode
	Tail   int
	Since  time.Time
	Cursor []Position
	Grep   *regexp.Regexp
}

// ParamError is a bad query parameter: the session is closed with 4400 and
// the error's text, which names the parameter.
type ParamError struct {
	Param  string
	Reason string
}

func (e *ParamError) Error() string { return e.Param + ": " + e.Reason }

func badParam(param, format string, args ...any) error {
	return &ParamError{Param: param, Reason: fmt.Sprintf(format, args...)}
}

// ParseParams parses the query of a tail request. now resolves a since
// given as a duration; maxTail bounds tail.
func ParseParams(q url.Values, now time.Time, maxTail int) (Params, error) {
	var p Params
	p.Job = q.Get("job")
	switch {
	case p.Job == "":
		return p, badParam("job", "missing (the job to tail, e.g. job=web-1)")
	case len(p.Job) > maxJobLen:
		return p, badParam("job", "longer than %d bytes", maxJobLen)
	case !utf8.ValidString(p.Job):
		return p, badParam("job", "not valid UTF-8")
	}

	var given []string
	for _, name := range []string{"tail", "since", "cursor"} {
		if q.Has(name) {
			given = append(given, name)
		}
	}
	if len(given) > 1 {
		return p, badParam(given[1], "cannot be combined with %s (give one of tail, since, cursor)", given[0])
	}

	switch {
	case q.Has("tail"):
		v := q.Get("tail")
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return p, badParam("tail", "%q is not a number of lines", clip(v))
		}
		if n < 0 || n > maxTail {
			return p, badParam("tail", "%d is out of range (0 to %d)", n, maxTail)
		}
		p.Mode, p.Tail = ModeTail, n
	case q.Has("since"):
		v := strings.TrimSpace(q.Get("since"))
		t, err := parseSince(v, now)
		if err != nil {
			return p, badParam("since", "%q: %s", clip(v), err)
		}
		p.Mode, p.Since = ModeSince, t
	case q.Has("cursor"):
		c, err := ParseCursor(q.Get("cursor"))
		if err != nil {
			return p, badParam("cursor", "%s", err)
		}
		p.Mode, p.Cursor = ModeCursor, c
	}

	if q.Has("grep") {
		v := q.Get("grep")
		if len(v) > maxGrepLen {
			return p, badParam("grep", "longer than %d bytes", maxGrepLen)
		}
		if !utf8.ValidString(v) {
			return p, badParam("grep", "not valid UTF-8")
		}
		if v != "" {
			re, err := regexp.Compile(v)
			if err != nil {
				return p, badParam("grep", "not a valid RE2 regular expression: %s", strings.TrimPrefix(err.Error(), "error parsing regexp: "))
			}
			p.Grep = re
		}
	}
	return p, nil
}

// parseSince reads an RFC 3339 time or a positive Go duration before now.
func parseSince(v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, fmt.Errorf("empty (want an RFC 3339 time or a duration such as 5m)")
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return time.Time{}, fmt.Errorf("neither an RFC 3339 time nor a duration such as 5m")
	}
	if d < 0 {
		return time.Time{}, fmt.Errorf("negative duration (want how long ago, e.g. 5m)")
	}
	return now.Add(-d), nil
}

// clip shortens a value quoted in an error, which ends up in a close reason.
func clip(s string) string {
	const n = 24
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}
