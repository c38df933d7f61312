package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/logpipe/logpipe/devstack/stack"
	"github.com/logpipe/logpipe/transfer/internal/document"
)

// TestRefusalsHoldBack: while the search engine refuses documents for a
// reason about the cluster or the credentials (a write block on the data
// stream, missing privileges, a closed write index, a data stream that
// was deleted and may not be created again), transfer dead-letters
// nothing, commits nothing past the first refused record, retries with
// backoff and says why on /readyz; once the refusal is lifted it indexes
// every record, each once. On the real backends the engine refuses for
// real (a block set with _settings, a data stream deleted while
// auto-creation is forbidden); on esfake, which models none of that,
// fault injection answers what Elasticsearch 8 answers.
func TestRefusalsHoldBack(t *testing.T) {
	stack.ForBackends(t, func(t *testing.T, kind string) {
		w := newWorld(t, kind)
		r := startService(t, "transfer", w.config())

		line := 0
		produce := func(n int) []string { // n records over six jobs, so over several partitions
			var ids []string
			for j := range 6 {
				var values [][]byte
				for range n / 6 {
					values = append(values, logRecord(fmt.Sprintf("job-%d", j), fmt.Sprintf("line %d", line), line))
					line++
				}
				ids = append(ids, w.produce(fmt.Sprintf("job-%d", j), values...)...)
			}
			return ids
		}
		ids := produce(300) // the records the data stream holds
		w.waitCount(within, len(ids))
		end := w.offsets(w.topic)
		waitFor(t, within, "offsets committed to the end", func() bool { return w.committedAt(end) })

		type refusal struct {
			name    string
			want    string // in /readyz
			reason  string // also in /readyz, when set
			label   string // of transfer_es_refusals_total
			on, off func()
			// lost: on deletes the data stream, and the records indexed
			// before with it.
			lost bool
		}
		var refusals []refusal
		if kind == stack.Embedded {
			// esfake does not model index blocks, closed indices or
			// action.auto_create_index: its fault injection answers each
			// item of the test's data stream what Elasticsearch 8
			// answers in each case. The real backends' cases below
			// exercise the engine itself.
			refuseAs := func(status int, typ, reason string) (on, off func()) {
				return func() {
						backing := w.s.ES().Docs(w.index)[0].Index
						w.s.ES().RejectItems(func(index, _ string, _ []byte) (int, string, string, bool) {
							r := strings.NewReplacer("<backing>", backing, "<index>", index).Replace(reason)
							return status, typ, r, true
						})
					}, func() {
						w.s.ES().RejectItems(nil)
					}
			}
			add := func(name, want, reason, label string, status int, typ, answer string) {
				on, off := refuseAs(status, typ, answer)
				refusals = append(refusals, refusal{name: name, want: want, reason: reason, label: label, on: on, off: off})
			}
			add("write block", "403 cluster_block_exception", "", "cluster_block_exception",
				http.StatusForbidden, "cluster_block_exception", "index [<backing>] blocked by: [FORBIDDEN/8/index write (api)];")
			add("flood-stage block", "429 cluster_block_exception: index [", "flood-stage watermark", "cluster_block_exception",
				http.StatusTooManyRequests, "cluster_block_exception", "index [<backing>] blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark, index has read-only-allow-delete block];")
			// The real backends' OpenSearch runs without its security
			// plugin: there are no privileges to take away there.
			add("missing privilege", "403 security_exception", "", "security_exception",
				http.StatusForbidden, "security_exception", "action [indices:data/write/bulk[s]] is unauthorized for user [logpipe] with effective roles [logpipe_reader] on indices [<index>], this action is granted by the index privileges [create_doc,create,index,write,all]")
			// Elasticsearch 8 closes a data stream's write index when
			// asked; OpenSearch refuses to, so on the real backends a
			// closed index is TestClosedIndexHoldsBack's plain index.
			add("closed write index", "400 index_closed_exception", "", "index_closed_exception",
				http.StatusBadRequest, "index_closed_exception", "closed")
			add("missing data stream, auto-create forbidden", "404 index_not_found_exception", "", "index_not_found_exception",
				http.StatusNotFound, "index_not_found_exception", "no such index [<index>] and [action.auto_create_index] contains [-<index>] which forbids automatic creation of the index")
		} else {
			refusals = append(refusals, refusal{
				name: "write block", want: "403 cluster_block_exception", label: "cluster_block_exception",
				// On the test's own data stream only: the real engine is shared.
				on:  func() { w.es.must(http.MethodPut, "/"+w.index+"/_settings", `{"index.blocks.write":true}`) },
				off: func() { w.es.must(http.MethodPut, "/"+w.index+"/_settings", `{"index.blocks.write":null}`) },
			}, refusal{
				// What a node sets on its indices when its disk passes the
				// flood-stage watermark. The engine answers each item
				// 429 cluster_block_exception "index [<backing index>]
				// blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded
				// flood-stage watermark, index has read-only-allow-delete
				// block];": a 429, but not an overload.
				name: "flood-stage block", want: "429 cluster_block_exception: index [", label: "cluster_block_exception",
				on: func() {
					w.es.must(http.MethodPut, "/"+w.index+"/_settings", `{"index.blocks.read_only_allow_delete":true}`)
				},
				off: func() {
					w.es.must(http.MethodPut, "/"+w.index+"/_settings", `{"index.blocks.read_only_allow_delete":null}`)
				},
				reason: "flood-stage watermark",
			})
			// Last, since it deletes what was indexed: the data stream is
			// deleted, and action.auto_create_index forbids creating it
			// again (for this test's own name only: the real engine is
			// shared). Once allowed, transfer's next attempt creates it
			// from the template.
			var allow func()
			refusals = append(refusals, refusal{
				name: "missing data stream, auto-create forbidden", want: "404 index_not_found_exception", label: "index_not_found_exception", lost: true,
				on: func() {
					allow = w.s.ForbidAutoCreate(t, w.index)
					w.es.must(http.MethodDelete, "/_data_stream/"+w.index, "")
				},
				off: func() { allow() },
			})
		}

		heldBack := 0
		for _, ref := range refusals {
			retries := scrapeLabel(t, r.svc.Addr(), "transfer_bulk_retries_total", "refused")
			refused := scrapeLabel(t, r.svc.Addr(), "transfer_es_refusals_total", ref.label)
			indexed := scrape(t, r.svc.Addr(), "transfer_docs_indexed_total")
			ref.on()
			if ref.lost {
				ids = nil
			}
			blocked := produce(300)
			heldBack += len(blocked)

			waitFor(t, within, ref.name+": /readyz red with the reason", func() bool {
				code, body := readyz(t, r.svc.Addr())
				return code == http.StatusServiceUnavailable && strings.Contains(body, ref.want) && strings.Contains(body, w.index) &&
					strings.Contains(body, ref.reason)
			})
			firstRefusal := time.Now()
			waitFor(t, within, ref.name+": several refused attempts", func() bool {
				return scrapeLabel(t, r.svc.Addr(), "transfer_bulk_retries_total", "refused") >= retries+6
			})
			// Offsets are committed once a second: wait past two commits,
			// so that a commit past a refused record would have happened.
			time.Sleep(time.Until(firstRefusal.Add(2*commitInterval + commitInterval/2)))
			if got := scrape(t, r.svc.Addr(), "transfer_docs_indexed_total"); got != indexed {
				t.Fatalf("%s: transfer_docs_indexed_total went from %v to %v while refused", ref.name, indexed, got)
			}
			if got := w.es.count(""); got != len(ids) {
				t.Fatalf("%s: %d documents while refused, want the %d from before", ref.name, got, len(ids))
			}
			if n := w.records(w.dlq); n != 0 {
				t.Fatalf("%s: %d records dead-lettered, want none", ref.name, n)
			}
			if c := w.committed(); !w.committedAt(end) {
				t.Fatalf("%s: committed %v while refused, want %v: past a refused record", ref.name, c, end)
			}
			if n := scrapeLabel(t, r.svc.Addr(), "transfer_es_refusals_total", ref.label) - refused; n < float64(len(blocked)) {
				t.Errorf("%s: transfer_es_refusals_total{reason=%q} grew by %v, want at least the %d records held back", ref.name, ref.label, n, len(blocked))
			}
			attempts := scrapeLabel(t, r.svc.Addr(), "transfer_bulk_retries_total", "refused") - retries
			_, body := readyz(t, r.svc.Addr())
			t.Logf("%s: %d records held back, %v refused attempts so far; /readyz: %s", ref.name, len(blocked), attempts, strings.TrimSpace(body))

			ref.off()
			ids = append(ids, blocked...)
			w.waitCount(within, len(ids))
			end = w.offsets(w.topic)
			waitFor(t, within, ref.name+": offsets committed to the end", func() bool { return w.committedAt(end) })
			waitFor(t, within, ref.name+": /readyz green", func() bool {
				code, _ := readyz(t, r.svc.Addr())
				return code == http.StatusOK
			})
			w.checkExactly(ids)
			t.Logf("%s lifted: the data stream holds %d documents, one per record", ref.name, len(ids))
		}
		if n := w.records(w.dlq); n != 0 {
			t.Fatalf("%d records dead-lettered, want none", n)
		}
		if got := scrape(t, r.svc.Addr(), "transfer_docs_dlq_total"); got != 0 {
			t.Errorf("transfer_docs_dlq_total = %v, want 0", got)
		}
		if got := scrape(t, r.svc.Addr(), "transfer_es_refusals_total"); got < float64(heldBack) {
			t.Errorf("transfer_es_refusals_total = %v, want at least the %d records held back", got, heldBack)
		}
		t.Logf("%s: %d records held back by %d refusals, all indexed once lifted; 0 dead-lettered; transfer_es_refusals_total %v",
			kind, heldBack, len(refusals), scrape(t, r.svc.Addr(), "transfer_es_refusals_total"))
		r.stop()
	})
}

// TestClosedIndexHoldsBack: an operator points --es-index at a plain
// index of their own (made with transfer's mappings), not a data stream,
// and closes it. Writes answer 400 index_closed_exception, which is about
// the index, not the documents: transfer holds them back as it does a
// write block, and indexes each once when the index is opened again. (A
// data stream's write index cannot be closed on OpenSearch; on
// Elasticsearch 8 it can, see TestRefusalsHoldBack.) On the real engine
// only: esfake has no closed indices (TestRefusalsHoldBack gives transfer
// Elasticsearch's answer for one through esfake's fault injection).
func TestClosedIndexHoldsBack(t *testing.T) {
	realEngineOnly(t, "closing and opening an index (POST <index>/_close, _open)", func(t *testing.T, kind string) {
		w := newWorld(t, kind)
		// Not under logs-*-*: Elasticsearch 8's built-in template makes
		// data streams of those names and refuses a plain index.
		w.index = w.s.Index("logpipe-lines")
		w.es.index = w.index
		var tmpl struct {
			Template struct {
				Mappings json.RawMessage `json:"mappings"`
			} `json:"template"`
		}
		must(t, json.Unmarshal(document.Template(w.index, w.engine()), &tmpl))
		w.es.must(http.MethodPut, "/"+w.index, `{"mappings":`+string(tmpl.Template.Mappings)+`}`)
		r := startService(t, "transfer", w.config())

		line := 0
		produce := func(n int) []string {
			var values [][]byte
			for range n {
				values = append(values, logRecord("web", fmt.Sprintf("line %d", line), line))
				line++
			}
			return w.produce("web", values...)
		}
		ids := produce(120)
		w.waitCount(within, len(ids))
		end := w.offsets(w.topic)
		waitFor(t, within, "offsets committed to the end", func() bool { return w.committedAt(end) })

		indexed := scrape(t, r.svc.Addr(), "transfer_docs_indexed_total")
		w.es.must(http.MethodPost, "/"+w.index+"/_close", "")
		blocked := produce(120)
		waitFor(t, within, "/readyz red with the reason", func() bool {
			code, body := readyz(t, r.svc.Addr())
			return code == http.StatusServiceUnavailable && strings.Contains(body, "400 index_closed_exception: closed") && strings.Contains(body, w.index)
		})
		firstRefusal := time.Now()
		waitFor(t, within, "several refused attempts", func() bool {
			return scrapeLabel(t, r.svc.Addr(), "transfer_bulk_retries_total", "refused") >= 6
		})
		time.Sleep(time.Until(firstRefusal.Add(2*commitInterval + commitInterval/2))) // past two commits
		if got := scrape(t, r.svc.Addr(), "transfer_docs_indexed_total"); got != indexed {
			t.Fatalf("transfer_docs_indexed_total went from %v to %v while the index was closed", indexed, got)
		}
		if n := w.records(w.dlq); n != 0 {
			t.Fatalf("%d records dead-lettered, want none", n)
		}
		if c := w.committed(); !w.committedAt(end) {
			t.Fatalf("committed %v while the index was closed, want %v: past a refused record", c, end)
		}
		if n := scrapeLabel(t, r.svc.Addr(), "transfer_es_refusals_total", "index_closed_exception"); n < float64(len(blocked)) {
			t.Errorf(`transfer_es_refusals_total{reason="index_closed_exception"} = %v, want at least the %d records held back`, n, len(blocked))
		}
		_, body := readyz(t, r.svc.Addr())
		t.Logf("%s: %d records held back; /readyz: %s", kind, len(blocked), strings.TrimSpace(body))

		w.es.must(http.MethodPost, "/"+w.index+"/_open", "")
		ids = append(ids, blocked...)
		w.waitCount(within, len(ids))
		end = w.offsets(w.topic)
		waitFor(t, within, "offsets committed to the end", func() bool { return w.committedAt(end) })
		waitFor(t, within, "/readyz green", func() bool {
			code, _ := readyz(t, r.svc.Addr())
			return code == http.StatusOK
		})
		w.checkExactly(ids)
		if n := w.records(w.dlq); n != 0 {
			t.Fatalf("%d records dead-lettered, want none", n)
		}
		r.stop()
	})
}

// scrapeLabel returns the value of name{reason="reason"} from /metrics.
func scrapeLabel(t testing.TB, addr, name, reason string) float64 {
	t.Helper()
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(res.Body, 4<<20))
	prefix := name + `{reason="` + reason + `"} `
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", sc.Text(), err)
			}
			return f
		}
	}
	t.Fatalf("metric %s{reason=%q} not found on %s/metrics", name, reason, addr)
	return 0
}
