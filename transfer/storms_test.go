package main

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/logpipe/logpipe/devstack/stack"
)

// TestStormsAndLatency: whole-request 429 and 503 storms, item-level 429
// refusals from a flood-stage block (on esfake also scattered item 429s of
// an overloaded node and 503s),
// and added latency lose and duplicate nothing, and the committed offsets
// never pass a record that is not in the index.
func TestStormsAndLatency(t *testing.T) {
	stack.ForBackends(t, func(t *testing.T, kind string) {
		w := newWorld(t, kind)
		p := w.newProducer()
		cfg := w.config()
		cfg.BatchDocs = 200

		var faults bulkFaults
		var scatter func(index, id string, doc []byte) (int, string, string, bool)
		if kind == stack.Embedded {
			faults = w.s.ES()
			// Items fail with 429 or 503 the first time they are seen (one in four).
			var mu sync.Mutex
			refused := map[string]bool{}
			scatter = func(_, id string, _ []byte) (int, string, string, bool) {
				h := fnv.New32a()
				h.Write([]byte(id))
				if h.Sum32()%4 != 0 {
					return 0, "", "", false
				}
				mu.Lock()
				defer mu.Unlock()
				if refused[id] {
					return 0, "", "", false
				}
				refused[id] = true
				if h.Sum32()%8 == 0 {
					return http.StatusTooManyRequests, "es_rejected_execution_exception", "rejected execution", true
				}
				return http.StatusServiceUnavailable, "unavailable_shards_exception", "primary shard is not active", true
			}
			w.s.ES().RejectItems(scatter)
		} else {
			// A shared OpenSearch node gives a whole-request 429 only when
			// its node-wide write queue or indexing pressure limit is full,
			// and a 503 when it has no master: neither can be caused without
			// disturbing every other test on it. So a proxy in front of it
			// answers those for the next n _bulk requests, as esfake does;
			// every other request, and every document, 409 and count, is the
			// engine's own. Item-level 429s on this backend come from the
			// engine's flood-stage block below, which is a refusal.
			proxy := newFaultProxy(t, w.s.ESURL())
			faults = proxy
			must(t, cfg.ESAddresses.Set(proxy.URL()))
		}
		r := startService(t, "transfer", cfg)

		// Each fault below is armed, then records are sent, so that there
		// are bulk requests to meet it, and it stays until transfer has met
		// all of it: every step is taken whatever the timing.
		const perStep = 100

		// storm fails the next n bulk requests as a whole with status.
		storm := func(n, status int) func() {
			return func() {
				before := scrapeLabel(t, r.svc.Addr(), "transfer_bulk_retries_total", "request")
				faults.FailBulk(n, status)
				p.send(perStep)
				waitFor(t, within, fmt.Sprintf("%d bulk requests answered %d", n, status), func() bool {
					return scrapeLabel(t, r.svc.Addr(), "transfer_bulk_retries_total", "request") >= before+float64(n)
				})
			}
		}
		// floodStage sets the block a node puts on indices when its disk
		// passes the flood-stage watermark, on the test's own data stream:
		// each item written to it fails with 429 cluster_block_exception,
		// a refusal that transfer retries (TestRefusalsHoldBack covers the
		// rest of what it does). It stays until transfer has retried
		// refused items, and nothing is committed past them meanwhile.
		// esfake has no index blocks: there its fault injection answers
		// each item what Elasticsearch answers under the block.
		floodStage := func() {
			w.waitCount(within, 1) // the data stream exists
			block := func(v string) {
				w.es.must(http.MethodPut, "/"+w.index+"/_settings", `{"index.blocks.read_only_allow_delete":`+v+`}`)
			}
			if kind == stack.Embedded {
				backing := w.s.ES().Docs(w.index)[0].Index
				block = func(v string) {
					if v == "null" {
						w.s.ES().RejectItems(scatter)
						return
					}
					w.s.ES().RejectItems(func(string, string, []byte) (int, string, string, bool) {
						return http.StatusTooManyRequests, "cluster_block_exception", "index [" + backing +
							"] blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark, index has read-only-allow-delete block];", true
					})
				}
			}
			retried := scrapeLabel(t, r.svc.Addr(), "transfer_bulk_retries_total", "refused")
			block("true")
			defer block("null")
			p.send(perStep)
			waitFor(t, within, "items retried under the flood-stage block", func() bool {
				return scrapeLabel(t, r.svc.Addr(), "transfer_bulk_retries_total", "refused") > retried
			})
			w.checkCommitted(nil)
		}

		const rounds, perRound = 12, 300
		produced := make(chan struct{})
		go func() {
			defer close(produced)
			for i := 0; i < rounds; i++ {
				p.send(perRound)
				time.Sleep(30 * time.Millisecond)
			}
		}()
		defer func() { <-produced }() // also when the test fails early
		steps := []func(){
			storm(8, http.StatusTooManyRequests),
			func() { faults.SetLatency(40 * time.Millisecond) },
			storm(8, http.StatusServiceUnavailable),
			func() { faults.SetLatency(0) },
			floodStage,
			storm(4, http.StatusTooManyRequests),
		}
		// Each step, then a check of the committed offsets, until every
		// step is taken and every record sent.
		checks := 0
		for i := 0; i < len(steps) || !closed(produced); i++ {
			if i < len(steps) {
				steps[i]()
			}
			time.Sleep(150 * time.Millisecond)
			w.checkCommitted(nil)
			checks++
		}
		faults.SetLatency(0)
		ids := p.sentIDs()
		n := len(ids)
		if want := rounds*perRound + 4*perStep; n != want {
			t.Fatalf("%d records sent, want %d", n, want)
		}
		w.waitCount(within, n)
		w.checkExactly(ids)
		end := w.offsets(w.topic)
		waitFor(t, within, "offsets committed to the end", func() bool { return w.committedAt(end) })
		w.checkCommitted(nil)
		if got := scrape(t, r.svc.Addr(), "transfer_docs_indexed_total"); got < float64(n) {
			t.Errorf("transfer_docs_indexed_total = %v, want at least %d", got, n)
		}
		t.Logf("%s: %d commit checks during the storms; %v requests and %v documents retried", kind, checks,
			scrapeLabel(t, r.svc.Addr(), "transfer_bulk_retries_total", "request"), scrape(t, r.svc.Addr(), "transfer_docs_retried_total"))
		r.stop()
	})
}

// closed tells whether c is closed.
func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// bulkFaults makes the search engine fail whole _bulk requests and answer
// slowly: esfake itself, or a faultProxy in front of a real engine.
type bulkFaults interface {
	FailBulk(n, status int)
	SetLatency(d time.Duration)
}

// faultProxy forwards every request to a search engine, except that it
// answers the next n _bulk requests itself with an error status, as
// esfake's FailBulk does, and may delay every request.
type faultProxy struct {
	srv *httptest.Server

	mu         sync.Mutex
	failLeft   int
	failStatus int
	latency    time.Duration
}

// newFaultProxy serves a proxy to target until the end of the test.
func newFaultProxy(t testing.TB, target string) *faultProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = tr
	f := &faultProxy{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		status, latency := f.take(req)
		if latency > 0 {
			select {
			case <-time.After(latency):
			case <-req.Context().Done():
				return
			}
		}
		if status == 0 {
			rp.ServeHTTP(rw, req)
			return
		}
		typ, reason := "es_rejected_execution_exception", "rejected execution of coordinating operation (injected by the test's proxy)"
		if status == http.StatusServiceUnavailable {
			typ, reason = "cluster_block_exception", "blocked by: [SERVICE_UNAVAILABLE/2/no master]; (injected by the test's proxy)"
		}
		cause := map[string]any{"type": typ, "reason": reason}
		body, _ := json.Marshal(map[string]any{
			"error":  map[string]any{"root_cause": []any{cause}, "type": typ, "reason": reason},
			"status": status,
		})
		rw.Header().Set("Content-Type", "application/json; charset=UTF-8")
		rw.WriteHeader(status)
		_, _ = rw.Write(body)
	}))
	t.Cleanup(func() {
		f.srv.Close()
		tr.CloseIdleConnections()
	})
	return f
}

// take returns the status to fail req with (0: forward it) and the delay.
func (f *faultProxy) take(req *http.Request) (int, time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failLeft == 0 || !strings.HasSuffix(req.URL.Path, "/_bulk") {
		return 0, f.latency
	}
	f.failLeft--
	return f.failStatus, f.latency
}

// URL is the proxy's base URL.
func (f *faultProxy) URL() string { return f.srv.URL }

// FailBulk makes the next n _bulk requests fail with status; n <= 0
// cancels pending failures.
func (f *faultProxy) FailBulk(n, status int) {
	if n > 0 && (status < 400 || status > 599) {
		panic(fmt.Sprintf("faultProxy: status %d is not an HTTP error status", status))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failLeft, f.failStatus = max(n, 0), status
}

// SetLatency delays every request by d; zero turns it off.
func (f *faultProxy) SetLatency(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.latency = d
}
