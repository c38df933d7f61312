package api

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"

	"github.com/logpipe/logpipe/livetail/internal/auth"
	"github.com/logpipe/logpipe/livetail/internal/hub"
	"github.com/logpipe/logpipe/livetail/internal/session"
)

// Bounds of GET /api/v1/context.
const (
	// DefaultContextLines is before's and after's default.
	DefaultContextLines = 50
	// MaxContextLines is the most lines asked for on either side.
	MaxContextLines = 200
	// ContextWindow is how many records on either side of the line are
	// read from Kafka, at most, to find its neighbours there.
	ContextWindow = 20_000
)

// ContextIndex reads the lines around a line from the search index
// (*archive.Archive). line is nil when the index does not hold the line.
type ContextIndex interface {
	Context(ctx context.Context, job string, p int32, offset int64, before, after int) (line *hub.Entry, below, above []*hub.Entry, err error)
}

// errStopRead ends a Kafka read that has found what it needs.
var errStopRead = errors.New("api: enough context read")

// contextQuery is a context request's parameters.
type contextQuery struct {
	job           string
	partition     int32
	offset        int64
	before, after int
}

// ContextHandler serves GET /api/v1/context (DESIGN.md, "livetail HTTP
// API"): the line of job at partition:offset and the lines before and
// after it in its source file, by log.offset (or, for a line without a
// source position, the job's lines of the partition by Kafka offset). It
// reads them from index when there is one (nil: none) and holds the line,
// else from a window of ContextWindow records on either side of it in
// Kafka. The request is authenticated as a tail is and the job must be
// allowed; errors are JSON: {"error":…,"param":…}.
func ContextHandler(hist session.History, index ContextIndex, authn auth.Authenticator) http.Handler {
	if authn == nil {
		authn = auth.None{}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := authn.Authenticate(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="livetail"`)
			writeJSON(w, http.StatusUnauthorized, apiError{Error: err.Error(), Param: "token"})
			return
		}
		q, perr := parseContextQuery(r.URL.Query(), hist.Partitions())
		if perr != nil {
			writeJSON(w, http.StatusBadRequest, apiError{Error: perr.Error(), Param: perr.Param})
			return
		}
		if !id.Allows(q.job) {
			writeJSON(w, http.StatusForbidden, apiError{Error: fmt.Sprintf("the token does not allow job %q", q.job), Param: "job"})
			return
		}
		from := "index"
		var line *hub.Entry
		var below, above []*hub.Entry
		var indexErr error
		if index != nil {
			line, below, above, indexErr = index.Context(r.Context(), q.job, q.partition, q.offset, q.before, q.after)
		}
		if line == nil || indexErr != nil { // not indexed (yet), or the index fails: Kafka
			from = "kafka"
			line, below, above, err = kafkaContext(r.Context(), hist, q)
			if line == nil && err == nil {
				err = indexErr
			}
		}
		switch {
		case err != nil:
			writeJSON(w, http.StatusServiceUnavailable, apiError{Error: "reading the line's context: " + err.Error()})
			return
		case line == nil:
			writeJSON(w, http.StatusNotFound, apiError{Error: fmt.Sprintf("no line of job %q at partition %d offset %d", q.job, q.partition, q.offset), Param: "offset"})
			return
		}
		writeContext(w, line, below, above, from)
	})
}

// parseContextQuery reads and checks the parameters; partitions is the
// topic's number of partitions.
func parseContextQuery(v url.Values, partitions int) (contextQuery, *session.ParamError) {
	q := contextQuery{job: v.Get("job"), before: DefaultContextLines, after: DefaultContextLines}
	bad := func(param, format string, args ...any) *session.ParamError {
		return &session.ParamError{Param: param, Reason: fmt.Sprintf(format, args...)}
	}
	if q.job == "" {
		return q, bad("job", "missing (the line's job)")
	}
	if err := checkJob(q.job); err != nil {
		return q, err
	}
	p, err := strconv.ParseInt(v.Get("partition"), 10, 32)
	if err != nil || p < 0 || int(p) >= partitions {
		return q, bad("partition", "%q: want a partition of the topic, 0 to %d", session.Clip(v.Get("partition")), partitions-1)
	}
	q.partition = int32(p)
	if q.offset, err = strconv.ParseInt(v.Get("offset"), 10, 64); err != nil || q.offset < 0 {
		return q, bad("offset", "%q: want the line's offset, 0 or more", session.Clip(v.Get("offset")))
	}
	for _, side := range []struct {
		name string
		n    *int
	}{{"before", &q.before}, {"after", &q.after}} {
		if !v.Has(side.name) {
			continue
		}
		n, err := strconv.Atoi(v.Get(side.name))
		if err != nil || n < 0 || n > MaxContextLines {
			return q, bad(side.name, "%q: want a number of lines, 0 to %d", session.Clip(v.Get(side.name)), MaxContextLines)
		}
		*side.n = n
	}
	return q, nil
}

// kafkaContext finds the line and its neighbours in a window of Kafka
// around it. line is nil when Kafka does not hold a line of the job there.
func kafkaContext(ctx context.Context, hist session.History, q contextQuery) (line *hub.Entry, below, above []*hub.Entry, err error) {
	oldest, newest, err := hist.Bounds(ctx, q.partition)
	if err != nil || q.offset < oldest || q.offset >= newest {
		return nil, nil, nil, err
	}
	from, to := max(oldest, q.offset-ContextWindow), min(newest, q.offset+ContextWindow+1)
	var seen []*hub.Entry // the job's entries read, before the line and then of its source
	after := 0            // entries seen after the line that are neighbours
	err = hist.Read(ctx, q.partition, from, to, []string{q.job}, func(e *hub.Entry) error {
		switch {
		case e == nil:
			return nil
		case e.Offset == q.offset:
			line = e
			seen = slices.DeleteFunc(seen, func(o *hub.Entry) bool { return !sameSource(e, o) })
			return nil
		case line == nil:
			seen = append(seen, e)
		case sameSource(line, e):
			seen = append(seen, e)
			if line.Src == 0 || e.Pos > line.Pos {
				after++
			}
			if after >= q.after+1 { // one more: a resend may repeat a position
				return errStopRead
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStopRead) {
		return nil, nil, nil, err
	}
	if line == nil {
		return nil, nil, nil, nil
	}
	below, above = neighbours(line, seen, q.before, q.after)
	return line, below, above, nil
}

// sameSource reports whether e is a neighbour of line: of its source file
// generation, or any line of the job when line has no source position.
func sameSource(line, e *hub.Entry) bool { return line.Src == 0 || e.Src == line.Src }

// neighbours picks, among the entries of line's source, the before with
// the next lower and the after with the next higher position: log.offset
// (a line the agent sent twice counts once), or the Kafka offset for a
// line without a source position.
func neighbours(line *hub.Entry, same []*hub.Entry, before, after int) (below, above []*hub.Entry) {
	pos := func(e *hub.Entry) int64 {
		if line.Src == 0 {
			return e.Offset
		}
		return e.Pos
	}
	slices.SortStableFunc(same, func(a, b *hub.Entry) int { return cmp.Compare(pos(a), pos(b)) })
	same = slices.CompactFunc(same, func(a, b *hub.Entry) bool { return pos(a) == pos(b) })
	at, _ := slices.BinarySearchFunc(same, pos(line), func(e *hub.Entry, p int64) int { return cmp.Compare(pos(e), p) })
	below = same[max(0, at-before):at]
	rest := same[at:]
	if len(rest) > 0 && pos(rest[0]) == pos(line) {
		rest = rest[1:]
	}
	above = rest[:min(after, len(rest))]
	return below, above
}

// writeContext writes the 200 answer; the entries are their own bytes.
func writeContext(w http.ResponseWriter, line *hub.Entry, below, above []*hub.Entry, from string) {
	list := func(es []*hub.Entry) []json.RawMessage {
		out := make([]json.RawMessage, len(es))
		for i, e := range es {
			out[i] = e.JSON
		}
		return out
	}
	writeJSON(w, http.StatusOK, struct {
		Line   json.RawMessage   `json:"line"`
		Before []json.RawMessage `json:"before"`
		After  []json.RawMessage `json:"after"`
		From   string            `json:"from"`
	}{line.JSON, list(below), list(above), from})
}
