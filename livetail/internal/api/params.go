package api

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
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
	// MaxJobs is the most jobs one stream (or history page) follows.
	MaxJobs = 10
)

func badParam(param, format string, args ...any) error {
	return &session.ParamError{Param: param, Reason: fmt.Sprintf(format, args...)}
}

// ParseParams parses the query of a tail request (DESIGN.md, "livetail
// HTTP API"): a bad parameter is a *session.ParamError that names it. now
// resolves a since given as a duration; maxTail bounds tail.
func ParseParams(q url.Values, now time.Time, maxTail int) (session.Params, error) {
	var p session.Params
	jobs, err := parseJobs(q)
	if err != nil {
		return p, err
	}
	p.Jobs = jobs

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

	p.Grep, err = parseGrep(q)
	return p, err
}

// parseJobs reads the jobs of a request: job given 1 to MaxJobs times,
// each trimmed, distinct, in the order given.
func parseJobs(q url.Values) ([]string, error) {
	given := q["job"]
	switch {
	case len(given) == 0:
		return nil, badParam("job", "missing (the job to tail, e.g. job=web-1)")
	case len(given) > MaxJobs:
		return nil, badParam("job", "given %d times (at most %d jobs)", len(given), MaxJobs)
	}
	jobs := make([]string, 0, len(given))
	for _, v := range given {
		job := strings.TrimSpace(v)
		switch {
		case job == "":
			return nil, badParam("job", "empty (the job to tail, e.g. job=web-1)")
		case slices.Contains(jobs, job):
			return nil, badParam("job", "%q is given twice", session.Clip(job))
		}
		if err := checkJob(job); err != nil {
			return nil, err
		}
		jobs = append(jobs, job)
	}
	return jobs, nil
}

// checkJob checks a job name given in a request, which is not empty.
func checkJob(job string) *session.ParamError {
	switch {
	case len(job) > maxJobLen:
		return &session.ParamError{Param: "job", Reason: fmt.Sprintf("longer than %d bytes", maxJobLen)}
	case !utf8.ValidString(job):
		return &session.ParamError{Param: "job", Reason: "not valid UTF-8"}
	}
	return nil
}

// parseGrep reads grep, an RE2 regular expression; nil when absent or empty.
func parseGrep(q url.Values) (*regexp.Regexp, error) {
	v := q.Get("grep")
	switch {
	case v == "":
		return nil, nil
	case len(v) > maxGrepLen:
		return nil, badParam("grep", "longer than %d bytes", maxGrepLen)
	case !utf8.ValidString(v):
		return nil, badParam("grep", "not valid UTF-8")
	}
	re, err := regexp.Compile(v)
	if err != nil {
		return nil, badParam("grep", "not a valid RE2 regular expression: %s", strings.TrimPrefix(err.Error(), "error parsing regexp: "))
	}
	return re, nil
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
