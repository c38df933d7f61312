package esfake

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Identity reported by GET /. The version is the Elasticsearch release
// whose API esfake follows; the build fields say plainly what this is.
const (
	versionNumber = "8.19.7"
	clusterName   = "esfake"
	nodeName      = "esfake"

	// maxBodyBytes is Elasticsearch's default http.max_content_length.
	maxBodyBytes = 100 << 20
)

// Option configures a Server.
type Option func(*Server)

// WithDiscard makes _bulk acknowledge documents without keeping them:
// the body is parsed in full and every item whose source is a JSON object
// answers 201 created, but nothing is stored and no mapping is checked.
// It is meant for benchmarks of clients.
func WithDiscard() Option { return func(s *Server) { s.discard = true } }

// Doc is a stored document, as returned by Server.Docs.
type Doc struct {
	ID     string
	Source json.RawMessage
	Index  string // the concrete index, such as a data stream's backing index
}

// Server is an in-memory stand-in for the Elasticsearch HTTP API. It is an
// http.Handler: serve it with httptest.NewServer or an http.Server. It is
// safe for concurrent use and starts no goroutines.
type Server struct {
	discard     bool
	clusterUUID string
	discardSeq  atomic.Int64

	faultMu    sync.Mutex // guards the fault injection below
	failLeft   int
	failStatus int
	latency    time.Duration
	reject     RejectFunc

	mu         sync.RWMutex // guards the cluster state below
	indices    map[string]*index
	streams    map[string]*index // data streams, by name: their one backing index
	templates  map[string]*indexTemplate
	components map[string]map[string]any // component templates, as given
}

// RejectFunc decides whether a bulk item fails; see Server.RejectItems.
type RejectFunc func(index, id string, doc []byte) (status int, errType, reason string, reject bool)

// New returns an empty server.
func New(opts ...Option) *Server {
	s := &Server{clusterUUID: newUUID()}
	for _, o := range opts {
		o(s)
	}
	s.Reset()
	return s
}

// StartupLine is the line a program serving esfake prints when it is ready.
func StartupLine(addr string) string {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	return "esfake (development stand-in for Elasticsearch, not Elasticsearch) listening on " + addr
}

// FailBulk makes the next n _bulk requests fail as a whole with the given
// HTTP status (429 or 503; other 4xx and 5xx statuses get a generic error)
// and an Elasticsearch-shaped error body. n <= 0 cancels pending failures.
// Note that the Go client retries 502, 503 and 504 by default. It panics
// if status is not an error status.
func (s *Server) FailBulk(n int, status int) {
	if n > 0 && (status < 400 || status > 599) {
		panic(fmt.Sprintf("esfake: FailBulk status %d is not an HTTP error status", status))
	}
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	s.failLeft, s.failStatus = max(n, 0), status
}

// SetLatency delays every request by d before it is handled. A request
// whose context ends first is dropped without an answer. Zero turns it off.
func (s *Server) SetLatency(d time.Duration) {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	s.latency = d
}

// RejectItems installs a hook called for every item of a bulk request,
// with the index as the request names it, the id (made up if none) and the
// source. When it returns reject true, that item alone fails with status
// (400 unless 4xx or 5xx), errType (default es_rejected_execution_exception
// for 429, else illegal_argument_exception) and reason, rendered as
// Elasticsearch renders that error: how tests get the engine's answer for a
// state esfake does not model, such as an index block or a closed index.
// The hook runs without the server's lock held. nil removes it.
func (s *Server) RejectItems(fn RejectFunc) {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	s.reject = fn
}

// Docs returns the stored documents of an index, data stream or index
// pattern, sorted by id (then index). It returns nil when nothing matches.
func (s *Server) Docs(index string) []Doc {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ixs, _ := s.resolve(index, true)
	var out []Doc
	for _, ix := range ixs {
		for _, d := range ix.docs {
			out = append(out, Doc{ID: d.id, Source: bytes.Clone(d.source), Index: ix.name})
		}
	}
	slices.SortFunc(out, func(a, b Doc) int { return cmp.Or(strings.Compare(a.ID, b.ID), strings.Compare(a.Index, b.Index)) })
	return out
}

// Count returns how many documents an index, data stream or index pattern
// holds; 0 when nothing matches.
func (s *Server) Count(index string) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ixs, _ := s.resolve(index, true)
	n := 0
	for _, ix := range ixs {
		n += len(ix.docs)
	}
	return n
}

// Reset brings the server back to its state after New: no documents,
// indices, data streams or user templates, and no injected faults.
func (s *Server) Reset() {
	s.faultMu.Lock()
	s.failLeft, s.failStatus, s.latency, s.reject = 0, 0, 0, nil
	s.faultMu.Unlock()

	s.mu.Lock()
	defer s.mu.Unlock()
	s.indices = map[string]*index{}
	s.streams = map[string]*index{}
	s.templates = map[string]*indexTemplate{"logs": builtinLogsTemplate()}
	s.components = map[string]map[string]any{}
}

// takeBulkFault reports whether this bulk request is to fail, and how.
func (s *Server) takeBulkFault() (int, bool) {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	if s.failLeft == 0 {
		return 0, false
	}
	s.failLeft--
	return s.failStatus, true
}

func (s *Server) rejectHook() RejectFunc {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	return s.reject
}

// delay waits out the injected latency; false means the client left.
func (s *Server) delay(ctx context.Context) bool {
	s.faultMu.Lock()
	d := s.latency
	s.faultMu.Unlock()
	if d <= 0 {
		return true
	}
	select {
	case <-time.After(d):
		return true
	case <-ctx.Done():
		return false
	}
}

// request is an incoming request with its path taken apart.
type request struct {
	*http.Request
	target string // index expression from the path, "" when none
	name   string // template or data stream name
	body   []byte
	params url.Values
}

func (r *request) flag(name string) bool {
	v, ok := r.params[name]
	return ok && v[0] != "false"
}

// route is one endpoint: the methods it answers and its handler.
type route struct {
	methods []string
	handle  func(*Server, http.ResponseWriter, *request)
}

var (
	get, head, put, post, del = http.MethodGet, http.MethodHead, http.MethodPut, http.MethodPost, http.MethodDelete

	// knownParams are the query parameters esfake accepts, all harmless
	// where they do not apply; others are refused rather than ignored.
	knownParams = []string{"pretty", "human", "error_trace", "ignore_unavailable", "allow_no_indices", "expand_wildcards",
		"create", "cause", "master_timeout", "local", "timeout", "refresh", "wait_for_active_shards"}

	routes = map[string]route{
		"":                      {[]string{get, head}, (*Server).handleInfo},
		"_bulk":                 {[]string{post, put}, (*Server).handleBulk},
		"_refresh":              {[]string{get, post}, (*Server).handleRefresh},
		"_count":                {[]string{get, post}, (*Server).handleSearch},
		"_search":               {[]string{get, post}, (*Server).handleSearch},
		"_mapping":              {[]string{get}, (*Server).handleMapping},
		"_settings":             {[]string{get}, (*Server).handleSettings},
		"_index_template":       {[]string{get}, (*Server).handleIndexTemplate},
		"_index_template/*":     {[]string{get, head, put, post, del}, (*Server).handleIndexTemplate},
		"_component_template":   {[]string{get}, (*Server).handleComponentTemplate},
		"_component_template/*": {[]string{get, head, put, post, del}, (*Server).handleComponentTemplate},
		"_data_stream":          {[]string{get}, (*Server).handleDataStream},
		"_data_stream/*":        {[]string{get, del}, (*Server).handleDataStream},
	}
)

// routeFor finds the endpoint of a path, given as unescaped segments:
// /<api>, /<api>/<name> for templates and data streams, and
// /<target>/<api> for the index APIs.
func routeFor(segs []string) (rt route, target, name string, ok bool) {
	switch {
	case len(segs) == 0:
		rt, ok = routes[""]
	case len(segs) == 1 && strings.HasPrefix(segs[0], "_") && segs[0] != "_mapping" && segs[0] != "_settings":
		rt, ok = routes[segs[0]]
	case len(segs) == 2 && strings.HasPrefix(segs[0], "_"):
		rt, ok = routes[segs[0]+"/*"]
		name = segs[1]
	case len(segs) == 2 && strings.HasPrefix(segs[1], "_"):
		rt, ok = routes[segs[1]]
		target = segs[0]
	}
	return rt, target, name, ok
}

// ServeHTTP answers one request of the Elasticsearch HTTP API.
func (s *Server) ServeHTTP(w http.ResponseWriter, hr *http.Request) {
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	if !s.delay(hr.Context()) {
		return
	}
	r := &request{Request: hr, params: hr.URL.Query()}
	var segs []string
	for _, seg := range strings.Split(hr.URL.EscapedPath(), "/") {
		if u, err := url.PathUnescape(seg); err == nil && u != "" {
			segs = append(segs, u)
		}
	}
	rt, target, name, found := routeFor(segs)
	if !found {
		s.fail(w, r, illegalArgument("no handler found for uri [%s] and method [%s]: esfake, a development stand-in for Elasticsearch, implements only part of the API", hr.URL.Path, hr.Method))
		return
	}
	if !slices.Contains(rt.methods, hr.Method) {
		w.Header().Set("Allow", strings.Join(rt.methods, ","))
		s.reply(w, r, http.StatusMethodNotAllowed, obj{
			{"error", fmt.Sprintf("Incorrect HTTP method for uri [%s] and method [%s], allowed: [%s]", hr.URL.RequestURI(), hr.Method, strings.Join(rt.methods, ", "))},
			{"status", http.StatusMethodNotAllowed},
		})
		return
	}
	r.target, r.name = target, name
	for _, k := range sortedKeys(r.params) {
		if !slices.Contains(knownParams, k) {
			s.fail(w, r, illegalArgument("request [%s] contains unrecognized parameter: [%s]", hr.URL.Path, k))
			return
		}
	}
	if e := s.readBody(r); e != nil {
		s.fail(w, r, e)
		return
	}
	rt.handle(s, w, r)
}

// readBody reads the request body, refusing what Elasticsearch refuses:
// bodies over the size limit and content types it does not parse.
func (s *Server) readBody(r *request) *esError {
	if r.Body == nil {
		return nil
	}
	var buf bytes.Buffer
	if n := r.ContentLength; n > 0 && n <= maxBodyBytes {
		buf.Grow(int(n) + bytes.MinRead) // one allocation for the body
	}
	if _, err := buf.ReadFrom(io.LimitReader(r.Body, maxBodyBytes+1)); err != nil {
		return illegalArgument("reading the request body: %v", err)
	}
	if buf.Len() > maxBodyBytes {
		return newError(http.StatusRequestEntityTooLarge, "content_too_long_exception",
			"request body is too large: more than [%d] bytes (http.max_content_length)", maxBodyBytes)
	}
	if len(bytes.TrimSpace(buf.Bytes())) > 0 {
		ct := r.Header.Get("Content-Type")
		switch mt, _, _ := mime.ParseMediaType(ct); mt {
		case "application/json", "application/x-ndjson",
			"application/vnd.elasticsearch+json", "application/vnd.elasticsearch+x-ndjson":
		default:
			return &esError{status: http.StatusNotAcceptable, typ: "media_type_header_exception",
				reason: fmt.Sprintf("Content-Type header [%s] is not supported", ct)}
		}
	}
	r.body = buf.Bytes()
	return nil
}

// reply writes a JSON answer. v is marshalled unless it is already []byte.
func (s *Server) reply(w http.ResponseWriter, r *request, status int, v any) {
	body, ok := v.([]byte)
	if !ok {
		var err error
		if body, err = json.Marshal(v); err != nil {
			status, body = http.StatusInternalServerError, []byte(`{"error":{"type":"exception","reason":"esfake could not encode its answer"},"status":500}`)
		}
	}
	if r.flag("pretty") {
		var buf bytes.Buffer
		if json.Indent(&buf, body, "", "  ") == nil {
			body = append(buf.Bytes(), '\n')
		}
	}
	h := w.Header()
	if strings.Contains(r.Header.Get("Accept"), "vnd.elasticsearch+json") {
		h.Set("Content-Type", "application/vnd.elasticsearch+json;compatible-with=8")
	} else {
		h.Set("Content-Type", "application/json")
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

func (s *Server) fail(w http.ResponseWriter, r *request, e *esError) {
	s.reply(w, r, e.status, e.body())
}

// decodeBody decodes a JSON request body that must be an object, keeping
// numbers exact. An empty body decodes to nil.
func decodeBody(body []byte) (map[string]any, *esError) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || dec.More() {
		return nil, newError(http.StatusBadRequest, "x_content_parse_exception", "request body is not one JSON object: %v", err)
	}
	return m, nil
}

func (s *Server) handleInfo(w http.ResponseWriter, r *request) {
	s.reply(w, r, http.StatusOK, obj{
		{"name", nodeName},
		{"cluster_name", clusterName},
		{"cluster_uuid", s.clusterUUID},
		{"version", obj{{"number", versionNumber}, {"build_flavor", "default"}, {"build_type", "esfake"},
			{"minimum_wire_compatibility_version", "7.17.0"}, {"minimum_index_compatibility_version", "7.0.0"}}},
		{"tagline", "You Know, for Search"},
	})
}

// shardsHeader is the _shards object of reads over n indices (one shard each).
func shardsHeader(n int) obj {
	return obj{{"total", n}, {"successful", n}, {"skipped", 0}, {"failed", 0}}
}

// newUUID returns a random id in the style of Elasticsearch's index UUIDs.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// newDocID returns an id for a document indexed without one: 20 URL-safe
// characters, as Elasticsearch's.
func newDocID() string {
	var b [15]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// globMatch matches an index name against a pattern where * stands for
// any run of characters.
func globMatch(pattern, name string) bool {
	ok, err := path.Match(pattern, name)
	return ok && err == nil
}
