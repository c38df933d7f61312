package esfake_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
)

func noRetry(c *elasticsearch.Config) { c.DisableRetry = true }

func TestFailBulkWholeRequest(t *testing.T) {
	tests := map[string]struct {
		status  int
		errType string
	}{
		"429": {http.StatusTooManyRequests, "es_rejected_execution_exception"},
		"503": {http.StatusServiceUnavailable, "cluster_block_exception"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			env := newTestServer(t, noRetry)
			env.srv.FailBulk(1, tc.status)
			docs := map[string]string{"1": `{"a":1}`, "2": `{"a":2}`}

			// The raw answer is Elasticsearch's error shape.
			status, m := esResult(t)(env.es.Bulk(strings.NewReader(`{"create":{"_index":"x","_id":"1"}}` + "\n{}\n")))
			if status != tc.status || dig(m, "status") != float64(tc.status) || dig(m, "error", "type") != tc.errType ||
				dig(m, "error", "root_cause", "0", "type") != tc.errType {
				t.Fatalf("answer %d %v", status, m)
			}

			// The BulkIndexer sees the whole request fail, for every item.
			env.srv.FailBulk(1, tc.status)
			res := env.runBulk(t, "x", "create", []string{"1", "2"}, docs)
			if len(res.ok) != 0 || len(res.errs) == 0 {
				t.Fatalf("bulk indexer: ok %v errors %v", res.ok, res.errs)
			}
			if msg := res.errs[0].Error(); !strings.Contains(msg, fmt.Sprint(tc.status)) || !strings.Contains(msg, tc.errType) {
				t.Errorf("error %q does not show the status and type", msg)
			}

			// Only n requests fail.
			res = env.runBulk(t, "x", "create", []string{"1", "2"}, docs)
			if len(res.ok) != 2 {
				t.Errorf("after the injected failures: ok %v failed %v errors %v", res.ok, res.failed, res.errs)
			}
		})
	}
}

func TestFailBulk503IsRetriedByDefaultClient(t *testing.T) {
	env := newTestServer(t, nil) // the client retries 502, 503 and 504 up to 3 times
	env.srv.FailBulk(2, http.StatusServiceUnavailable)
	res := env.runBulk(t, "x", "create", []string{"1"}, map[string]string{"1": `{"a":1}`})
	if len(res.ok) != 1 || len(res.errs) != 0 {
		t.Errorf("ok %v errors %v", res.ok, res.errs)
	}
}

func TestRejectItems(t *testing.T) {
	env := newTestServer(t, nil)
	var mu sync.Mutex
	var seen []string
	env.srv.RejectItems(func(index, id string, doc []byte) (int, string, string, bool) {
		mu.Lock()
		seen = append(seen, index+"/"+id+" "+string(doc))
		mu.Unlock()
		switch id {
		case "2":
			return http.StatusTooManyRequests, "", "rejected execution of primary operation", true
		case "3":
			return http.StatusBadRequest, "document_parsing_exception", "[1:2] injected", true
		}
		return 0, "", "", false
	})
	docs := map[string]string{"1": `{"a":1}`, "2": `{"a":2}`, "3": `{"a":3}`}
	res := env.runBulk(t, "x", "create", []string{"1", "2", "3"}, docs)
	if _, ok := res.ok["1"]; !ok || len(res.ok) != 1 {
		t.Errorf("ok = %v", res.ok)
	}
	if r := res.failed["2"]; r.Status != 429 || r.Error.Type != "es_rejected_execution_exception" || r.Error.Reason != "rejected execution of primary operation" || r.Index != "x" {
		t.Errorf("item 2 = %+v", r)
	}
	if r := res.failed["3"]; r.Status != 400 || r.Error.Type != "document_parsing_exception" {
		t.Errorf("item 3 = %+v", r)
	}
	if len(seen) != 3 || seen[0] != `x/1 {"a":1}` {
		t.Errorf("hook saw %q", seen)
	}
	if got := env.srv.Count("x"); got != 1 {
		t.Errorf("Count = %d, want 1", got)
	}
	env.srv.RejectItems(nil)
	res = env.runBulk(t, "x", "create", []string{"2", "3"}, docs)
	if len(res.ok) != 2 {
		t.Errorf("after removing the hook: %v %v", res.failed, res.errs)
	}
}

// TestLatency checks latency with bounds that a loaded machine cannot
// break: a request waits at least the latency; with an hour of latency, a
// client that gives up is let go (the server's cleanup would otherwise wait
// for the handler), and once the latency is removed a request is answered.
func TestLatency(t *testing.T) {
	env := newTestServer(t, noRetry)
	const d = 300 * time.Millisecond
	env.srv.SetLatency(d)

	start := time.Now()
	status, _ := esResult(t)(env.es.Info())
	if took := time.Since(start); status != http.StatusOK || took < d {
		t.Errorf("info took %v (status %d), want at least %v", took, status, d)
	}

	// A client that gives up is not kept waiting.
	env.srv.SetLatency(time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	res, err := env.es.Info(env.es.Info.WithContext(ctx))
	if err == nil {
		res.Body.Close()
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err %v, want a deadline error", err)
	}

	env.srv.SetLatency(0)
	ctx, cancel = context.WithTimeout(context.Background(), time.Minute) // an hour if the latency stayed
	defer cancel()
	if status, _ := esResult(t)(env.es.Info(env.es.Info.WithContext(ctx))); status != http.StatusOK {
		t.Errorf("info after the latency was removed: status %d", status)
	}
}

func TestReset(t *testing.T) {
	env := newTestServer(t, nil)
	putTemplate(t, env, "logpipe", logpipeTemplate)
	env.runBulk(t, "logs-logpipe-default", "create", []string{"1"}, map[string]string{"1": `{"@timestamp":"2026-11-21T10:00:00Z"}`})
	env.srv.FailBulk(5, 429)
	env.srv.Reset()

	if n := env.srv.Count("*"); n != 0 {
		t.Errorf("Count after Reset = %d", n)
	}
	if status, _ := env.do(t, "GET", "/_index_template/logpipe", ""); status != http.StatusNotFound {
		t.Errorf("template survived Reset: %d", status)
	}
	if status, _ := env.do(t, "GET", "/_index_template/logs", ""); status != http.StatusOK {
		t.Errorf("built-in template missing after Reset: %d", status)
	}
	res := env.runBulk(t, "x", "create", []string{"1"}, map[string]string{"1": `{}`})
	if len(res.ok) != 1 {
		t.Errorf("faults survived Reset: %v", res.errs)
	}
}

func TestConcurrentUse(t *testing.T) {
	env := newTestServer(t, nil)
	putTemplate(t, env, "logpipe", logpipeTemplate)
	const writers, batches, perBatch = 4, 10, 20
	var wg sync.WaitGroup
	errs := make(chan error, writers*batches+batches)
	for w := range writers {
		wg.Go(func() {
			for b := range batches {
				var body strings.Builder
				for i := range perBatch {
					fmt.Fprintf(&body, `{"create":{"_id":"%d-%d-%d"}}`+"\n"+`{"@timestamp":"2026-11-21T10:00:00Z","n":%d,"w%d":"x"}`+"\n", w, b, i, i, w)
				}
				res, err := env.es.Bulk(strings.NewReader(body.String()), env.es.Bulk.WithIndex("logs-logpipe-default"))
				if err != nil {
					errs <- err
					continue
				}
				if res.IsError() {
					errs <- fmt.Errorf("bulk: %s", res.String())
				}
				res.Body.Close()
			}
		})
	}
	wg.Go(func() {
		for range batches {
			res, err := env.es.Count(env.es.Count.WithIndex("logs-*"))
			if err != nil {
				errs <- err
				continue
			}
			res.Body.Close()
			env.srv.SetLatency(0)
			env.srv.RejectItems(nil)
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := env.srv.Count("logs-logpipe-default"); got != writers*batches*perBatch {
		t.Errorf("Count = %d, want %d", got, writers*batches*perBatch)
	}
}
