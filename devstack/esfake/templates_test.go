package esfake_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

func putTemplate(t testing.TB, env *testEnv, name, body string) {
	t.Helper()
	status, m := esResult(t)(env.es.Indices.PutIndexTemplate(name, strings.NewReader(body)))
	if status != http.StatusOK || m["acknowledged"] != true {
		t.Fatalf("put template %s: %d %v", name, status, m)
	}
}

const logpipeTemplate = `{
  "index_patterns": ["logs-logpipe-*"],
  "priority": 200,
  "data_stream": {},
  "template": {
    "mappings": {
      "dynamic_templates": [{"labels": {"path_match": "labels.*", "mapping": {"type": "keyword"}}}],
      "properties": {
        "@timestamp": {"type": "date"},
        "message": {"type": "text"},
        "job": {"type": "keyword"},
        "host": {"properties": {"name": {"type": "keyword"}}},
        "log": {"properties": {"offset": {"type": "long"}, "file": {"properties": {"path": {"type": "keyword"}}}}},
        "kafka": {"properties": {"topic": {"type": "keyword"}, "partition": {"type": "integer"}, "offset": {"type": "long"}}},
        "json": {"type": "flattened"}
      }
    }
  }
}`

func TestIndexTemplatePutGetExists(t *testing.T) {
	env := newTestServer(t, nil)
	putTemplate(t, env, "logpipe", logpipeTemplate)

	status, m := esResult(t)(env.es.Indices.GetIndexTemplate(env.es.Indices.GetIndexTemplate.WithName("logpipe")))
	if status != http.StatusOK {
		t.Fatalf("get: %d %v", status, m)
	}
	tmpl := dig(m, "index_templates", "0")
	if dig(tmpl, "name") != "logpipe" ||
		dig(tmpl, "index_template", "index_patterns", "0") != "logs-logpipe-*" ||
		dig(tmpl, "index_template", "priority") != float64(200) ||
		dig(tmpl, "index_template", "template", "mappings", "properties", "job", "type") != "keyword" ||
		dig(tmpl, "index_template", "data_stream", "hidden") != false {
		t.Errorf("template = %v", tmpl)
	}

	res, err := env.es.Indices.ExistsIndexTemplate("logpipe")
	if err != nil || res.StatusCode != http.StatusOK {
		t.Errorf("exists: %v %v", res, err)
	}
	res.Body.Close()
	res, err = env.es.Indices.ExistsIndexTemplate("none")
	if err != nil || res.StatusCode != http.StatusNotFound {
		t.Errorf("exists for a missing template: %v %v", res, err)
	}
	res.Body.Close()

	// Elasticsearch refuses two templates that could both match a name at
	// the same priority.
	status, m = esResult(t)(env.es.Indices.PutIndexTemplate("other", strings.NewReader(`{"index_patterns":["logs-*"],"priority":200}`)))
	if status != http.StatusBadRequest || !strings.Contains(fmt.Sprint(dig(m, "error", "reason")), "have the same priority [200]") {
		t.Errorf("overlapping template: %d %v", status, m)
	}
	// ... and mappings with unknown types.
	status, m = esResult(t)(env.es.Indices.PutIndexTemplate("bad", strings.NewReader(`{"index_patterns":["bad-*"],"template":{"mappings":{"properties":{"x":{"type":"strange"}}}}}`)))
	if status != http.StatusBadRequest || dig(m, "error", "type") != "mapper_parsing_exception" {
		t.Errorf("bad mapping: %d %v", status, m)
	}
}

func TestDataStreamCreatedOnFirstWrite(t *testing.T) {
	env := newTestServer(t, nil)
	putTemplate(t, env, "logpipe", logpipeTemplate)

	const ds = "logs-logpipe-default"
	const backing = ".ds-logs-logpipe-default-2026.11.21-000001"
	status, _ := env.do(t, "GET", "/_data_stream/"+ds, "")
	if status != http.StatusNotFound {
		t.Fatalf("data stream exists before any write: %d", status)
	}
	docs := map[string]string{
		"logs-0-1": `{"@timestamp":"2026-11-21T10:00:00.000001Z","message":"GET /api 200","job":"web-1","host":{"name":"a"},"log":{"offset":1},"kafka":{"topic":"logs","partition":0,"offset":1},"labels":{"env":"dev"},"json":{"status":200,"user":{"id":"u1"}}}`,
		"logs-0-2": `{"@timestamp":"2026-11-21T10:00:01Z","message":"POST /api 500","job":"web-1","log":{"offset":"not a number"}}`,
		"logs-0-3": `{"message":"no timestamp","job":"web-1"}`,
	}
	res := env.runBulk(t, ds, "create", []string{"logs-0-1", "logs-0-2", "logs-0-3"}, docs)
	if ok := res.ok["logs-0-1"]; ok.Index != backing || ok.Status != http.StatusCreated {
		t.Fatalf("first item = %+v, want 201 in %s", ok, backing)
	}
	if f := res.failed["logs-0-2"]; f.Status != 400 || f.Index != backing || !strings.Contains(f.Error.Reason, "failed to parse field [log.offset] of type [long]") {
		t.Errorf("mapping conflict item = %+v", f)
	}
	if f := res.failed["logs-0-3"]; f.Status != 400 || !strings.Contains(f.Error.Reason, "data stream timestamp field [@timestamp] is missing") {
		t.Errorf("missing timestamp item = %+v", f)
	}

	status, m := env.do(t, "GET", "/_data_stream/"+ds, "")
	if status != http.StatusOK || dig(m, "data_streams", "0", "indices", "0", "index_name") != backing ||
		dig(m, "data_streams", "0", "template") != "logpipe" || dig(m, "data_streams", "0", "timestamp_field", "name") != "@timestamp" {
		t.Fatalf("data stream: %d %v", status, m)
	}
	// The backing index has the template's mappings and the dynamic ones.
	status, m = env.do(t, "GET", "/"+ds+"/_mapping", "")
	props := dig(m, backing, "mappings", "properties")
	if status != http.StatusOK || dig(props, "kafka", "properties", "partition", "type") != "integer" ||
		dig(props, "labels", "properties", "env", "type") != "keyword" || dig(props, "json", "type") != "flattened" {
		t.Errorf("mapping: %d %v", status, m)
	}
	// Data streams take only create.
	status, m = esResult(t)(env.es.Bulk(strings.NewReader(`{"index":{"_index":"` + ds + `","_id":"x"}}` + "\n" + `{"@timestamp":"2026-11-21T10:00:00Z"}` + "\n")))
	if status != http.StatusOK || dig(m, "items", "0", "index", "status") != float64(400) ||
		dig(m, "items", "0", "index", "error", "reason") != "only write ops with an op_type of create are allowed in data streams" {
		t.Errorf("index op on a data stream: %d %v", status, m)
	}
	// Searches see the data stream, its backing index and patterns alike.
	for _, target := range []string{ds, backing, "logs-*", "logs-logpipe-*,other-*"} {
		_, ids, ans := env.search(t, target, `{"query":{"term":{"labels.env":"dev"}}}`)
		if len(ids) != 1 || ids[0] != "logs-0-1" || dig(ans, "hits", "hits", "0", "_index") != backing {
			t.Errorf("search %s: %v", target, ans)
		}
	}
	_, ids, _ := env.search(t, ds, `{"query":{"term":{"json.user.id":"u1"}}}`)
	if len(ids) != 1 {
		t.Errorf("flattened key search found %v", ids)
	}
	if got := env.srv.Count(ds); got != 1 {
		t.Errorf("Count = %d", got)
	}
}

func TestBuiltinLogsTemplateOutranksLowPriorityTemplates(t *testing.T) {
	env := newTestServer(t, nil)
	// Priority 0 loses to the built-in logs template (priority 100) for
	// names matching logs-*-*, as in a default Elasticsearch 8.
	putTemplate(t, env, "low", `{"index_patterns":["logs-app-*"],"data_stream":{},"template":{"mappings":{"properties":{"n":{"type":"long"}}}}}`)
	res := env.runBulk(t, "logs-app-default", "create", []string{"1", "2"}, map[string]string{
		"1": `{"@timestamp":"2026-11-21T10:00:00Z","n":"text","message":"hello"}`,
		"2": `{"@timestamp":"2026-11-21T10:00:00Z","n":"more text"}`,
	})
	if len(res.ok) != 2 {
		t.Fatalf("bulk: %+v %v", res.failed, res.errs)
	}
	status, m := env.do(t, "GET", "/_data_stream/logs-app-default", "")
	if status != http.StatusOK || dig(m, "data_streams", "0", "template") != "logs" {
		t.Errorf("data stream made from %v, want the built-in logs template", dig(m, "data_streams", "0", "template"))
	}
	_, m = env.do(t, "GET", "/logs-app-default/_mapping", "")
	for backing := range m {
		props := dig(m, backing, "mappings", "properties")
		if dig(props, "n", "type") != "keyword" || dig(props, "message", "type") != "match_only_text" {
			t.Errorf("mapping from the built-in template: %v", props)
		}
	}
}
