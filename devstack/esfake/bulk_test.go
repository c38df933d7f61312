package esfake_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/logpipe/logpipe/devstack/esfake"
)

func TestBulkIndexerCreateThenConflict(t *testing.T) {
	env := newTestServer(t, nil)
	const n = 50
	var ids []string
	docs := map[string]string{}
	for i := range n {
		id := fmt.Sprintf("logs-0-%d", i)
		ids = append(ids, id)
		docs[id] = fmt.Sprintf(`{"@timestamp":"2026-11-21T10:00:%02d.000Z","message":"line %d","job":"web-1"}`, i%60, i)
	}

	first := env.runBulk(t, "app", "create", ids, docs)
	if len(first.errs) > 0 || len(first.failed) > 0 || len(first.ok) != n {
		t.Fatalf("first bulk: %d ok, %d failed (%v), errors %v", len(first.ok), len(first.failed), first.failed, first.errs)
	}
	for _, r := range first.ok {
		if r.Status != http.StatusCreated || r.Result != "created" || r.Index != "app" || r.Version != 1 {
			t.Fatalf("item = %+v, want 201 created in app, version 1", r)
		}
	}

	// The documents are there, with the source as sent.
	status, got, answer := env.search(t, "app", `{"size":100,"sort":[{"_doc":"asc"}]}`)
	if status != http.StatusOK || len(got) != n {
		t.Fatalf("search: status %d, %d hits: %v", status, len(got), answer)
	}
	for i, id := range got {
		if id != ids[i] {
			t.Fatalf("hit %d = %s, want %s", i, id, ids[i])
		}
		src, _ := json.Marshal(dig(answer, "hits", "hits", fmt.Sprint(i), "_source"))
		var want, have map[string]any
		_ = json.Unmarshal([]byte(docs[id]), &want)
		_ = json.Unmarshal(src, &have)
		if fmt.Sprint(want) != fmt.Sprint(have) {
			t.Fatalf("source of %s = %s, want %s", id, src, docs[id])
		}
	}
	if d := env.srv.Docs("app"); len(d) != n || string(d[0].Source) != docs[d[0].ID] {
		t.Fatalf("Docs: %d docs, first %+v", len(d), d[0])
	}

	// The same ids again: every create is a version conflict.
	second := env.runBulk(t, "app", "create", ids, docs)
	if len(second.ok) != 0 || len(second.failed) != n {
		t.Fatalf("second bulk: %d ok, %d failed, want all %d to conflict", len(second.ok), len(second.failed), n)
	}
	for id, r := range second.failed {
		want := fmt.Sprintf("[%s]: version conflict, document already exists (current version [1])", id)
		if r.Status != http.StatusConflict || r.Error.Type != "version_conflict_engine_exception" || r.Error.Reason != want {
			t.Fatalf("item %s = %+v, want 409 version_conflict_engine_exception %q", id, r, want)
		}
	}
	if got := env.srv.Count("app"); got != n {
		t.Errorf("Count = %d, want %d", got, n)
	}
}

func TestBulkMappingConflictFailsOnlyThatItem(t *testing.T) {
	env := newTestServer(t, nil)
	setup := env.runBulk(t, "app", "create", []string{"a"}, map[string]string{
		"a": `{"n":1,"tag":"x","ok":true,"at":"2026-11-21T10:00:00Z","obj":{"k":"v"}}`,
	})
	if len(setup.ok) != 1 {
		t.Fatalf("setup failed: %+v %v", setup.failed, setup.errs)
	}

	tests := []struct {
		id, doc  string
		reason   string // "" for success
		causeHas string
	}{
		{"n-number-string", `{"n":"42"}`, "", ""}, // coerced, as Elasticsearch does
		{"n-word", `{"n":"abc"}`, `[1:6] failed to parse field [n] of type [long] in document with id 'n-word'. Preview of field's value: 'abc'`, `For input string: "abc"`},
		{"n-object", `{"n":{"a":1}}`, `[1:6] failed to parse field [n] of type [long] in document with id 'n-object'. Preview of field's value: '{a=1}'`, "START_OBJECT"},
		{"n-bool", `{"n":true}`, `[1:6] failed to parse field [n] of type [long] in document with id 'n-bool'. Preview of field's value: 'true'`, "not numeric"},
		{"tag-object", `{"tag":{"x":"y"}}`, `[1:8] failed to parse field [tag] of type [text] in document with id 'tag-object'. Preview of field's value: '{x=y}'`, ""},
		{"tag-number", `{"tag":5}`, "", ""},
		{"ok-word", `{"ok":"yes"}`, `failed to parse field [ok] of type [boolean]`, "only [true] or [false]"},
		{"at-bad", `{"at":"yesterday"}`, `failed to parse field [at] of type [date]`, "failed to parse date field [yesterday]"},
		{"obj-scalar", `{"obj":"flat"}`, `[1:8] object mapping for [obj] tried to parse field [obj] as object, but found a concrete value`, ""},
		{"new-field", `{"fresh":1.5}`, "", ""},
		{"bad-json", `{"n":}`, "failed to parse", ""},
		{"metadata-field", `{"_id":"x"}`, "Field [_id] is a metadata field and cannot be added inside a document", ""},
	}
	var ids []string
	docs := map[string]string{}
	for _, tc := range tests {
		ids = append(ids, tc.id)
		docs[tc.id] = tc.doc
	}
	res := env.runBulk(t, "app", "create", ids, docs)
	if len(res.errs) > 0 {
		t.Fatal(res.errs)
	}
	for _, tc := range tests {
		ok, isOK := res.ok[tc.id]
		failed, isFailed := res.failed[tc.id]
		if tc.reason == "" {
			if !isOK {
				t.Errorf("%s: failed with %+v, want success", tc.id, failed.Error)
			} else if ok.Status != http.StatusCreated {
				t.Errorf("%s: status %d", tc.id, ok.Status)
			}
			continue
		}
		if !isFailed {
			t.Errorf("%s: succeeded, want failure %q", tc.id, tc.reason)
			continue
		}
		wantType := "document_parsing_exception"
		if failed.Status != http.StatusBadRequest || failed.Error.Type != wantType || !strings.Contains(failed.Error.Reason, tc.reason) {
			t.Errorf("%s: got %d %s %q, want 400 %s containing %q", tc.id, failed.Status, failed.Error.Type, failed.Error.Reason, wantType, tc.reason)
		}
		if !strings.Contains(failed.Error.Cause.Reason, tc.causeHas) {
			t.Errorf("%s: caused_by %q, want it to contain %q", tc.id, failed.Error.Cause.Reason, tc.causeHas)
		}
	}
	// The good documents of the batch are stored and mapped.
	status, m := env.do(t, "GET", "/app/_mapping", "")
	if status != http.StatusOK {
		t.Fatalf("mapping: %d %v", status, m)
	}
	if got := dig(m, "app", "mappings", "properties", "fresh", "type"); got != "float" {
		t.Errorf("fresh mapped as %v, want float", got)
	}
	if got := dig(m, "app", "mappings", "properties", "tag", "fields", "keyword", "type"); got != "keyword" {
		t.Errorf("tag.keyword mapped as %v, want keyword", got)
	}
	if got := dig(m, "app", "mappings", "properties", "at", "type"); got != "date" {
		t.Errorf("at mapped as %v, want date (date detection)", got)
	}
	if got := env.srv.Count("app"); got != 4 {
		t.Errorf("Count = %d, want 4 (a and three good ones)", got)
	}
}

func TestBulkIndexOpAndAutoIDs(t *testing.T) {
	env := newTestServer(t, nil)
	body := `{"index":{"_index":"plain","_id":"1"}}
{"v":1}
{"index":{"_index":"plain","_id":"1"}}
{"v":2}
{"create":{"_index":"plain"}}
{"v":3}
{"delete":{"_index":"plain","_id":"nope"}}
`
	status, m := esResult(t)(env.es.Bulk(strings.NewReader(body), env.es.Bulk.WithRefresh("true")))
	if status != http.StatusOK {
		t.Fatalf("status %d: %v", status, m)
	}
	want := []struct {
		op, result string
		status     float64
		version    float64
	}{
		{"index", "created", 201, 1},
		{"index", "updated", 200, 2},
		{"create", "created", 201, 1},
		{"delete", "not_found", 404, 1},
	}
	for i, w := range want {
		item := dig(m, "items", fmt.Sprint(i), w.op)
		if dig(item, "result") != w.result || dig(item, "status") != w.status || dig(item, "_version") != w.version {
			t.Errorf("item %d = %v, want %s %s %v version %v", i, item, w.op, w.result, w.status, w.version)
		}
		if dig(item, "forced_refresh") != true && w.status < 300 {
			t.Errorf("item %d: no forced_refresh with ?refresh=true", i)
		}
	}
	if id, _ := dig(m, "items", "2", "create", "_id").(string); len(id) != 20 {
		t.Errorf("generated id %q, want 20 characters", id)
	}
	if got := dig(m, "errors"); got != false {
		t.Errorf("errors = %v; a not_found delete is not an error", got)
	}
	if d := env.srv.Docs("plain"); len(d) != 2 || string(d[0].Source) != `{"v":2}` {
		t.Errorf("Docs = %+v", d)
	}
}

func TestBulkMalformedRequests(t *testing.T) {
	env := newTestServer(t, nil)
	tests := map[string]struct {
		path, body string
		errType    string
		reasonHas  string
	}{
		"no final newline":  {"/_bulk", `{"create":{"_index":"a","_id":"1"}}` + "\n" + `{"a":1}`, "illegal_argument_exception", "must be terminated by a newline"},
		"invalid json":      {"/_bulk", "{\"create\":\n{}\n", "x_content_parse_exception", "[1:"},
		"unknown action":    {"/_bulk", `{"upsert":{"_index":"a"}}` + "\n{}\n", "illegal_argument_exception", "expected one of [create, delete, index, update] but found [upsert]"},
		"unknown parameter": {"/_bulk", `{"create":{"_index":"a","_type":"doc"}}` + "\n{}\n", "illegal_argument_exception", "contains an unknown parameter [_type]"},
		"not an object":     {"/_bulk", `"create"` + "\n{}\n", "illegal_argument_exception", "expected START_OBJECT or END_OBJECT but found [VALUE_STRING]"},
		"missing index":     {"/_bulk", `{"create":{"_id":"1"}}` + "\n{}\n", "action_request_validation_exception", "index is missing"},
		"blank body":        {"/_bulk", "\n", "action_request_validation_exception", "no requests added"},
		"no body":           {"/_bulk", "", "parse_exception", "request body is required"},
		"missing source":    {"/x/_bulk", `{"create":{"_id":"1"}}` + "\n", "action_request_validation_exception", "no requests added"},
		"delete without id": {"/_bulk", `{"delete":{"_index":"a","_id":""}}` + "\n", "action_request_validation_exception", "id is missing"},
		"bad refresh":       {"/_bulk?refresh=soon", `{"create":{"_index":"a"}}` + "\n{}\n", "illegal_argument_exception", "Unknown value for refresh: [soon]"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			status, m := env.do(t, "POST", tc.path, tc.body)
			if status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %v", status, m)
			}
			if got := dig(m, "error", "type"); got != tc.errType {
				t.Errorf("type %v, want %s: %v", got, tc.errType, m)
			}
			if reason, _ := dig(m, "error", "reason").(string); !strings.Contains(reason, tc.reasonHas) {
				t.Errorf("reason %q, want it to contain %q", reason, tc.reasonHas)
			}
		})
	}
	if n := env.srv.Count("*"); n != 0 {
		t.Errorf("malformed requests stored %d documents", n)
	}
}

func TestBulkDiscard(t *testing.T) {
	env := newTestServer(t, nil, esfake.WithDiscard())
	putTemplate(t, env, "logpipe", `{"index_patterns":["logs-logpipe-*"],"priority":200,"data_stream":{}}`)
	body := `{"create":{"_index":"logs-logpipe-default","_id":"a"}}
{"@timestamp":"2026-11-21T10:00:00Z"}
{"create":{"_index":"logs-logpipe-default","_id":"a"}}
{"@timestamp":"2026-11-21T10:00:00Z"}
{"index":{"_index":"logs-logpipe-default","_id":"b"}}
{"@timestamp":"2026-11-21T10:00:00Z"}
{"create":{"_index":"plain","_id":"c"}}
not json
`
	status, m := esResult(t)(env.es.Bulk(strings.NewReader(body)))
	if status != http.StatusOK {
		t.Fatalf("status %d: %v", status, m)
	}
	backing := ".ds-logs-logpipe-default-2026.11.21-000001"
	for i, want := range []struct {
		op, index string
		status    float64
	}{
		{"create", backing, 201},
		{"create", backing, 201}, // nothing is stored, so nothing conflicts
		{"index", "logs-logpipe-default", 400},
		{"create", "plain", 400},
	} {
		item := dig(m, "items", fmt.Sprint(i), want.op)
		if dig(item, "_index") != want.index || dig(item, "status") != want.status {
			t.Errorf("item %d = %v, want %s %s %v", i, item, want.op, want.index, want.status)
		}
	}
	if n := env.srv.Count("*"); n != 0 {
		t.Errorf("discard mode stored %d documents", n)
	}
}

func TestSingleDocumentAPI(t *testing.T) {
	env := newTestServer(t, nil)
	status, m := esResult(t)(env.es.Create("docs", "1", strings.NewReader(`{"a":1}`)))
	if status != http.StatusCreated || m["result"] != "created" {
		t.Fatalf("create: %d %v", status, m)
	}
	status, m = esResult(t)(env.es.Create("docs", "1", strings.NewReader(`{"a":1}`)))
	if status != http.StatusConflict || dig(m, "error", "type") != "version_conflict_engine_exception" {
		t.Fatalf("second create: %d %v", status, m)
	}
	status, m = esResult(t)(env.es.Get("docs", "1"))
	if status != http.StatusOK || dig(m, "_source", "a") != float64(1) || m["found"] != true {
		t.Fatalf("get: %d %v", status, m)
	}
	status, m = esResult(t)(env.es.Get("docs", "2"))
	if status != http.StatusNotFound || m["found"] != false {
		t.Fatalf("get missing: %d %v", status, m)
	}
	status, m = esResult(t)(env.es.Index("docs", strings.NewReader(`{"a":"x"}`), env.es.Index.WithDocumentID("3")))
	if status != http.StatusBadRequest || dig(m, "error", "type") != "document_parsing_exception" {
		t.Fatalf("index with a mapping conflict: %d %v", status, m)
	}
}
