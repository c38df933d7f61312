package esfake_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/logpipe/logpipe/devstack/esfake"
)

// step is one request of a scripted scenario and what its answer must hold.
type step struct {
	method, path, body string
	status             int
	want               map[string]any // path in the answer, such as "error/type" → value
}

func runSteps(t *testing.T, env *testEnv, steps []step) {
	t.Helper()
	for i, s := range steps {
		status, m := env.do(t, s.method, s.path, s.body)
		if status != s.status {
			t.Fatalf("step %d %s %s: status %d, want %d: %v", i, s.method, s.path, status, s.status, m)
		}
		for path, want := range s.want {
			if got := dig(m, strings.Split(path, "/")...); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("step %d %s %s: %s = %v, want %v", i, s.method, s.path, path, got, want)
			}
		}
	}
}

func TestIndexAndDataStreamManagement(t *testing.T) {
	env := newTestServer(t, nil)
	backing := ".ds-logs-x-default-2026.11.21-000001"
	runSteps(t, env, []step{
		{"GET", "/_cluster/health", "", 200, map[string]any{"status": "green"}},
		{"PUT", "/orders", `{"mappings":{"properties":{"n":{"type":"integer"}}},"settings":{"number_of_shards":1}}`, 200,
			map[string]any{"acknowledged": true, "index": "orders"}},
		{"PUT", "/orders", `{}`, 400, map[string]any{"error/type": "resource_already_exists_exception"}},
		{"PUT", "/Orders", `{}`, 400, map[string]any{"error/type": "invalid_index_name_exception", "error/reason": "Invalid index name [Orders], must be lowercase"}},
		{"HEAD", "/orders", "", 200, nil},
		{"HEAD", "/nope", "", 404, nil},
		{"GET", "/orders", "", 200, map[string]any{"orders/mappings/properties/n/type": "integer"}},
		{"PUT", "/orders/_doc/1?refresh=true", `{"n":3000000000}`, 400, map[string]any{
			"error/type": "document_parsing_exception", "error/caused_by/reason": "Value [3000000000] is out of range for an integer"}},
		{"PUT", "/orders/_doc/1", `{"n":"7.9"}`, 201, map[string]any{"result": "created", "_seq_no": 0}},
		{"GET", "/orders/_search", `{"query":{"term":{"n":7}}}`, 200, map[string]any{"hits/total/value": 1}},
		{"POST", "/_refresh", "", 200, map[string]any{"_shards/failed": 0}},
		{"POST", "/orders/_refresh", "", 200, map[string]any{"_shards/total": 1}},
		{"DELETE", "/orders/_doc/1", "", 200, map[string]any{"result": "deleted", "_version": 2}},
		{"DELETE", "/orders", "", 200, map[string]any{"acknowledged": true}},
		{"GET", "/orders/_count", "", 404, map[string]any{"error/type": "index_not_found_exception"}},

		// Data streams by hand, from a template that uses a component.
		{"PUT", "/_component_template/base", `{"template":{"mappings":{"properties":{"host":{"properties":{"name":{"type":"keyword"}}}}}}}`, 200, nil},
		{"PUT", "/_index_template/x", `{"index_patterns":["logs-x-*"],"priority":150,"composed_of":["base","missing"],"data_stream":{}}`, 400,
			map[string]any{"error/type": "invalid_index_template_exception"}},
		{"PUT", "/_index_template/x", `{"index_patterns":["logs-x-*"],"priority":150,"composed_of":["base"],"data_stream":{}}`, 200, nil},
		{"GET", "/_component_template/base", "", 200, map[string]any{"component_templates/0/name": "base"}},
		{"DELETE", "/_component_template/base", "", 400, map[string]any{"error/type": "illegal_argument_exception"}},
		{"PUT", "/_data_stream/logs-x-default", "", 200, map[string]any{"acknowledged": true}},
		{"PUT", "/_data_stream/logs-x-default", "", 400, map[string]any{"error/type": "resource_already_exists_exception"}},
		{"PUT", "/_data_stream/other", "", 400, map[string]any{"error/reason": "no matching index template found for data stream [other]"}},
		{"PUT", "/logs-x-other", "", 400, map[string]any{"error/type": "illegal_argument_exception"}},
		{"GET", "/logs-x-default/_mapping", "", 200, map[string]any{
			backing + "/mappings/properties/host/properties/name/type": "keyword",
			backing + "/mappings/_data_stream_timestamp/enabled":       true,
		}},
		{"POST", "/logs-x-default/_doc", `{"@timestamp":"2026-11-21T10:00:00Z"}`, 201, map[string]any{"_index": backing}},
		{"PUT", "/" + backing + "/_doc/1", `{"@timestamp":"2026-11-21T10:00:00Z"}`, 400, map[string]any{"error/type": "illegal_argument_exception"}},
		{"GET", "/logs-x-default/_doc/1", "", 400, map[string]any{"error/type": "illegal_argument_exception"}},
		{"GET", "/_data_stream", "", 200, map[string]any{"data_streams/0/name": "logs-x-default", "data_streams/0/template": "x"}},
		// The built-in logs template also matches logs-x-default, so x may
		// go (Elasticsearch 8 refuses only templates a data stream needs
		// alone) and the data stream then reports the built-in one.
		{"DELETE", "/_index_template/x", "", 200, nil},
		{"GET", "/_data_stream", "", 200, map[string]any{"data_streams/0/template": "logs"}},
		{"DELETE", "/_index_template/logs", "", 400, map[string]any{
			"error/reason": "unable to remove composable templates [logs] as they are in use by a data streams [logs-x-default]"}},
		{"DELETE", "/_data_stream/logs-x-default", "", 200, nil},
		{"GET", "/_data_stream/logs-x-default", "", 404, map[string]any{"error/type": "index_not_found_exception"}},
		{"DELETE", "/_index_template/x", "", 404, map[string]any{"error/type": "index_template_missing_exception", "error/reason": "index_template [x] missing"}},
	})
}

func TestMappingFeatures(t *testing.T) {
	env := newTestServer(t, nil)
	putTemplate(t, env, "strict", `{"index_patterns":["strict-*"],"template":{
	  "settings":{"index.mapping.total_fields.limit":8},
	  "mappings":{"dynamic":"strict","properties":{
	    "msg":{"type":"text","fields":{"raw":{"type":"keyword","ignore_above":5},"len":{"type":"long","ignore_malformed":true}}},
	    "free":{"type":"object","dynamic":true},
	    "off":{"type":"object","dynamic":false},
	    "skip":{"type":"object","enabled":false},
	    "when":{"type":"date","format":"yyyy-MM-dd HH:mm:ss"}
	  }}}}`)
	runSteps(t, env, []step{
		{"PUT", "/strict-1/_doc/1", `{"msg":"short"}`, 201, nil},
		{"PUT", "/strict-1/_doc/2", `{"msg":"much longer text"}`, 201, nil},
		{"PUT", "/strict-1/_doc/3", `{"other":1}`, 400, map[string]any{
			"error/type":   "strict_dynamic_mapping_exception",
			"error/reason": "[1:10] mapping set to strict, dynamic introduction of [other] within [_doc] is not allowed"}},
		{"PUT", "/strict-1/_doc/4", `{"off":{"a":1,"b":{"c":2}},"skip":{"x":[1,{"y":"z"}]},"when":"2026-11-21 10:00:00"}`, 201, nil},
		{"PUT", "/strict-1/_doc/5", `{"when":"2026-11-21T10:00:00Z"}`, 400, map[string]any{
			"error/caused_by/reason": "failed to parse date field [2026-11-21T10:00:00Z] with format [yyyy-MM-dd HH:mm:ss]"}},
		{"PUT", "/strict-1/_doc/6", `{"free":{"a":1}}`, 201, nil},
		{"PUT", "/strict-1/_doc/7", `{"free":{"b":1,"c":2}}`, 400, map[string]any{
			"error/caused_by/reason": "Limit of total fields [8] has been exceeded while adding new fields [2]"}},
		{"GET", "/strict-1/_count", `{"query":{"term":{"msg.raw":"short"}}}`, 200, map[string]any{"count": 1}},
		{"GET", "/strict-1/_count", `{"query":{"term":{"msg.raw":"much longer text"}}}`, 200, map[string]any{"count": 0}},
		{"GET", "/strict-1/_count", `{"query":{"match":{"msg":"LONGER"}}}`, 200, map[string]any{"count": 1}},
		{"GET", "/strict-1/_count", `{"query":{"exists":{"field":"off.a"}}}`, 200, map[string]any{"count": 0}},
		{"GET", "/strict-1/_count", `{"query":{"range":{"when":{"gte":"2026-11-21 09:00:00"}}}}`, 200, map[string]any{"count": 1}},
		{"GET", "/strict-1/_mapping", "", 200, map[string]any{
			"strict-1/mappings/dynamic": "strict", "strict-1/mappings/properties/free/properties/a/type": "long"}},
	})
}

// TestDynamicDateFormats: a mapping's dynamic_date_formats replace the
// formats date detection tries (the defaults are in the contract tests).
func TestDynamicDateFormats(t *testing.T) {
	env := newTestServer(t, nil)
	putTemplate(t, env, "dates", `{"index_patterns":["dates-*"],"template":{
	  "mappings":{"dynamic_date_formats":["dd.MM.yyyy"],
	    "dynamic_templates":[{"dates_as_strings":{"match":"s_*","match_mapping_type":"date","mapping":{"type":"date"}}}]}}}`)
	runSteps(t, env, []step{
		{"PUT", "/dates-1/_doc/1", `{"a":"21.11.2026","b":"2026-11-21","s_c":"22.11.2026"}`, 201, nil},
		{"GET", "/dates-1/_mapping", "", 200, map[string]any{
			"dates-1/mappings/properties/a/type":     "date",
			"dates-1/mappings/properties/a/format":   "dd.MM.yyyy",
			"dates-1/mappings/properties/b/type":     "text",
			"dates-1/mappings/properties/s_c/format": "dd.MM.yyyy"}},
		{"GET", "/dates-1/_count", `{"query":{"range":{"a":{"gte":"20.11.2026"}}}}`, 200, map[string]any{"count": 1}},
		{"PUT", "/other/_doc/1", `{"a":"2026/11/21"}`, 201, nil},
		{"PUT", "/other/_doc/2", `{"a":"not a date"}`, 400, map[string]any{"error/type": "document_parsing_exception"}},
	})
}

func TestWithoutBuiltinTemplates(t *testing.T) {
	env := newTestServer(t, nil, esfake.WithoutBuiltinTemplates())
	runSteps(t, env, []step{
		{"GET", "/_index_template/logs", "", 404, nil},
		{"PUT", "/logs-app-default/_doc/1", `{"n":1}`, 201, map[string]any{"_index": "logs-app-default"}},
	})
	if status, _ := env.do(t, "GET", "/_data_stream/logs-app-default", ""); status != http.StatusNotFound {
		t.Errorf("a plain index became a data stream")
	}
}
