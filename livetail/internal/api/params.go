package api

import (
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/logpipe/logpipe/livetail/internal/session"
)

// Limits on query parameters.
const (
	maxJobLen  = 256
	maxGrepLen = 1024
)

func badParam(param, format string, args ...any) error {
	return &session.ParamError{Param: param, Reason: fmt.Sprintf(format, args...)}
}

// ParseParams parses the query of a tail request (DESIGN.md, "livetail
// HTTP API"): a bad parameter is a *session.ParamError that names it. now
// resolves a since given as a duration; maxTail bounds tail.
func ParseParams(q url.Values, now time.Time, maxTail int) (session.Params, error) {
	var p session.Params
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
			return p, badParam("tail", "%q is not a number of lines", session.Clip(v))
		}
		if n < 0 || n > maxTail {
			return p, badParam("tail", "%d is out of range (0 to %d)", n, maxTail)
		}
		p.Mode, p.Tail = session.ModeTail, n
	case q.Has("since"):
		v := strings.TrimSpace(q.Get("since"))
		t, err := parseSince(v, now)
		if err != nil {
			return p, badParam("since", "%q: %s", session.Clip(v), err)
		}
		p.Mode, p.Since = session.ModeSince, t
	case q.Has("cursor"):
		c, err := session.ParseCursor(q.Get("cursor"))
		if err != nil {
			return p, badParam("cursor", "%s", err)
		}
		p.Mode, p.Cursor = session.ModeCursor, c
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
