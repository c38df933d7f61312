package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/logpipe/logpipe/livetail/internal/auth"
	"github.com/logpipe/logpipe/livetail/internal/session"
	"github.com/logpipe/logpipe/livetail/internal/wire"
)

// Bounds of a history page's limit.
const (
	DefaultPageLimit = 200
	MaxPageLimit     = 1000
)

// historyPage is the answer of GET /api/v1/history.
type historyPage struct {
	Entries []json.RawMessage `json:"entries"`
	Before  string            `json:"before"`
	More    bool              `json:"more"`
	Stop    string            `json:"stop"`
}

// apiError is the body of a refused API request.
type apiError struct {
	Error string `json:"error"`
	Param string `json:"param,omitempty"`
}

// History serves GET /api/v1/history, "load earlier" (DESIGN.md,
// "livetail HTTP API"): the lines of the jobs below the stream's first
// position, from Kafka and then the archive, with the position the next
// older page ends at. It is authenticated and checked as a tail is.
func (h *Handler) History() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log := h.log.WithFields(logrus.Fields{"remote": r.RemoteAddr, "request": auth.RedactURL(r)})
		w = &countedWriter{ResponseWriter: w, pages: h.m.Pages}
		id, err := h.opts.Auth.Authenticate(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="livetail"`)
			writeJSON(w, http.StatusUnauthorized, apiError{Error: err.Error()})
			return
		}
		p, err := parseHistory(r.URL.Query())
		var pe *session.ParamError
		if errors.As(err, &pe) {
			writeJSON(w, http.StatusBadRequest, apiError{Error: err.Error(), Param: pe.Param})
			return
		}
		if job, ok := allowed(id, p.Jobs); !ok {
			writeJSON(w, http.StatusForbidden, apiError{Error: fmt.Sprintf("job: user %s may not tail job %s", id.User, job), Param: "job"})
			return
		}
		page, err := h.sessions.Earlier(r.Context(), p)
		switch {
		case errors.As(err, &pe):
			writeJSON(w, http.StatusBadRequest, apiError{Error: err.Error(), Param: pe.Param})
			return
		case err != nil:
			log.WithError(err).Info("history page failed")
			writeJSON(w, http.StatusServiceUnavailable, apiError{Error: session.UpstreamError{Err: err}.Error()})
			return
		}
		writeJSON(w, http.StatusOK, pageJSON(page))
	})
}

// parseHistory parses the query of a history request.
func parseHistory(q url.Values) (session.EarlierParams, error) {
	var p session.EarlierParams
	var err error
	if p.Jobs, err = parseJobs(q); err != nil {
		return p, err
	}
	v := q.Get("before")
	if v == "" {
		return p, badParam("before", "missing (the stream's first position, partition:offset[,partition:offset...])")
	}
	before, err := session.ParseCursor(v)
	if err != nil {
		return p, badParam("before", "%s", err)
	}
	for _, b := range before {
		if b.Partition == session.HomePartition {
			return p, badParam("before", "%q is not a list of partition:offset pairs", session.Clip(v))
		}
	}
	p.Before = before
	p.Limit = DefaultPageLimit
	if q.Has("limit") {
		v := q.Get("limit")
		n, err := strconv.Atoi(strings.TrimSpace(v))
		switch {
		case err != nil:
			return p, badParam("limit", "%q is not a number of lines", session.Clip(v))
		case n < 1 || n > MaxPageLimit:
			return p, badParam("limit", "%d is out of range (1 to %d)", n, MaxPageLimit)
		}
		p.Limit = n
	}
	p.Grep, err = parseGrep(q)
	return p, err
}

func pageJSON(page session.Page) historyPage {
	out := historyPage{Entries: make([]json.RawMessage, len(page.Entries)), More: page.More, Stop: page.Stop}
	for i, e := range page.Entries {
		out.Entries[i] = e.JSON
	}
	pos := make(map[int32]int64, len(page.Before))
	for _, b := range page.Before {
		pos[b.Partition] = b.Offset
	}
	out.Before = string(wire.AppendCursor(nil, pos))
	return out
}

// countedWriter counts the answer's status in the pages metric.
type countedWriter struct {
	http.ResponseWriter
	pages *prometheus.CounterVec
}

func (c *countedWriter) WriteHeader(code int) {
	c.pages.WithLabelValues(strconv.Itoa(code)).Inc()
	c.ResponseWriter.WriteHeader(code)
}

// writeJSON writes v as the JSON answer with status code.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
