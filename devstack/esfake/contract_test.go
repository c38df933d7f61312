package esfake_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/logpipe/logpipe/devstack/stack"
)

// The contract: what the pipeline relies on from the Elasticsearch API, as
// one table of cases run against esfake and against the real engine
// (OpenSearch, through devstack's proxy; see stack.ForBackends). A case
// that passes on one and fails on the other is a difference to fix in
// esfake, or, where Elasticsearch 8 and OpenSearch themselves differ, to
// assert in its shared part and name (see the README, "esfake and the
// real engines").
//
// Each case gets a stack of its own: a fresh esfake, or on the shared real
// engine names of its own (stack.Stack.Index), with templates of its own
// removed when it ends. Names never start with logs-, which Elasticsearch
// 8's built-in template claims.
//
// Not here, because a shared node cannot be made to give them without
// disturbing other tests: a 429 for a whole bulk request (the engine gives
// one only when its node-wide write queue or indexing pressure limit is
// full) and 503s. Their esfake side, FailBulk, is tested in faults_test.go.
//
// The cases cover what esfake keeps. What it leaves to the real engine
// (index blocks, closed indices, rollover, action.auto_create_index, the
// keyword term limit, the total fields limit) is tested there alone, by
// the tests of the code that depends on it (transfer's refusal tests).
var contract = []struct {
	name string
	run  func(t *testing.T, e *engine)
}{
	{"cluster info", contractInfo},
	{"create twice is a version conflict", contractCreateConflict},
	{"a value that does not fit the mapping fails its item only", contractMappingMismatch},
	{"data stream created on first write from a template", contractDataStream},
	{"refresh", contractRefresh},
	{"count", contractCount},
	{"search defaults", contractSearchDefaults},
	{"search queries, sort, size and from", contractSearchQueries},
	{"search errors", contractSearchErrors},
	{"dynamic mapping", contractDynamicMapping},
	{"document ids", contractIDs},
	{"malformed bulk requests", contractMalformedBulk},
	{"index template priority and overlap", contractTemplates},
	{"the Go client in compatibility mode", contractCompatibilityMode},
}

func TestContract(t *testing.T) {
	stack.ForBackends(t, func(t *testing.T, kind string) {
		for _, c := range contract {
			t.Run(c.name, func(t *testing.T) { c.run(t, newEngine(t, kind)) })
		}
	})
}

// engine is the Elasticsearch API of one case: esfake or the real engine.
type engine struct {
	kind string // stack.Embedded: esfake; stack.Real: OpenSearch
	st   *stack.Stack
	url  string
	es   *elasticsearch.Client
}

func newEngine(t *testing.T, kind string) *engine {
	t.Helper()
	st := stack.New(t, stack.Options{Backends: kind, Without: []string{stack.Etcd, stack.Kafka}})
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	es, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{st.ESURL()}, Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	return &engine{kind: kind, st: st, url: st.ESURL(), es: es}
}

// fake tells whether the engine is esfake, which follows Elasticsearch 8.
func (e *engine) fake() bool { return e.kind == stack.Embedded }

// name is a data stream or index name of this case's own.
func (e *engine) name(base string) string { return e.st.Index(base) }

// do sends a request through the client's transport and decodes the JSON
// answer. Bodies of _bulk requests go as NDJSON.
func (e *engine) do(t *testing.T, method, path, body string) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		ct := "application/json"
		if strings.Contains(path, "_bulk") {
			ct = "application/x-ndjson"
		}
		req.Header.Set("Content-Type", ct)
	}
	res, err := e.es.Perform(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	return res.StatusCode, decodeJSON(t, res.Body)
}

// must sends a request that is to succeed with 200.
func (e *engine) must(t *testing.T, method, path, body string) map[string]any {
	t.Helper()
	status, m := e.do(t, method, path, body)
	if status != http.StatusOK {
		t.Fatalf("%s %s: %d %v", method, path, status, m)
	}
	return m
}

// bulk sends NDJSON lines to _bulk through the client and returns the
// answer; it fails the case unless the request as a whole got a 200.
func (e *engine) bulk(t *testing.T, lines ...string) map[string]any {
	t.Helper()
	status, m := esResult(t)(e.es.Bulk(strings.NewReader(strings.Join(lines, "\n") + "\n")))
	if status != http.StatusOK {
		t.Fatalf("bulk: %d %v", status, m)
	}
	return m
}

// refresh makes what was written searchable: the real engine refreshes
// only every second, esfake at once.
func (e *engine) refresh(t *testing.T, target string) {
	t.Helper()
	status, m := esResult(t)(e.es.Indices.Refresh(e.es.Indices.Refresh.WithIndex(target)))
	if status != http.StatusOK {
		t.Fatalf("refresh %s: %d %v", target, status, m)
	}
}

// template installs an index template and removes it when the case ends,
// after the data streams its patterns match (a template in use cannot be
// removed).
func (e *engine) template(t *testing.T, name, body string) {
	t.Helper()
	if status, m := e.putTemplate(t, name, body); status != http.StatusOK {
		t.Fatalf("PUT /_index_template/%s: %d %v", name, status, m)
	}
}

// putTemplate tries to install an index template and returns the answer;
// if it was installed, it is removed when the case ends.
func (e *engine) putTemplate(t *testing.T, name, body string) (int, map[string]any) {
	t.Helper()
	var def struct {
		Patterns []string `json:"index_patterns"`
	}
	_ = json.Unmarshal([]byte(body), &def)
	status, m := e.do(t, http.MethodPut, "/_index_template/"+name, body)
	if status == http.StatusOK {
		t.Cleanup(func() {
			for _, p := range def.Patterns {
				e.do(t, http.MethodDelete, "/_data_stream/"+p, "")
			}
			if status, m := e.do(t, http.MethodDelete, "/_index_template/"+name, ""); status != http.StatusOK {
				t.Errorf("removing index template %s: %d %v", name, status, m)
			}
		})
	}
	return status, m
}

// dataStream installs a data stream template for one name of this case's
// own, with the given mappings properties (JSON), and returns the name.
// The template has the same name.
func (e *engine) dataStream(t *testing.T, base, properties string) string {
	t.Helper()
	ds := e.name(base)
	e.template(t, ds, fmt.Sprintf(`{"index_patterns":[%q],"data_stream":{},"priority":500,
		"template":{"mappings":{"properties":%s}}}`, ds, properties))
	return ds
}

// count returns _count of target (with an optional query body).
func (e *engine) count(t *testing.T, target, body string) int {
	t.Helper()
	opts := []func(*esapi.CountRequest){e.es.Count.WithIndex(target)}
	if body != "" {
		opts = append(opts, e.es.Count.WithBody(strings.NewReader(body)))
	}
	status, m := esResult(t)(e.es.Count(opts...))
	if status != http.StatusOK {
		t.Fatalf("count %s: %d %v", target, status, m)
	}
	n, ok := dig(m, "count").(float64)
	if !ok {
		t.Fatalf("count %s: no count in %v", target, m)
	}
	return int(n)
}

// search runs a _search and returns the status, the hits' ids in order
// and the answer.
func (e *engine) search(t *testing.T, target, body string) (int, []string, map[string]any) {
	t.Helper()
	opts := []func(*esapi.SearchRequest){e.es.Search.WithIndex(target)}
	if body != "" {
		opts = append(opts, e.es.Search.WithBody(strings.NewReader(body)))
	}
	status, m := esResult(t)(e.es.Search(opts...))
	var ids []string
	hits, _ := dig(m, "hits", "hits").([]any)
	for _, h := range hits {
		id, _ := dig(h, "_id").(string)
		ids = append(ids, id)
	}
	return status, ids, m
}

// item returns the result object of the i-th item of a bulk answer,
// whatever its op.
func item(t *testing.T, m map[string]any, i int) map[string]any {
	t.Helper()
	items, _ := m["items"].([]any)
	if i >= len(items) {
		t.Fatalf("bulk answer has %d items, want at least %d: %v", len(items), i+1, m)
	}
	for _, v := range items[i].(map[string]any) {
		return v.(map[string]any)
	}
	t.Fatalf("bulk item %d is empty: %v", i, m)
	return nil
}

// errType is an error type that Elasticsearch 8 and OpenSearch may name
// differently. esfake must answer Elasticsearch 8's; the real engine
// either.
type errType struct{ es8, openSearch string }

func same(typ string) errType { return errType{typ, typ} }

// Where the two engines differ.
var (
	// A document that does not fit its mapping.
	docParsing = errType{"document_parsing_exception", "mapper_parsing_exception"}
)

func (e *engine) typeOK(got string, want errType) bool {
	if e.fake() {
		return got == want.es8
	}
	return got == want.es8 || got == want.openSearch
}

// wantError checks an error answer: its status, Elasticsearch's error
// shape ({"error":{"root_cause":[{"type","reason"}],"type","reason"},
// "status"}) and its type; reason, if not empty, must be a prefix of the
// error's reason. It returns the error object.
func (e *engine) wantError(t *testing.T, status int, m map[string]any, wantStatus int, want errType, reason string) map[string]any {
	t.Helper()
	if status != wantStatus {
		t.Fatalf("status %d, want %d: %v", status, wantStatus, m)
	}
	if got, _ := m["status"].(float64); int(got) != wantStatus {
		t.Errorf("body status %v, want %d: %v", m["status"], wantStatus, m)
	}
	errObj, ok := m["error"].(map[string]any)
	if !ok {
		t.Fatalf("no error object in %v", m)
	}
	typ, _ := errObj["type"].(string)
	if !e.typeOK(typ, want) {
		t.Errorf("error type %q, want %v: %v", typ, want, m)
	}
	got, _ := errObj["reason"].(string)
	if got == "" || !strings.HasPrefix(got, reason) {
		t.Errorf("error reason %q, want it to start with %q", got, reason)
	}
	roots, _ := errObj["root_cause"].([]any)
	if len(roots) == 0 {
		t.Fatalf("error has no root_cause: %v", m)
	}
	for _, rc := range roots {
		if s, _ := dig(rc, "type").(string); s == "" {
			t.Errorf("root cause without a type: %v", m)
		}
		if s, _ := dig(rc, "reason").(string); s == "" {
			t.Errorf("root cause without a reason: %v", m)
		}
	}
	return errObj
}

// wantItemError checks a failed bulk item: status, error type and reason
// prefix. It returns the item's error object.
func (e *engine) wantItemError(t *testing.T, it map[string]any, wantStatus int, want errType, reason string) map[string]any {
	t.Helper()
	if got, _ := it["status"].(float64); int(got) != wantStatus {
		t.Fatalf("item status %v, want %d: %v", it["status"], wantStatus, it)
	}
	errObj, ok := it["error"].(map[string]any)
	if !ok {
		t.Fatalf("failed item without an error object: %v", it)
	}
	if typ, _ := errObj["type"].(string); !e.typeOK(typ, want) {
		t.Errorf("item error type %q, want %v: %v", typ, want, it)
	}
	if got, _ := errObj["reason"].(string); got == "" || !strings.HasPrefix(got, reason) {
		t.Errorf("item error reason %q, want it to start with %q", got, reason)
	}
	return errObj
}

// wantCreated checks a bulk item that created a document.
func wantCreated(t *testing.T, it map[string]any, id string) {
	t.Helper()
	if it["status"] != float64(http.StatusCreated) || it["result"] != "created" || it["_id"] != id ||
		it["_version"] != float64(1) || it["_primary_term"] != float64(1) {
		t.Fatalf("item %v, want 201 created, _id %s, _version 1, _primary_term 1", it, id)
	}
	if _, ok := it["_seq_no"].(float64); !ok {
		t.Fatalf("item without _seq_no: %v", it)
	}
}

// wantBackingIndex checks the name of a data stream's first backing
// index: .ds-<stream>-<yyyy.MM.dd>-000001 in Elasticsearch 8 (and esfake),
// .ds-<stream>-000001 in OpenSearch.
func (e *engine) wantBackingIndex(t *testing.T, ds string, got any) {
	t.Helper()
	es8 := regexp.MustCompile(`^\.ds-` + regexp.QuoteMeta(ds) + `-\d{4}\.\d{2}\.\d{2}-000001$`)
	name, _ := got.(string)
	if es8.MatchString(name) || (!e.fake() && name == ".ds-"+ds+"-000001") {
		return
	}
	t.Fatalf("backing index %q of data stream %s, want .ds-%s-<date>-000001", got, ds, ds)
}

// jsonEqual compares a decoded JSON value with JSON text.
func jsonEqual(t *testing.T, got any, want string) bool {
	t.Helper()
	var w any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(got)
	b, _ := json.Marshal(w)
	return string(a) == string(b)
}

func contractInfo(t *testing.T, e *engine) {
	res, err := e.es.Info() // the client refuses an answer without X-Elastic-Product
	if err != nil {
		t.Fatalf("cluster info through the Go client: %v", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Header.Get("X-Elastic-Product") != "Elasticsearch" {
		t.Fatalf("GET /: %d, X-Elastic-Product %q", res.StatusCode, res.Header.Get("X-Elastic-Product"))
	}
	m := decodeJSON(t, res.Body)
	for _, path := range [][]string{{"name"}, {"cluster_name"}, {"cluster_uuid"}, {"version", "number"}, {"tagline"}} {
		if s, _ := dig(m, path...).(string); s == "" {
			t.Errorf("GET / has no %s: %v", strings.Join(path, "."), m)
		}
	}
}

func contractCreateConflict(t *testing.T, e *engine) {
	ds := e.dataStream(t, "conflict", `{"@timestamp":{"type":"date"}}`)
	create := fmt.Sprintf(`{"create":{"_index":%q,"_id":"1"}}`, ds)
	doc := `{"@timestamp":"2026-11-21T10:00:00Z","message":"first"}`
	m := e.bulk(t, create, doc, create, `{"@timestamp":"2026-11-21T10:00:01Z","message":"second"}`)
	if m["errors"] != true {
		t.Errorf("errors = %v, want true", m["errors"])
	}
	first := item(t, m, 0)
	wantCreated(t, first, "1")
	if first["_seq_no"] != float64(0) {
		t.Errorf("first document's _seq_no %v, want 0", first["_seq_no"])
	}
	e.wantBackingIndex(t, ds, first["_index"])
	conflict := item(t, m, 1)
	errObj := e.wantItemError(t, conflict, http.StatusConflict, same("version_conflict_engine_exception"),
		"[1]: version conflict, document already exists (current version [1])")
	if conflict["_index"] != first["_index"] || errObj["index"] != first["_index"] || conflict["_id"] != "1" {
		t.Errorf("conflict item %v, want _index and error.index %v, _id 1", conflict, first["_index"])
	}

	// A later request, as after a retry: the same conflict.
	m = e.bulk(t, create, doc)
	e.wantItemError(t, item(t, m, 0), http.StatusConflict, same("version_conflict_engine_exception"), "[1]: version conflict")

	e.refresh(t, ds)
	status, ids, m := e.search(t, ds, "")
	if status != http.StatusOK || !slices.Equal(ids, []string{"1"}) || !jsonEqual(t, dig(m, "hits", "hits", "0", "_source"), doc) {
		t.Fatalf("after the conflicts: %d %v %v, want the first document alone", status, ids, m)
	}
}

func contractMappingMismatch(t *testing.T, e *engine) {
	ds := e.dataStream(t, "mismatch", `{"@timestamp":{"type":"date"},"n":{"type":"long"}}`)
	create := func(id string) string { return fmt.Sprintf(`{"create":{"_index":%q,"_id":%q}}`, ds, id) }
	m := e.bulk(t,
		create("1"), `{"@timestamp":"2026-11-21T10:00:00Z","n":1}`,
		create("2"), `{"@timestamp":"2026-11-21T10:00:00Z","n":"abc"}`,
		create("3"), `{"@timestamp":"2026-11-21T10:00:00Z","n":"42"}`, // numbers in strings are coerced
		create("4"), `{"@timestamp":"2026-11-21T10:00:00Z","n":2.5}`, // and fractions truncated
	)
	if m["errors"] != true {
		t.Errorf("errors = %v, want true", m["errors"])
	}
	wantCreated(t, item(t, m, 0), "1")
	failed := item(t, m, 1)
	errObj := e.wantItemError(t, failed, http.StatusBadRequest, docParsing, "")
	reason, _ := errObj["reason"].(string)
	if !strings.Contains(reason, "failed to parse field [n] of type [long] in document with id '2'. Preview of field's value: 'abc'") {
		t.Errorf("reason %q does not name the field, type, document and value", reason)
	}
	if dig(errObj, "caused_by", "type") != "illegal_argument_exception" {
		t.Errorf("caused_by %v, want illegal_argument_exception", errObj["caused_by"])
	}
	if failed["_id"] != "2" {
		t.Errorf("failed item _id %v, want 2", failed["_id"])
	}
	wantCreated(t, item(t, m, 2), "3")
	wantCreated(t, item(t, m, 3), "4")

	e.refresh(t, ds)
	if n := e.count(t, ds, ""); n != 3 {
		t.Errorf("count %d, want 3", n)
	}
	if n := e.count(t, ds, `{"query":{"term":{"n":42}}}`); n != 1 {
		t.Errorf("documents with n 42: %d, want 1 (\"42\" coerced)", n)
	}
}

func contractDataStream(t *testing.T, e *engine) {
	ds := e.dataStream(t, "stream", `{"@timestamp":{"type":"date"},"message":{"type":"text"}}`)
	status, m := e.do(t, http.MethodGet, "/_data_stream/"+ds, "")
	e.wantError(t, status, m, http.StatusNotFound, same("index_not_found_exception"), "no such index ["+ds+"]")

	m = e.bulk(t, fmt.Sprintf(`{"create":{"_index":%q,"_id":"a"}}`, ds), `{"@timestamp":"2026-11-21T10:00:00Z","message":"hello"}`)
	first := item(t, m, 0)
	wantCreated(t, first, "a")
	e.wantBackingIndex(t, ds, first["_index"])

	m = e.must(t, http.MethodGet, "/_data_stream/"+ds, "")
	info, _ := dig(m, "data_streams", "0").(map[string]any)
	if info["name"] != ds || info["template"] != ds || dig(info, "timestamp_field", "name") != "@timestamp" ||
		info["generation"] != float64(1) || dig(info, "indices", "0", "index_name") != first["_index"] {
		t.Fatalf("GET /_data_stream/%s: %v", ds, m)
	}

	// Only create: index (and so an index without an id) is refused.
	index := fmt.Sprintf(`{"index":{"_index":%q,"_id":"b"}}`, ds)
	m = e.bulk(t, index, `{"@timestamp":"2026-11-21T10:00:00Z"}`)
	e.wantItemError(t, item(t, m, 0), http.StatusBadRequest, same("illegal_argument_exception"),
		"only write ops with an op_type of create are allowed in data streams")

	// Every document needs its @timestamp.
	m = e.bulk(t, fmt.Sprintf(`{"create":{"_index":%q,"_id":"c"}}`, ds), `{"message":"no time"}`)
	e.wantItemError(t, item(t, m, 0), http.StatusBadRequest, docParsing, "")

	// Searches name the backing index.
	e.refresh(t, ds)
	status, ids, m := e.search(t, ds, "")
	if status != http.StatusOK || !slices.Equal(ids, []string{"a"}) || dig(m, "hits", "hits", "0", "_index") != first["_index"] {
		t.Fatalf("search %s: %d %v %v", ds, status, ids, m)
	}
	// The mapping is the template's, under the backing index's name.
	m = e.must(t, http.MethodGet, "/"+ds+"/_mapping", "")
	if dig(m, first["_index"].(string), "mappings", "properties", "message", "type") != "text" {
		t.Errorf("mapping of %s: %v", ds, m)
	}
}

func contractRefresh(t *testing.T, e *engine) {
	ds := e.dataStream(t, "refresh", `{"@timestamp":{"type":"date"}}`)
	e.bulk(t, fmt.Sprintf(`{"create":{"_index":%q,"_id":"1"}}`, ds), `{"@timestamp":"2026-11-21T10:00:00Z"}`)
	for _, path := range []string{"/" + ds + "/_refresh", "/_refresh"} {
		m := e.must(t, http.MethodPost, path, "")
		if n, _ := dig(m, "_shards", "successful").(float64); n < 1 || dig(m, "_shards", "failed") != float64(0) {
			t.Errorf("POST %s: %v, want _shards with successful >= 1 and failed 0", path, m)
		}
	}
	if n := e.count(t, ds, ""); n != 1 {
		t.Errorf("count after refresh %d, want 1", n)
	}
	missing := e.name("missing")
	status, m := e.do(t, http.MethodPost, "/"+missing+"/_refresh", "")
	e.wantError(t, status, m, http.StatusNotFound, same("index_not_found_exception"), "no such index ["+missing+"]")
}

func contractCount(t *testing.T, e *engine) {
	ds := e.dataStream(t, "count", `{"@timestamp":{"type":"date"},"level":{"type":"keyword"}}`)
	var lines []string
	for i, level := range []string{"info", "error", "info"} {
		lines = append(lines, fmt.Sprintf(`{"create":{"_index":%q,"_id":"%d"}}`, ds, i),
			fmt.Sprintf(`{"@timestamp":"2026-11-21T10:00:0%dZ","level":%q}`, i, level))
	}
	e.bulk(t, lines...)
	e.refresh(t, ds)
	if n := e.count(t, ds, ""); n != 3 {
		t.Errorf("count %d, want 3", n)
	}
	if n := e.count(t, ds, `{"query":{"term":{"level":"info"}}}`); n != 2 {
		t.Errorf("count of level info %d, want 2", n)
	}
	status, m := e.do(t, http.MethodGet, "/"+ds+"/_count", "")
	if status != http.StatusOK || !jsonEqual(t, m["_shards"], `{"total":1,"successful":1,"skipped":0,"failed":0}`) {
		t.Errorf("GET _count: %d %v, want _shards of one shard", status, m)
	}

	missing := e.name("missing")
	status, m = e.do(t, http.MethodGet, "/"+missing+"/_count", "")
	errObj := e.wantError(t, status, m, http.StatusNotFound, same("index_not_found_exception"), "no such index ["+missing+"]")
	if errObj["index"] != missing || errObj["resource.id"] != missing || errObj["resource.type"] != "index_or_alias" {
		t.Errorf("index_not_found_exception %v, want index and resource.id %s", errObj, missing)
	}
	for _, path := range []string{"/" + missing + "*/_count", "/" + missing + "/_count?ignore_unavailable=true"} {
		m := e.must(t, http.MethodGet, path, "")
		if m["count"] != float64(0) || dig(m, "_shards", "total") != float64(0) {
			t.Errorf("GET %s: %v, want count 0 over no shards", path, m)
		}
	}
}

func contractSearchDefaults(t *testing.T, e *engine) {
	ds := e.dataStream(t, "defaults", `{"@timestamp":{"type":"date"}}`)
	var lines []string
	docs := map[string]string{}
	for i := range 12 {
		id := fmt.Sprintf("d%02d", i)
		docs[id] = fmt.Sprintf(`{"@timestamp":"2026-11-21T10:00:%02dZ","n":%d,"tags":["a","b"],"nested":{"x":null}}`, i, i)
		lines = append(lines, fmt.Sprintf(`{"create":{"_index":%q,"_id":%q}}`, ds, id), docs[id])
	}
	m := e.bulk(t, lines...)
	backing := item(t, m, 0)["_index"]
	e.refresh(t, ds)

	status, ids, m := e.search(t, ds, "")
	if status != http.StatusOK || len(ids) != 10 {
		t.Fatalf("search without a body: %d, %d hits, want 10 (the default size): %v", status, len(ids), m)
	}
	if !jsonEqual(t, dig(m, "hits", "total"), `{"value":12,"relation":"eq"}`) || dig(m, "hits", "max_score") != float64(1) ||
		m["timed_out"] != false || dig(m, "_shards", "failed") != float64(0) {
		t.Errorf("search answer header: %v", m)
	}
	if _, ok := m["took"].(float64); !ok {
		t.Errorf("search answer without took: %v", m)
	}
	for i, h := range dig(m, "hits", "hits").([]any) {
		id := ids[i]
		if dig(h, "_index") != backing || dig(h, "_score") != float64(1) || !jsonEqual(t, dig(h, "_source"), docs[id]) {
			t.Errorf("hit %d: %v, want _index %v, _score 1 and the _source as sent", i, h, backing)
		}
	}

	// With a sort, hits carry their sort values and no score.
	_, ids, m = e.search(t, ds, `{"sort":[{"n":"desc"}],"size":1}`)
	if !slices.Equal(ids, []string{"d11"}) || dig(m, "hits", "max_score") != nil || dig(m, "hits", "hits", "0", "_score") != nil ||
		!jsonEqual(t, dig(m, "hits", "hits", "0", "sort"), `[11]`) {
		t.Errorf("sorted search: %v %v", ids, m)
	}
	// size 0 counts without hits.
	_, ids, m = e.search(t, ds, `{"size":0}`)
	if len(ids) != 0 || dig(m, "hits", "total", "value") != float64(12) {
		t.Errorf("size 0: %v %v", ids, m)
	}
}

func contractSearchQueries(t *testing.T, e *engine) {
	ds := e.dataStream(t, "queries", `{"@timestamp":{"type":"date"},"message":{"type":"text"},"level":{"type":"keyword"},"n":{"type":"long"}}`)
	docs := []string{
		`{"@timestamp":"2026-11-21T10:00:00Z","message":"GET /api 200 ok","level":"info","n":1}`,
		`{"@timestamp":"2026-11-21T10:01:00Z","message":"POST /api 500 Internal error","level":"error","n":5}`,
		`{"@timestamp":"2026-11-21T10:02:00Z","message":"GET /health 200 ok","level":"info","n":10}`,
		`{"@timestamp":"2026-11-21T10:03:00Z","message":"Disk almost full","level":"warn","n":20}`,
		`{"@timestamp":"2026-11-21T10:04:00Z","message":"GET /api 404 not found","level":"warn","n":50}`,
	}
	var lines []string
	for i, d := range docs {
		lines = append(lines, fmt.Sprintf(`{"create":{"_index":%q,"_id":"d%d"}}`, ds, i+1), d)
	}
	e.bulk(t, lines...)
	e.refresh(t, ds)

	// Queries whose hits are compared as sets (scores differ, see the README).
	matches := map[string]struct {
		query string
		want  []string
	}{
		"match is case-insensitive":    {`{"match":{"message":"get"}}`, []string{"d1", "d3", "d5"}},
		"match any word":               {`{"match":{"message":"api error"}}`, []string{"d1", "d2", "d5"}},
		"match every word":             {`{"match":{"message":{"query":"GET api","operator":"and"}}}`, []string{"d1", "d5"}},
		"term on keyword":              {`{"term":{"level":"warn"}}`, []string{"d4", "d5"}},
		"term on keyword is exact":     {`{"term":{"level":"WARN"}}`, nil},
		"term on text is not analyzed": {`{"term":{"message":"GET"}}`, nil},
		"term on a text token":         {`{"term":{"message":"get"}}`, []string{"d1", "d3", "d5"}},
		"term on long":                 {`{"term":{"n":"10"}}`, []string{"d3"}},
		"term on a missing field":      {`{"term":{"nothing":"x"}}`, nil},
		"terms":                        {`{"terms":{"level":["info","error"]}}`, []string{"d1", "d2", "d3"}},
		"range on long":                {`{"range":{"n":{"gt":5,"lte":20}}}`, []string{"d3", "d4"}},
		"range on date":                {`{"range":{"@timestamp":{"gte":"2026-11-21T10:02:00Z","lt":"2026-11-21T10:04:00Z"}}}`, []string{"d3", "d4"}},
		"range with date math":         {`{"range":{"@timestamp":{"gte":"2026-11-21T10:00:00Z||+3m"}}}`, []string{"d4", "d5"}},
		"range with rounding":          {`{"range":{"@timestamp":{"gt":"2026-11-21T10:01:30Z||/m"}}}`, []string{"d3", "d4", "d5"}},
		"bool":                         {`{"bool":{"must":[{"match":{"message":"get"}}],"filter":[{"range":{"n":{"gte":5}}}],"must_not":[{"term":{"level":"info"}}]}}`, []string{"d5"}},
		"bool should":                  {`{"bool":{"should":[{"term":{"level":"error"}},{"term":{"level":"warn"}}]}}`, []string{"d2", "d4", "d5"}},
		"bool should with filter":      {`{"bool":{"filter":{"range":{"n":{"lt":50}}},"should":[{"term":{"level":"warn"}}],"minimum_should_match":1}}`, []string{"d4"}},
	}
	for name, tc := range matches {
		t.Run(name, func(t *testing.T) {
			body := `{"query":` + tc.query + `}`
			status, ids, m := e.search(t, ds, body)
			slices.Sort(ids)
			if status != http.StatusOK || !slices.Equal(ids, tc.want) {
				t.Fatalf("search %s: %d %v, want %v: %v", body, status, ids, tc.want, m)
			}
			if n := e.count(t, ds, body); n != len(tc.want) {
				t.Errorf("count %s: %d, want %d", body, n, len(tc.want))
			}
		})
	}

	// Sorted searches, compared in order.
	sorted := map[string]struct {
		body  string
		want  []string
		sorts string // the hits' sort values, if given
	}{
		"sort desc":          {`{"sort":[{"n":"desc"}],"size":2}`, []string{"d5", "d4"}, `[[50],[20]]`},
		"sort asc, from":     {`{"sort":[{"n":{"order":"asc"}}],"size":2,"from":2}`, []string{"d3", "d4"}, `[[10],[20]]`},
		"sort by date":       {`{"sort":[{"@timestamp":"desc"}],"size":2}`, []string{"d5", "d4"}, `[[1795255440000],[1795255380000]]`},
		"sort by two fields": {`{"sort":[{"level":"asc"},{"n":"desc"}]}`, []string{"d2", "d3", "d1", "d5", "d4"}, `[["error",5],["info",10],["info",1],["warn",50],["warn",20]]`},
		"sort with a query":  {`{"query":{"term":{"level":"info"}},"sort":["n"]}`, []string{"d1", "d3"}, ""},
		"from past the end":  {`{"sort":["n"],"from":5}`, nil, ""},
	}
	for name, tc := range sorted {
		t.Run(name, func(t *testing.T) {
			status, ids, m := e.search(t, ds, tc.body)
			if status != http.StatusOK || !slices.Equal(ids, tc.want) {
				t.Fatalf("search %s: %d %v, want %v: %v", tc.body, status, ids, tc.want, m)
			}
			if dig(m, "hits", "total", "value") != float64(5) && !strings.Contains(tc.body, "query") {
				t.Errorf("total %v, want 5", dig(m, "hits", "total"))
			}
			if tc.sorts == "" {
				return
			}
			var got []any
			for _, h := range dig(m, "hits", "hits").([]any) {
				got = append(got, dig(h, "sort"))
			}
			if !jsonEqual(t, got, tc.sorts) {
				t.Errorf("sort values %v, want %s", got, tc.sorts)
			}
		})
	}
}

func contractSearchErrors(t *testing.T, e *engine) {
	ds := e.dataStream(t, "errors", `{"@timestamp":{"type":"date"},"message":{"type":"text"},"n":{"type":"long"}}`)
	e.bulk(t, fmt.Sprintf(`{"create":{"_index":%q,"_id":"1"}}`, ds), `{"@timestamp":"2026-11-21T10:00:00Z","message":"m","n":1}`)
	e.refresh(t, ds)

	// Errors raised while searching the shards: a search_phase_execution_exception
	// whose root cause is the error, with a reason that contains rootReason.
	shardErrors := map[string]struct {
		body, rootType, rootReason string
	}{
		"sort on text":            {`{"sort":["message"]}`, "illegal_argument_exception", "Text fields are not optimised for operations that require per-document field data"},
		"sort on a missing field": {`{"sort":["nothing"]}`, "query_shard_exception", "No mapping found for [nothing] in order to sort on"},
		"term that is no number":  {`{"query":{"term":{"n":"abc"}}}`, "query_shard_exception", `failed to create query: For input string: "abc"`},
	}
	for name, tc := range shardErrors {
		t.Run(name, func(t *testing.T) {
			status, _, m := e.search(t, ds, tc.body)
			errObj := e.wantError(t, status, m, http.StatusBadRequest, same("search_phase_execution_exception"), "all shards failed")
			root, _ := dig(errObj, "root_cause", "0").(map[string]any)
			if root["type"] != tc.rootType || !strings.Contains(fmt.Sprint(root["reason"]), tc.rootReason) {
				t.Errorf("root cause %v, want %s: %s", root, tc.rootType, tc.rootReason)
			}
			if dig(errObj, "phase") != "query" || dig(errObj, "failed_shards", "0", "reason", "type") != tc.rootType {
				t.Errorf("error %v, want phase query and failed_shards naming the cause", errObj)
			}
		})
	}

	// Errors in the request itself.
	requestErrors := map[string]struct {
		body   string
		typ    string
		reason string
	}{
		"negative size": {`{"size":-1}`, "illegal_argument_exception", "[size] parameter cannot be negative, found [-1]"},
		"negative from": {`{"from":-1}`, "illegal_argument_exception", "[from] parameter cannot be negative, found [-1]"},
		"unknown query": {`{"query":{"bogus":{}}}`, "parsing_exception", "unknown query [bogus]"},
		"unknown key":   {`{"bogus":1}`, "parsing_exception", "Unknown key for a VALUE_NUMBER in [bogus]."},
	}
	for name, tc := range requestErrors {
		t.Run(name, func(t *testing.T) {
			status, _, m := e.search(t, ds, tc.body)
			e.wantError(t, status, m, http.StatusBadRequest, same(tc.typ), tc.reason)
		})
	}

	missing := e.name("missing")
	status, _, m := e.search(t, missing, "")
	e.wantError(t, status, m, http.StatusNotFound, same("index_not_found_exception"), "no such index ["+missing+"]")
}

func contractDynamicMapping(t *testing.T, e *engine) {
	idx := e.name("dynamic") // a plain index, created on first write without a template
	m := e.bulk(t, fmt.Sprintf(`{"index":{"_index":%q,"_id":"1"}}`, idx),
		`{"count":5,"ratio":0.5,"big":1e3,"ok":true,"msg":"hello","when":"2026-11-21T10:00:00.123+01:00","day":"2026-11-21",`+
			`"numeric":"42","word":"2026","obj":{"inner":"x"},"list":[1,2],"nothing":null}`)
	wantCreated(t, item(t, m, 0), "1")
	if got := item(t, m, 0)["_index"]; got != idx {
		t.Errorf("_index %v, want %s", got, idx)
	}

	m = e.must(t, http.MethodGet, "/"+idx+"/_mapping", "")
	props, _ := dig(m, idx, "mappings", "properties").(map[string]any)
	text := `{"type":"text","fields":{"keyword":{"type":"keyword","ignore_above":256}}}`
	want := map[string]string{
		"count":   `{"type":"long"}`,
		"ratio":   `{"type":"float"}`,
		"big":     `{"type":"float"}`,
		"ok":      `{"type":"boolean"}`,
		"msg":     text,
		"when":    `{"type":"date"}`,
		"day":     `{"type":"date"}`,
		"numeric": text, // no numeric detection
		"word":    text, // nor dates from pure numbers
		"obj":     `{"properties":{"inner":` + text + `}}`,
		"list":    `{"type":"long"}`,
	}
	for field, w := range want {
		got, _ := props[field].(map[string]any)
		if !jsonEqual(t, got, w) {
			t.Errorf("mapping of %s: %v, want %s", field, props[field], w)
		}
	}
	if _, ok := props["nothing"]; ok || len(props) != len(want) {
		t.Errorf("mapped fields %v, want exactly %d (null maps nothing)", props, len(want))
	}

	// The first value fixed each type: later documents must fit it.
	m = e.bulk(t,
		fmt.Sprintf(`{"index":{"_index":%q,"_id":"2"}}`, idx), `{"count":"7","msg":12}`,
		fmt.Sprintf(`{"index":{"_index":%q,"_id":"3"}}`, idx), `{"count":"seven"}`,
		fmt.Sprintf(`{"index":{"_index":%q,"_id":"4"}}`, idx), `{"when":"yesterday"}`,
		fmt.Sprintf(`{"index":{"_index":%q,"_id":"5"}}`, idx), `{"obj":"flat"}`,
	)
	wantCreated(t, item(t, m, 0), "2")
	e.wantItemError(t, item(t, m, 1), http.StatusBadRequest, docParsing, "")
	e.wantItemError(t, item(t, m, 2), http.StatusBadRequest, docParsing, "")
	e.wantItemError(t, item(t, m, 3), http.StatusBadRequest, docParsing, "")

	e.refresh(t, idx)
	for query, want := range map[string][]string{
		`{"range":{"count":{"gte":6}}}`:                    {"2"},
		`{"term":{"msg":"hello"}}`:                         {"1"},
		`{"term":{"msg.keyword":"12"}}`:                    {"2"},
		`{"range":{"when":{"lt":"2026-11-21T09:30:00Z"}}}`: {"1"},
	} {
		status, ids, m := e.search(t, idx, `{"query":`+query+`}`)
		if status != http.StatusOK || !slices.Equal(ids, want) {
			t.Errorf("search %s: %d %v, want %v: %v", query, status, ids, want, m)
		}
	}
}

func contractIDs(t *testing.T, e *engine) {
	ds := e.dataStream(t, "ids", `{"@timestamp":{"type":"date"}}`)
	create := func(id string) string { return fmt.Sprintf(`{"create":{"_index":%q,"_id":%q}}`, ds, id) }
	doc := `{"@timestamp":"2026-11-21T10:00:00Z"}`
	longest := strings.Repeat("x", 512)
	ids := []string{"logs-0-17", "_starts-with-underscore", "with/slash and space", "ünïcödé", longest}
	var lines []string
	for _, id := range ids {
		lines = append(lines, create(id), doc)
	}
	lines = append(lines, create(""), doc, // an empty id fails its item only
		fmt.Sprintf(`{"create":{"_index":%q}}`, ds), doc, // no id: one is made up
		create("inside"), `{"@timestamp":"2026-11-21T10:00:00Z","_id":"x"}`) // _id is no field
	m := e.bulk(t, lines...)
	for i, id := range ids {
		wantCreated(t, item(t, m, i), id)
	}
	empty := item(t, m, len(ids))
	e.wantItemError(t, empty, http.StatusBadRequest, same("illegal_argument_exception"), "if _id is specified it must not be empty")
	if empty["_id"] != "" {
		t.Errorf("item with an empty _id answers _id %v, want \"\"", empty["_id"])
	}
	made := item(t, m, len(ids)+1)
	if id, _ := made["_id"].(string); made["status"] != float64(http.StatusCreated) || len(id) != 20 {
		t.Errorf("create without an id: %v, want 201 with a 20-character _id", made)
	}
	e.wantItemError(t, item(t, m, len(ids)+2), http.StatusBadRequest, docParsing, "")

	// An id over 512 bytes fails the whole request.
	status, m := esResult(t)(e.es.Bulk(strings.NewReader(create(longest+"y") + "\n" + doc + "\n")))
	e.wantError(t, status, m, http.StatusBadRequest, same("action_request_validation_exception"),
		"Validation Failed: 1: id ["+longest+"y] is too long, must be no longer than 512 bytes but was: 513;")

	e.refresh(t, ds)
	if n := e.count(t, ds, ""); n != len(ids)+1 {
		t.Errorf("count %d, want %d", n, len(ids)+1)
	}
	for _, id := range ids[:4] {
		if n := e.count(t, ds, fmt.Sprintf(`{"query":{"terms":{"_id":[%q]}}}`, id)); n != 1 {
			t.Errorf("documents with id %q: %d, want 1", id, n)
		}
	}
}

func contractMalformedBulk(t *testing.T, e *engine) {
	idx := e.name("malformed")
	tests := map[string]struct {
		body, typ, reason string
	}{
		"no body":           {"", "parse_exception", "request body is required"},
		"blank body":        {"\n", "action_request_validation_exception", "Validation Failed: 1: no requests added;"},
		"no final newline":  {`{"create":{"_index":"` + idx + `","_id":"1"}}` + "\n{}", "illegal_argument_exception", "The bulk request must be terminated by a newline [\\n]"},
		"action only":       {`{"create":{"_index":"` + idx + `","_id":"1"}}` + "\n", "action_request_validation_exception", "Validation Failed: 1: no requests added;"},
		"unknown action":    {`{"upsert":{"_index":"` + idx + `"}}` + "\n{}\n", "illegal_argument_exception", "Malformed action/metadata line [1], expected one of [create, delete, index, update] but found [upsert]"},
		"unknown parameter": {`{"create":{"_index":"` + idx + `","bogus":1}}` + "\n{}\n", "illegal_argument_exception", "Action/metadata line [1] contains an unknown parameter [bogus]"},
		"no index":          {`{"create":{"_id":"1"}}` + "\n{}\n", "action_request_validation_exception", "Validation Failed: 1: index is missing;"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			status, m := e.do(t, http.MethodPost, "/_bulk", tc.body)
			e.wantError(t, status, m, http.StatusBadRequest, same(tc.typ), tc.reason)
		})
	}
	// The last action without a source is dropped; the rest is done.
	m := e.bulk(t, fmt.Sprintf(`{"index":{"_index":%q,"_id":"1"}}`, idx), `{"a":1}`, fmt.Sprintf(`{"index":{"_index":%q,"_id":"2"}}`, idx))
	if items, _ := m["items"].([]any); len(items) != 1 {
		t.Fatalf("bulk with a last action without source: %v, want one item", m)
	}
	wantCreated(t, item(t, m, 0), "1")
	e.refresh(t, idx)
	if n := e.count(t, idx, ""); n != 1 {
		t.Errorf("after a last action without source: %d documents, want 1", n)
	}
}

func contractTemplates(t *testing.T, e *engine) {
	ds := e.dataStream(t, "templates", `{"@timestamp":{"type":"date"}}`) // priority 500

	// Two templates of the same priority may not match one name.
	overlap := ds + "-overlap"
	status, m := e.putTemplate(t, overlap, fmt.Sprintf(`{"index_patterns":[%q],"priority":500}`, ds+"*"))
	e.wantError(t, status, m, http.StatusBadRequest, same("illegal_argument_exception"),
		fmt.Sprintf("index template [%s] has index patterns [%s*] matching patterns from existing templates [%s] with patterns (%s => [%s]) "+
			"that have the same priority [500], multiple index templates may not match during index creation, please use a different priority",
			overlap, ds, ds, ds, ds))
	for name, body := range map[string]string{
		"no patterns":       `{"priority":1}`,
		"negative priority": fmt.Sprintf(`{"index_patterns":[%q],"priority":-1}`, overlap),
	} {
		status, m := e.putTemplate(t, overlap, body)
		want, reason := same("illegal_argument_exception"), "Required [index_patterns]"
		if name == "negative priority" {
			want, reason = same("action_request_validation_exception"), "Validation Failed: 1: index template priority must be >= 0;"
		}
		e.wantError(t, status, m, http.StatusBadRequest, want, reason)
	}

	e.bulk(t, fmt.Sprintf(`{"create":{"_index":%q}}`, ds), `{"@timestamp":"2026-11-21T10:00:00Z"}`)
	dataStreamTemplate := func() any {
		return dig(e.must(t, http.MethodGet, "/_data_stream/"+ds, ""), "data_streams", "0", "template")
	}
	if got := dataStreamTemplate(); got != ds {
		t.Errorf("data stream %s reports template %v, want %s", ds, got, ds)
	}

	higher := ds + "-higher"
	// A higher data stream template is taken; the data stream reports it.
	e.template(t, higher, fmt.Sprintf(`{"index_patterns":[%q],"priority":600,"data_stream":{}}`, ds))
	if got := dataStreamTemplate(); got != higher {
		t.Errorf("data stream %s reports template %v, want %s", ds, got, higher)
	}
	m = e.bulk(t, fmt.Sprintf(`{"create":{"_index":%q}}`, ds), `{"@timestamp":"2026-11-21T10:00:00Z"}`)
	if st := item(t, m, 0)["status"]; st != float64(http.StatusCreated) {
		t.Errorf("write after the template change: %v", m)
	}

	missing := ds + "-missing"
	status, m = e.do(t, http.MethodGet, "/_index_template/"+missing, "")
	e.wantError(t, status, m, http.StatusNotFound, same("resource_not_found_exception"), "index template matching ["+missing+"] not found")
	status, m = e.do(t, http.MethodDelete, "/_index_template/"+missing, "")
	e.wantError(t, status, m, http.StatusNotFound, same("index_template_missing_exception"), "index_template ["+missing+"] missing")
}

// contractCompatibilityMode: with EnableCompatibilityMode the Go client sends
// and accepts application/vnd.elasticsearch+json;compatible-with=8, which
// OpenSearch refuses unless devstack's proxy rewrites it.
func contractCompatibilityMode(t *testing.T, e *engine) {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	es, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{e.url}, Transport: tr, EnableCompatibilityMode: true})
	if err != nil {
		t.Fatal(err)
	}
	if status, m := esResult(t)(es.Info()); status != http.StatusOK {
		t.Fatalf("GET / in compatibility mode: %d %v", status, m)
	}
	idx := e.name("compat")
	status, m := esResult(t)(es.Bulk(strings.NewReader(fmt.Sprintf(`{"index":{"_index":%q,"_id":"1"}}`, idx)+"\n{\"a\":1}\n"),
		es.Bulk.WithRefresh("true")))
	if status != http.StatusOK || m["errors"] != false {
		t.Fatalf("bulk in compatibility mode: %d %v", status, m)
	}
	status, m = esResult(t)(es.Search(es.Search.WithIndex(idx), es.Search.WithBody(strings.NewReader(`{"query":{"term":{"a":1}}}`))))
	if status != http.StatusOK || dig(m, "hits", "total", "value") != float64(1) {
		t.Fatalf("search in compatibility mode: %d %v", status, m)
	}
}
