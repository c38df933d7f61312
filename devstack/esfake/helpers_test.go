package esfake_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esapi"
	"github.com/elastic/go-elasticsearch/v8/esutil"

	"github.com/logpipe/logpipe/devstack/esfake"
)

type testEnv struct {
	srv  *esfake.Server
	es   *elasticsearch.Client
	http *http.Client // plain HTTP, for what the client would check itself
	url  string
}

// newTestServer serves a fresh esfake over HTTP and returns the official
// client pointed at it. cfg, if given, adjusts the client configuration.
func newTestServer(t testing.TB, cfg func(*elasticsearch.Config), opts ...esfake.Option) *testEnv {
	t.Helper()
	srv := esfake.New(opts...)
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	c := elasticsearch.Config{Addresses: []string{ts.URL}, Transport: tr}
	if cfg != nil {
		cfg(&c)
	}
	es, err := elasticsearch.NewClient(c)
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	return &testEnv{srv: srv, es: es, http: &http.Client{Transport: tr}, url: ts.URL}
}

// do sends a raw request through the client and decodes the JSON answer.
func (e *testEnv) do(t testing.TB, method, path, body string) (int, map[string]any) {
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
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := e.es.Perform(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	return res.StatusCode, decodeJSON(t, res.Body)
}

func decodeJSON(t testing.TB, r io.Reader) map[string]any {
	t.Helper()
	raw, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("answer is not a JSON object: %v: %s", err, raw)
	}
	return m
}

// esResult decodes an esapi response, closing it. It is called as
// esResult(t)(es.Info()).
func esResult(t testing.TB) func(*esapi.Response, error) (int, map[string]any) {
	return func(res *esapi.Response, err error) (int, map[string]any) {
		t.Helper()
		return decodeResponse(t, res, err)
	}
}

func decodeResponse(t testing.TB, res *esapi.Response, err error) (int, map[string]any) {
	t.Helper()
	if err != nil {
		t.Fatalf("request failed: %v", err)
	}
	defer res.Body.Close()
	return res.StatusCode, decodeJSON(t, res.Body)
}

// dig walks decoded JSON by object keys and array indexes ("0").
func dig(v any, path ...string) any {
	for _, p := range path {
		switch x := v.(type) {
		case map[string]any:
			v = x[p]
		case []any:
			i := 0
			for _, c := range p {
				i = i*10 + int(c-'0')
			}
			if i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

// bulkResult records what a BulkIndexer reported for each document.
type bulkResult struct {
	ok     map[string]esutil.BulkIndexerResponseItem
	failed map[string]esutil.BulkIndexerResponseItem
	errs   []error // whole-request failures
}

// runBulk indexes docs (id → source) with esutil.BulkIndexer and op, in
// the given index, and waits for the indexer to finish.
func (e *testEnv) runBulk(t testing.TB, index, action string, ids []string, docs map[string]string) *bulkResult {
	t.Helper()
	res := &bulkResult{ok: map[string]esutil.BulkIndexerResponseItem{}, failed: map[string]esutil.BulkIndexerResponseItem{}}
	var mu sync.Mutex // the indexer calls back from its worker goroutine
	lock := func() func() { mu.Lock(); return mu.Unlock }
	bi, err := esutil.NewBulkIndexer(esutil.BulkIndexerConfig{
		Client:     e.es,
		Index:      index,
		NumWorkers: 1,
		FlushBytes: 1 << 20,
		OnError: func(_ context.Context, err error) {
			defer lock()()
			res.errs = append(res.errs, err)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		err := bi.Add(context.Background(), esutil.BulkIndexerItem{
			Action:     action,
			DocumentID: id,
			Body:       strings.NewReader(docs[id]),
			OnSuccess: func(_ context.Context, item esutil.BulkIndexerItem, r esutil.BulkIndexerResponseItem) {
				defer lock()()
				res.ok[item.DocumentID] = r
			},
			OnFailure: func(_ context.Context, item esutil.BulkIndexerItem, r esutil.BulkIndexerResponseItem, err error) {
				defer lock()()
				if err != nil {
					res.errs = append(res.errs, err)
					return
				}
				res.failed[item.DocumentID] = r
			},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := bi.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	return res
}

// search runs a _search through the client and returns the ids of the hits
// in order, with the decoded answer.
func (e *testEnv) search(t testing.TB, index, body string) (int, []string, map[string]any) {
	t.Helper()
	status, m := esResult(t)(e.es.Search(
		e.es.Search.WithIndex(index),
		e.es.Search.WithBody(strings.NewReader(body)),
	))
	var ids []string
	hits, _ := dig(m, "hits", "hits").([]any)
	for _, h := range hits {
		ids = append(ids, dig(h, "_id").(string))
	}
	return status, ids, m
}
