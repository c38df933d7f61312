package esfake

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"sort"
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
	luceneVersion = "9.12.2"
	clusterName   = "esfake"
	nodeName      = "esfake"
	nodeID        = "esfake-node-0"
	tagline       = "You Know, for Search"

	// maxBodyBytes is Elasticsearch's default http.max_content_length.
	maxBodyBytes = 100 << 20
	// maxResultWindow is the default index.max_result_window.
	maxResultWindow = 10000
)

// Option configures a Server.
type Option func(*Server)

// WithDiscard makes _bulk acknowledge documents without keeping them:
// the body is parsed in full and every valid item answers 201 created, but
// nothing is stored, no mapping is checked and no index is created. It is
// meant for benchmarks of clients.
func WithDiscard() Option { return func(s *Server) { s.discard = true } }

// WithClock sets the clock used for data stream backing index names, "now"
// in date math and auto-generated ids. The default is time.Now.
func WithClock(now func() time.Time) Option { return func(s *Server) { s.now = now } }

// WithoutBuiltinTemplates leaves out the built-in "logs" index template
// that a default Elasticsearch 8 has (patterns logs-*-*, priority 100).
func WithoutBuiltinTemplates() Option { return func(s *Server) { s.noBuiltins = true } }

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
	now         func() time.Time
	discard     bool
	noBuiltins  bool
	clusterUUID string
	idCounter   atomic.Uint64
	discardSeq  atomic.Int64

	faultMu    sync.Mutex // guards the fault injection below
	failLeft   int
	failStatus int
	latency    time.Duration
	reject     func(index, id string, doc []byte) (status int, errType, reason string, reject bool)

	mu         sync.RWMutex // guards the cluster state below
	indices    map[string]*index
	streams    map[string]*dataStream
	templates  map[string]*indexTemplate
	components map[string]*componentTemplate
	persistent map[string]string // cluster settings, by dotted key
	transient  map[string]string
}

// New returns an empty server.
func New(opts ...Option) *Server {
	s := &Server{now: time.Now, clusterUUID: newUUID()}
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

// RejectItems installs a hook called for every index and create item of a
// bulk request, with the index name as the request gives it, the document
// id (generated if the request has none) and the source. When it returns
// reject true, the item fails with status (400 unless it is a 4xx or 5xx
// status) and an error of type errType (default:
// es_rejected_execution_exception for 429, else illegal_argument_exception)
// and the reason; the rest of the request goes on. The hook runs without
// the server's lock held, so it may call the Server. nil removes it.
func (s *Server) RejectItems(fn func(index, id string, doc []byte) (status int, errType, reason string, reject bool)) {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	s.reject = fn
}

// Docs returns the stored documents of an index, data stream or index
// pattern, sorted by id (then index). It returns nil when nothing matches.
func (s *Server) Docs(index string) []Doc {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ixs, e := s.resolveRead(index, readOptions{ignoreUnavailable: true, allowNoIndices: true})
	if e != nil {
		return nil
	}
	var out []Doc
	for _, ix := range ixs {
		for _, d := range ix.docs {
			out = append(out, Doc{ID: d.id, Source: bytes.Clone(d.source), Index: ix.name})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].ID != out[j].ID {
			return out[i].ID < out[j].ID
		}
		return out[i].Index < out[j].Index
	})
	return out
}

// Count returns how many documents an index, data stream or index pattern
// holds; 0 when nothing matches.
func (s *Server) Count(index string) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ixs, e := s.resolveRead(index, readOptions{ignoreUnavailable: true, allowNoIndices: true})
	if e != nil {
		return 0
	}
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
	s.streams = map[string]*dataStream{}
	s.templates = map[string]*indexTemplate{}
	s.components = map[string]*componentTemplate{}
	s.persistent = map[string]string{}
	s.transient = map[string]string{}
	if !s.noBuiltins {
		s.installBuiltins()
	}
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

func (s *Server) rejectHook() func(string, string, []byte) (int, string, string, bool) {
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
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// request is an incoming request with its path taken apart.
type request struct {
	*http.Request
	target string // index expression from the path, "" when none
	name   string // template or data stream name, or document id
	body   []byte
	params url.Values
}

func (r *request) flag(name string) bool {
	v, ok := r.params[name]
	return ok && v[0] != "false"
}

// route is one endpoint: the methods it answers, the query parameters it
// accepts besides the common ones, and its handler.
type route struct {
	methods []string
	params  []string
	handle  func(*Server, http.ResponseWriter, *request)
}

var commonParams = []string{"pretty", "human", "error_trace", "filter_path"}

var (
	get, head, put, post, del = http.MethodGet, http.MethodHead, http.MethodPut, http.MethodPost, http.MethodDelete

	indicesOptions = []string{"ignore_unavailable", "allow_no_indices", "expand_wildcards", "ignore_throttled"}

	infoRoute   = route{[]string{get, head}, nil, (*Server).handleInfo}
	healthRoute = route{[]string{get}, []string{"level", "local", "master_timeout", "timeout", "wait_for_active_shards",
		"wait_for_events", "wait_for_nodes", "wait_for_no_initializing_shards", "wait_for_no_relocating_shards",
		"wait_for_status", "expand_wildcards"}, (*Server).handleHealth}
	clusterSettingsRoute = route{[]string{get, put}, []string{"flat_settings", "include_defaults", "master_timeout", "timeout", "local"},
		(*Server).handleClusterSettings}
	bulkRoute = route{[]string{post, put}, []string{"refresh", "pipeline", "routing", "timeout", "wait_for_active_shards",
		"require_alias", "require_data_stream", "_source", "_source_excludes", "_source_includes",
		"list_executed_pipelines", "include_source_on_error"}, (*Server).handleBulk}
	refreshRoute = route{[]string{get, post}, indicesOptions, (*Server).handleRefresh}
	countRoute   = route{[]string{get, post}, append([]string{"q", "min_score", "preference", "routing", "terminate_after",
		"analyzer", "analyze_wildcard", "default_operator", "df", "lenient"}, indicesOptions...), (*Server).handleCount}
	searchRoute = route{[]string{get, post}, append([]string{"size", "from", "sort", "track_total_hits",
		"rest_total_hits_as_int", "typed_keys", "_source", "_source_includes", "_source_excludes", "timeout",
		"request_cache", "preference", "routing", "search_type", "seq_no_primary_term", "version",
		"batched_reduce_size", "ccs_minimize_roundtrips", "track_scores", "allow_partial_search_results",
		"pre_filter_shard_size", "max_concurrent_shard_requests", "terminate_after", "q", "scroll",
		"stored_fields", "docvalue_fields", "explain", "stats", "analyzer", "analyze_wildcard",
		"default_operator", "df", "lenient", "include_named_queries_score", "suggest_field", "suggest_mode",
		"suggest_size", "suggest_text", "force_synthetic_source", "min_compatible_shard_node"}, indicesOptions...),
		(*Server).handleSearch}
	templateParams  = []string{"create", "cause", "master_timeout", "flat_settings", "local", "include_defaults", "timeout"}
	templatesRoute  = route{[]string{get}, templateParams, (*Server).handleIndexTemplate}
	templateRoute   = route{[]string{get, head, put, post, del}, templateParams, (*Server).handleIndexTemplate}
	componentsRoute = route{[]string{get}, templateParams, (*Server).handleComponentTemplate}
	componentRoute  = route{[]string{get, head, put, post, del}, templateParams, (*Server).handleComponentTemplate}
	streamParams    = []string{"expand_wildcards", "include_defaults", "master_timeout", "timeout", "verbose"}
	streamsRoute    = route{[]string{get}, streamParams, (*Server).handleDataStream}
	streamRoute     = route{[]string{get, put, del}, streamParams, (*Server).handleDataStream}
	indexRoute      = route{[]string{get, head, put, del}, append([]string{"wait_for_active_shards", "timeout", "master_timeout",
		"include_defaults", "flat_settings", "local", "features"}, indicesOptions...), (*Server).handleIndex}
	mappingRoute  = route{[]string{get}, append([]string{"local", "master_timeout"}, indicesOptions...), (*Server).handleMapping}
	settingsRoute = route{[]string{get, put}, append([]string{"flat_settings", "include_defaults", "local", "master_timeout",
		"timeout", "preserve_existing", "reopen"}, indicesOptions...), (*Server).handleSettings}
	closeRoute = route{[]string{post}, append([]string{"master_timeout", "timeout", "wait_for_active_shards"}, indicesOptions...),
		(*Server).handleClose}
	openRoute = route{[]string{post}, append([]string{"master_timeout", "timeout", "wait_for_active_shards"}, indicesOptions...),
		(*Server).handleOpen}
	rolloverRoute = route{[]string{post}, []string{"dry_run", "lazy", "master_timeout", "timeout", "wait_for_active_shards"},
		(*Server).handleRollover}
	docParams = []string{"refresh", "routing", "op_type", "pipeline", "timeout", "version", "version_type",
		"if_seq_no", "if_primary_term", "require_alias", "require_data_stream", "wait_for_active_shards",
		"preference", "realtime", "_source", "_source_excludes", "_source_includes", "stored_fields", "include_source_on_error"}
	docRoute     = route{[]string{get, head, put, post, del}, docParams, (*Server).handleDoc}
	docAutoRoute = route{[]string{post}, docParams, (*Server).handleDoc}
	createRoute  = route{[]string{put, post}, docParams, (*Server).handleDoc}
)

// routeFor finds the endpoint of a path, given as unescaped segments.
func routeFor(segs []string) (rt route, target, name string, ok bool) {
	n := len(segs)
	if n == 0 {
		return infoRoute, "", "", true
	}
	first := segs[0]
	if strings.HasPrefix(first, "_") {
		switch {
		case n == 1 && first == "_bulk":
			return bulkRoute, "", "", true
		case n == 1 && first == "_refresh":
			return refreshRoute, "", "", true
		case n == 1 && first == "_count":
			return countRoute, "", "", true
		case n == 1 && first == "_search":
			return searchRoute, "", "", true
		case n == 1 && first == "_mapping":
			return mappingRoute, "", "", true
		case n == 1 && first == "_index_template":
			return templatesRoute, "", "", true
		case n == 2 && first == "_index_template":
			return templateRoute, "", segs[1], true
		case n == 1 && first == "_component_template":
			return componentsRoute, "", "", true
		case n == 2 && first == "_component_template":
			return componentRoute, "", segs[1], true
		case n == 1 && first == "_data_stream":
			return streamsRoute, "", "", true
		case n == 2 && first == "_data_stream":
			return streamRoute, "", segs[1], true
		case n == 2 && first == "_cluster" && segs[1] == "health":
			return healthRoute, "", "", true
		case n == 2 && first == "_cluster" && segs[1] == "settings":
			return clusterSettingsRoute, "", "", true
		case first == "_all" && n == 2:
			return routeFor([]string{"*", segs[1]})
		}
		return route{}, "", "", false
	}
	switch {
	case n == 1:
		return indexRoute, first, "", true
	case n == 2:
		switch segs[1] {
		case "_bulk":
			return bulkRoute, first, "", true
		case "_refresh":
			return refreshRoute, first, "", true
		case "_count":
			return countRoute, first, "", true
		case "_search":
			return searchRoute, first, "", true
		case "_mapping":
			return mappingRoute, first, "", true
		case "_settings":
			return settingsRoute, first, "", true
		case "_close":
			return closeRoute, first, "", true
		case "_open":
			return openRoute, first, "", true
		case "_rollover":
			return rolloverRoute, first, "", true
		case "_doc":
			return docAutoRoute, first, "", true
		}
	case n == 3:
		switch segs[1] {
		case "_doc":
			return docRoute, first, segs[2], true
		case "_create":
			return createRoute, first, segs[2], true
		}
	}
	return route{}, "", "", false
}

// ServeHTTP answers one request of the Elasticsearch HTTP API.
func (s *Server) ServeHTTP(w http.ResponseWriter, hr *http.Request) {
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	if !s.delay(hr.Context()) {
		return
	}
	r := &request{Request: hr, params: hr.URL.Query()}
	segs, err := splitPath(hr.URL.EscapedPath())
	if err != nil {
		s.fail(w, r, illegalArgument("invalid path [%s]: %v", hr.URL.EscapedPath(), err))
		return
	}
	rt, target, name, found := routeFor(segs)
	if !found {
		s.fail(w, r, illegalArgument("no handler found for uri [%s] and method [%s]: esfake, a development stand-in for Elasticsearch, implements only part of the API", hr.URL.Path, hr.Method))
		return
	}
	if !contains(rt.methods, hr.Method) {
		s.methodNotAllowed(w, r, rt.methods)
		return
	}
	r.target, r.name = target, name
	for _, k := range sortedKeys(r.params) {
		if !contains(commonParams, k) && !contains(rt.params, k) {
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

func splitPath(escaped string) ([]string, error) {
	var segs []string
	for _, seg := range strings.Split(escaped, "/") {
		if seg == "" {
			continue
		}
		u, err := url.PathUnescape(seg)
		if err != nil {
			return nil, err
		}
		segs = append(segs, u)
	}
	return segs, nil
}

// readBody reads the request body, refusing what Elasticsearch refuses:
// bodies over the size limit and content types it does not parse.
func (s *Server) readBody(r *request) *esError {
	if r.Body == nil {
		return nil
	}
	var in io.Reader = r.Body
	var buf bytes.Buffer
	switch enc := r.Header.Get("Content-Encoding"); enc {
	case "", "identity":
		if n := r.ContentLength; n > 0 && n <= maxBodyBytes {
			buf.Grow(int(n) + bytes.MinRead)
		}
	case "gzip":
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			return illegalArgument("reading the gzip request body: %v", err)
		}
		defer zr.Close()
		in = zr
	default:
		return illegalArgument("unsupported Content-Encoding [%s]", enc)
	}
	if _, err := buf.ReadFrom(io.LimitReader(in, maxBodyBytes+1)); err != nil {
		return illegalArgument("reading the request body: %v", err)
	}
	body := buf.Bytes()
	if len(body) > maxBodyBytes {
		return newError(http.StatusRequestEntityTooLarge, "content_too_long_exception",
			"request body is too large: more than [%d] bytes (http.max_content_length)", maxBodyBytes)
	}
	if len(bytes.TrimSpace(body)) > 0 {
		ct := r.Header.Get("Content-Type")
		mt, _, _ := mime.ParseMediaType(ct)
		switch mt {
		case "application/json", "application/x-ndjson",
			"application/vnd.elasticsearch+json", "application/vnd.elasticsearch+x-ndjson":
		default:
			return &esError{status: http.StatusNotAcceptable, typ: "media_type_header_exception",
				reason: fmt.Sprintf("Content-Type header [%s] is not supported", ct)}
		}
	}
	r.body = body
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

// methodNotAllowed answers as Elasticsearch does, with its plain-string error.
func (s *Server) methodNotAllowed(w http.ResponseWriter, r *request, allowed []string) {
	w.Header().Set("Allow", strings.Join(allowed, ","))
	s.reply(w, r, http.StatusMethodNotAllowed, obj{
		{"error", fmt.Sprintf("Incorrect HTTP method for uri [%s] and method [%s], allowed: [%s]", r.URL.RequestURI(), r.Method, strings.Join(allowed, ", "))},
		{"status", http.StatusMethodNotAllowed},
	})
}

// decodeBody decodes a JSON request body into a generic value, keeping
// numbers exact. An empty body decodes to nil.
func decodeBody(body []byte) (map[string]any, *esError) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, xContentError(err)
	}
	if dec.More() {
		return nil, newError(400, "x_content_parse_exception", "request body has more than one JSON value")
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, newError(400, "x_content_parse_exception", "request body or source parameter is required to be a JSON object")
	}
	return m, nil
}

func xContentError(err error) *esError {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return newError(400, "x_content_parse_exception", "[1:%d] %s", se.Offset, strings.TrimPrefix(err.Error(), "json: "))
	}
	return newError(400, "x_content_parse_exception", "%s", strings.TrimPrefix(err.Error(), "json: "))
}

func (s *Server) handleInfo(w http.ResponseWriter, r *request) {
	s.reply(w, r, http.StatusOK, obj{
		{"name", nodeName},
		{"cluster_name", clusterName},
		{"cluster_uuid", s.clusterUUID},
		{"version", obj{
			{"number", versionNumber},
			{"build_flavor", "default"},
			{"build_type", "esfake"},
			{"build_hash", "esfake"},
			{"build_date", "2025-01-01T00:00:00.000000000Z"},
			{"build_snapshot", false},
			{"lucene_version", luceneVersion},
			{"minimum_wire_compatibility_version", "7.17.0"},
			{"minimum_index_compatibility_version", "7.0.0"},
		}},
		{"tagline", tagline},
	})
}

func (s *Server) handleHealth(w http.ResponseWriter, r *request) {
	s.mu.RLock()
	shards := len(s.indices)
	s.mu.RUnlock()
	s.reply(w, r, http.StatusOK, obj{
		{"cluster_name", clusterName},
		{"status", "green"},
		{"timed_out", false},
		{"number_of_nodes", 1},
		{"number_of_data_nodes", 1},
		{"active_primary_shards", shards},
		{"active_shards", shards},
		{"relocating_shards", 0},
		{"initializing_shards", 0},
		{"unassigned_shards", 0},
		{"unassigned_primary_shards", 0},
		{"delayed_unassigned_shards", 0},
		{"number_of_pending_tasks", 0},
		{"number_of_in_flight_fetch", 0},
		{"task_max_waiting_in_queue_millis", 0},
		{"active_shards_percent_as_number", 100.0},
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
// characters, time-ordered like Elasticsearch's.
func (s *Server) newDocID() string {
	var b [15]byte
	ms := uint64(s.now().UnixMilli())
	n := s.idCounter.Add(1)
	for i := 0; i < 6; i++ {
		b[i] = byte(ms >> (8 * (5 - i)))
	}
	for i := 0; i < 6; i++ {
		b[6+i] = byte(n >> (8 * (5 - i)))
	}
	_, _ = rand.Read(b[12:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
