package esfake_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/elastic/go-elasticsearch/v8"

	"github.com/logpipe/logpipe/devstack/esfake"
)

func TestInfoPassesProductCheck(t *testing.T) {
	env := newTestServer(t, nil)
	status, info := esResult(t)(env.es.Info())
	if status != http.StatusOK {
		t.Fatalf("status %d", status)
	}
	if v, _ := dig(info, "version", "number").(string); !strings.HasPrefix(v, "8.") {
		t.Errorf("version.number = %q, want 8.x", v)
	}
	if got := dig(info, "tagline"); got != "You Know, for Search" {
		t.Errorf("tagline = %v", got)
	}
	if got := dig(info, "version", "build_flavor"); got != "default" {
		t.Errorf("build_flavor = %v", got)
	}

	req, _ := http.NewRequest(http.MethodHead, env.url+"/", nil)
	res, err := env.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Header.Get("X-Elastic-Product") != "Elasticsearch" {
		t.Errorf("HEAD /: status %d, product header %q", res.StatusCode, res.Header.Get("X-Elastic-Product"))
	}
}

func TestProductHeaderOnEveryAnswer(t *testing.T) {
	env := newTestServer(t, nil)
	for _, path := range []string{"/", "/missing/_search", "/_cat/indices", "/_bulk"} {
		res, err := env.http.Get(env.url + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if got := res.Header.Get("X-Elastic-Product"); got != "Elasticsearch" {
			t.Errorf("GET %s (status %d): X-Elastic-Product = %q", path, res.StatusCode, got)
		}
	}
}

func TestErrorsAreElasticsearchShaped(t *testing.T) {
	env := newTestServer(t, nil)
	tests := map[string]struct {
		method, path, body string
		status             int
		errType            string // error.type, or "" for the plain-string 405 form
		reasonHas          string
	}{
		"unknown index on search": {"GET", "/nope/_search", "", 404, "index_not_found_exception", "no such index [nope]"},
		"unknown index on count":  {"GET", "/nope/_count", "", 404, "index_not_found_exception", "no such index [nope]"},
		"unsupported endpoint":    {"GET", "/_cat/indices", "", 400, "illegal_argument_exception", "/_cat/indices"},
		"unsupported sub-path":    {"GET", "/logs/_stats", "", 400, "illegal_argument_exception", "/logs/_stats"},
		"wrong method":            {"GET", "/_bulk", "", 405, "", "Incorrect HTTP method for uri [/_bulk] and method [GET]"},
		"unknown parameter":       {"POST", "/_bulk?refrsh=true", "{}\n", 400, "illegal_argument_exception", "unrecognized parameter: [refrsh]"},
		"unknown query":           {"POST", "/_search", `{"query":{"query_string":{"query":"x"}}}`, 400, "parsing_exception", "unknown query [query_string]"},
		"aggregations":            {"POST", "/_search", `{"aggs":{"a":{"terms":{"field":"x"}}}}`, 400, "illegal_argument_exception", "[aggs]"},
		"missing template":        {"GET", "/_index_template/none", "", 404, "resource_not_found_exception", "index template matching [none] not found"},
		"bad json":                {"POST", "/_search", `{"query":`, 400, "x_content_parse_exception", ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			status, body := env.do(t, tc.method, tc.path, tc.body)
			if status != tc.status {
				t.Fatalf("status %d, want %d: %v", status, tc.status, body)
			}
			if got := dig(body, "status"); got != float64(tc.status) {
				t.Errorf("status field = %v", got)
			}
			if tc.errType == "" {
				if s, _ := body["error"].(string); !strings.Contains(s, tc.reasonHas) {
					t.Errorf("error = %v, want it to contain %q", body["error"], tc.reasonHas)
				}
				return
			}
			if got := dig(body, "error", "type"); got != tc.errType {
				t.Errorf("error.type = %v, want %s (%v)", got, tc.errType, body)
			}
			if got := dig(body, "error", "root_cause", "0", "type"); got != tc.errType {
				t.Errorf("error.root_cause[0].type = %v, want %s", got, tc.errType)
			}
			if reason, _ := dig(body, "error", "reason").(string); !strings.Contains(reason, tc.reasonHas) {
				t.Errorf("error.reason = %q, want it to contain %q", reason, tc.reasonHas)
			}
		})
	}
}

func TestRequestBodies(t *testing.T) {
	env := newTestServer(t, func(c *elasticsearch.Config) { c.CompressRequestBody = true })
	status, m := esResult(t)(env.es.Bulk(strings.NewReader(`{"create":{"_index":"gz","_id":"1"}}` + "\n" + `{"a":1}` + "\n")))
	if status != http.StatusOK || dig(m, "errors") != false || env.srv.Count("gz") != 1 {
		t.Errorf("gzip bulk: %d %v", status, m)
	}

	res, err := env.http.Post(env.url+"/_search", "text/plain", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	m = decodeJSON(t, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusNotAcceptable || dig(m, "error", "reason") != "Content-Type header [text/plain] is not supported" {
		t.Errorf("text/plain body: %d %v", res.StatusCode, m)
	}
}

func TestStartupLine(t *testing.T) {
	got := esfake.StartupLine("127.0.0.1:9200")
	want := "esfake (development stand-in for Elasticsearch, not Elasticsearch) listening on http://127.0.0.1:9200"
	if got != want {
		t.Errorf("StartupLine = %q, want %q", got, want)
	}
}
