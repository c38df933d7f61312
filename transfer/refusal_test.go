package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/logpipe/logpipe/devstack/stack"
)

// TestRefusalsHoldBack: while the search engine refuses documents for a
// reason about the cluster or the credentials (a write block on the data
// stream, missing privileges), transfer dead-letters nothing, commits
// nothing past the first refused record, retries with backoff and says why
// on /readyz; once the refusal is lifted it indexes every record, each
// once.
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
		ids := produce(300)
		w.waitCount(within, len(ids))
		end := w.offsets(w.topic)
		waitFor(t, within, "offsets committed to the end", func() bool { return w.committedAt(end) })

		type refusal struct {
			name     string
			want     string // in /readyz
			label    string // of transfer_es_refusals_total
			on, off  func()
			blocked  int
			attempts float64
		}
		refusals := []*refusal{{
			name: "write block", want: "403 cluster_block_exception", label: "cluster_block_exception",
			// On the test's own data stream only: the real engine is shared.
			on:  func() { w.es.must(http.MethodPut, "/"+w.index+"/_settings", `{"index.blocks.write":true}`) },
			off: func() { w.es.must(http.MethodPut, "/"+w.index+"/_settings", `{"index.blocks.write":null}`) },
		}}
		if kind == stack.Embedded {
			// The real backends' OpenSearch runs without its security
			// plugin: there are no privileges to take away there. esfake
			// answers what Elasticsearch answers a user without the
			// create_doc privilege on the data stream.
			refusals = append(refusals, &refusal{
				name: "missing privilege", want: "403 security_exception", label: "security_exception",
				on: func() {
					w.s.ES().RejectItems(func(index, _ string, _ []byte) (int, string, string, bool) {
						return http.StatusForbidden, "security_exception",
							"action [indices:data/write/bulk[s]] is unauthorized for user [logpipe] with effective roles [logpipe_reader] on indices [" + index + "], this action is granted by the index privileges [create_doc,create,index,write,all]", true
					})
				},
				off: func() { w.s.ES().RejectItems(nil) },
			})
		}

		for _, ref := range refusals {
			retries := scrapeLabel(t, r.svc.Addr(), "transfer_bulk_retries_total", "refused")
			ref.on()
			blocked := produce(300)
			ref.blocked = len(blocked)

			waitFor(t, within, ref.name+": /readyz red with the reason", func() bool {
				code, body := readyz(t, r.svc.Addr())
				return code == http.StatusServiceUnavailable && strings.Contains(body, ref.want) && strings.Contains(body, w.index)
			})
			waitFor(t, within, ref.name+": several refused attempts", func() bool {
				return scrapeLabel(t, r.svc.Addr(), "transfer_bulk_retries_total", "refused") >= retries+6
			})
			if got := w.es.count(""); got != len(ids) {
				t.Fatalf("%s: %d documents while refused, want the %d from before", ref.name, got, len(ids))
			}
			if n := w.records(w.dlq); n != 0 {
				t.Fatalf("%s: %d records dead-lettered, want none", ref.name, n)
			}
			if c := w.committed(); !w.committedAt(end) {
				t.Fatalf("%s: committed %v while refused, want %v: past a refused record", ref.name, c, end)
			}
			if n := scrapeLabel(t, r.svc.Addr(), "transfer_es_refusals_total", ref.label); n < float64(ref.blocked) {
				t.Errorf("%s: transfer_es_refusals_total{reason=%q} = %v, want at least the %d records held back", ref.name, ref.label, n, ref.blocked)
			}
			ref.attempts = scrapeLabel(t, r.svc.Addr(), "transfer_bulk_retries_total", "refused") - retries
			_, body := readyz(t, r.svc.Addr())
			t.Logf("%s: %d records held back, %v refused attempts so far; /readyz: %s", ref.name, ref.blocked, ref.attempts, strings.TrimSpace(body))

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
		}
		if n := w.records(w.dlq); n != 0 {
			t.Fatalf("%d records dead-lettered, want none", n)
		}
		if got := scrape(t, r.svc.Addr(), "transfer_docs_dlq_total"); got != 0 {
			t.Errorf("transfer_docs_dlq_total = %v, want 0", got)
		}
		if got := scrape(t, r.svc.Addr(), "transfer_es_refusals_total"); got < float64(len(ids)-300) {
			t.Errorf("transfer_es_refusals_total = %v, want at least the %d records held back", got, len(ids)-300)
		}
		t.Logf("%s: %d records indexed, each once by _id; 0 dead-lettered; transfer_es_refusals_total %v", kind, len(ids), scrape(t, r.svc.Addr(), "transfer_es_refusals_total"))
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
