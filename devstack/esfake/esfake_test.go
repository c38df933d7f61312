package esfake_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/logpipe/logpipe/devstack/esfake"
)

// Tests of what the contract cases cannot cover, because only esfake has
// it (WithDiscard, Docs, Count) or because it needs esfake's own view
// (the mapping after a refused document).

func putTemplate(t testing.TB, env *testEnv, name, body string) {
	t.Helper()
	if status, m := env.do(t, http.MethodPut, "/_index_template/"+name, body); status != http.StatusOK {
		t.Fatalf("PUT /_index_template/%s: %d %v", name, status, m)
	}
}

// logpipeTemplate maps as transfer's template does (configs/index-template.json).
const logpipeTemplate = `{
  "index_patterns": ["logs-logpipe-*"],
  "priority": 200,
  "data_stream": {},
  "template": {
    "mappings": {
      "properties": {
        "@timestamp": {"type": "date"},
        "message": {"type": "text"},
        "job": {"type": "keyword"},
        "json": {"type": "flattened"},
        "labels": {"type": "flattened"},
        "log": {"properties": {"offset": {"type": "long"}, "file": {"properties": {"path": {"type": "keyword"}}}}},
        "kafka": {"properties": {"partition": {"type": "integer"}, "offset": {"type": "long"}}}
      }
    }
  }
}`

// TestFlattened: json and labels take any keys and any types, stay one
// field in the mapping, and are searched by exact value, as strings.
func TestFlattened(t *testing.T) {
	env := newTestServer(t, nil)
	putTemplate(t, env, "logpipe", logpipeTemplate)
	docs := map[string]string{
		"1": `{"@timestamp":"2026-11-21T10:00:00Z","json":{"status":200,"req":{"path":"/a"}},"labels":{"env":"prod"}}`,
		"2": `{"@timestamp":"2026-11-21T10:00:01Z","json":{"status":"ok","list":[1,"x"]},"labels":{"env":"dev","team-a":"x"}}`,
	}
	res := env.runBulk(t, "logs-logpipe-default", "create", []string{"1", "2"}, docs)
	if len(res.ok) != 2 {
		t.Fatalf("bulk: failed %v errors %v", res.failed, res.errs)
	}
	for query, want := range map[string][]string{
		`{"term":{"json.status":200}}`:          {"1"},
		`{"term":{"json.status":"200"}}`:        {"1"},
		`{"term":{"json.status":"ok"}}`:         {"2"},
		`{"match":{"json.req.path":"/a"}}`:      {"1"},
		`{"term":{"json.list":"x"}}`:            {"2"},
		`{"term":{"json":"ok"}}`:                {"2"},
		`{"terms":{"labels.env":["prod"]}}`:     {"1"},
		`{"term":{"labels.team-a":"x"}}`:        {"2"},
		`{"range":{"json.status":{"gte":"o"}}}`: {"2"},
	} {
		status, ids, m := env.search(t, "logs-logpipe-default", `{"query":`+query+`}`)
		slices.Sort(ids)
		if status != http.StatusOK || !slices.Equal(ids, want) {
			t.Errorf("%s: %d %v, want %v: %v", query, status, ids, want, m)
		}
	}
	status, m := env.do(t, http.MethodGet, "/logs-logpipe-default/_mapping", "")
	for backing := range m {
		if props := dig(m, backing, "mappings", "properties", "json"); status != http.StatusOK || len(props.(map[string]any)) != 1 {
			t.Errorf("json mapped %v, want one flattened field", props)
		}
	}
}

// TestRefusedDocumentLeavesMapping: a document refused for one value adds
// none of its new fields to the mapping.
func TestRefusedDocumentLeavesMapping(t *testing.T) {
	env := newTestServer(t, nil)
	res := env.runBulk(t, "plain", "index", []string{"1", "2"}, map[string]string{
		"1": `{"n":1}`,
		"2": `{"fresh":"x","n":"abc"}`,
	})
	if len(res.ok) != 1 || res.failed["2"].Error.Type != "document_parsing_exception" {
		t.Fatalf("ok %v failed %+v", res.ok, res.failed)
	}
	_, m := env.do(t, http.MethodGet, "/plain/_mapping", "")
	if props, _ := dig(m, "plain", "mappings", "properties").(map[string]any); len(props) != 1 || props["n"] == nil {
		t.Errorf("mapping after the refused document: %v, want n alone", props)
	}
}

// TestDiscard: WithDiscard acknowledges what it would index and keeps
// nothing; a source that is no JSON object fails its item.
func TestDiscard(t *testing.T) {
	env := newTestServer(t, nil, esfake.WithDiscard())
	res := env.runBulk(t, "x", "create", []string{"1", "2"}, map[string]string{"1": `{"a":1}`, "2": `[1]`})
	if len(res.ok) != 1 || res.failed["2"].Status != http.StatusBadRequest {
		t.Errorf("ok %v failed %+v", res.ok, res.failed)
	}
	if n := env.srv.Count("*"); n != 0 {
		t.Errorf("Count = %d, want 0", n)
	}
}

// TestUnknownAPI: what esfake leaves out is refused with an error that
// names it, never answered as if done.
func TestUnknownAPI(t *testing.T) {
	env := newTestServer(t, nil)
	for _, tc := range []struct{ method, path, body, want string }{
		{http.MethodPost, "/x/_close", "", "no handler found for uri [/x/_close]"},
		{http.MethodPut, "/x/_settings", `{"index.blocks.write":true}`, "Incorrect HTTP method"},
		{http.MethodPost, "/x/_search?q=a", "", "contains unrecognized parameter: [q]"},
		{http.MethodPost, "/_bulk", `{"delete":{"_index":"x","_id":"1"}}` + "\n", "does not support the bulk [delete] action"},
		{http.MethodPost, "/x/_search", `{"query":{"exists":{"field":"a"}}}`, "unknown query [exists]"},
	} {
		status, m := env.do(t, tc.method, tc.path, tc.body)
		if status < 400 || !strings.Contains(strings.Join([]string{toString(dig(m, "error", "reason")), toString(m["error"])}, " "), tc.want) {
			t.Errorf("%s %s: %d %v, want an error saying %q", tc.method, tc.path, status, m, tc.want)
		}
	}
}

func toString(v any) string { s, _ := v.(string); return s }
