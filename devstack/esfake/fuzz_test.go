package esfake_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/logpipe/logpipe/devstack/esfake"
)

// FuzzBulk feeds arbitrary bodies to _bulk. Whatever comes in, the server
// must not panic, must answer 200 or a 4xx with JSON, and must stay usable.
func FuzzBulk(f *testing.F) {
	seeds := []string{
		`{"create":{"_index":"logs-logpipe-default","_id":"logs-0-1"}}` + "\n" + `{"@timestamp":"2026-11-21T10:00:00Z","message":"hi","log":{"offset":1}}` + "\n",
		`{"index":{"_index":"a","_id":"1"}}` + "\n" + `{"n":1,"s":"x","o":{"p":[1,2,{"q":null}]}}` + "\n" + `{"index":{"_index":"a","_id":"2"}}` + "\n" + `{"n":"x"}` + "\n",
		`{"create":{"_index":"a"}}` + "\n" + `{"a.b.c":1,"a":{"b":{"d":true}}}` + "\n",
		`{"delete":{"_index":"a","_id":"1"}}` + "\n",
		`{"update":{"_index":"a","_id":"1"}}` + "\n" + `{"doc":{}}` + "\n",
		`{"create":{"_index":"a","_id":"1"}}` + "\n" + `{"json":{"x":1},"at":"2026-01-01","ip":"::1","f":1e400}` + "\n",
		"{\"create\":\n",
		"\n\n\n",
		`{"create":{"_index":"A"}}` + "\n{}\n",
		`{"create":{"_index":"a","_id":""}}` + "\n{}\n",
		`{"create":{"_index":"a","_source":{"x":[1]}}}` + "\n{\"x\":\"\\u0000\\ud800\"}\n",
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		srv := esfake.New()
		send(t, srv, "PUT", "/_index_template/logpipe", `{"index_patterns":["logs-logpipe-*"],"priority":200,"data_stream":{},
			"template":{"mappings":{"properties":{"message":{"type":"text"},"log":{"properties":{"offset":{"type":"long"}}},"json":{"type":"flattened"}}}}}`)
		code, answer := send(t, srv, "POST", "/_bulk", body)
		if code != http.StatusOK && (code < 400 || code >= 500) {
			t.Fatalf("status %d for %q: %s", code, body, answer)
		}
		if !json.Valid(answer) {
			t.Fatalf("answer is not JSON: %q", answer)
		}
		if code, answer := send(t, srv, "POST", "/logs-logpipe-*/_search", `{"query":{"bool":{"should":[{"match":{"message":"hi"}},{"range":{"@timestamp":{"gte":"now-1d"}}}]}},"sort":["_doc"]}`); code != http.StatusOK {
			t.Fatalf("search after the bulk: %d %s", code, answer)
		}
	})
}

func send(t *testing.T, srv *esfake.Server, method, path, body string) (int, []byte) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-ndjson")
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	return rec.Code, rec.Body.Bytes()
}
