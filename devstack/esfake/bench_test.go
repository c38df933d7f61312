package esfake_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/logpipe/logpipe/devstack/esfake"
)

// BenchmarkBulkDiscard measures _bulk in discard mode, the setting for
// benchmarks of clients: 500 creates of 200-byte documents per request.
func BenchmarkBulkDiscard(b *testing.B) {
	srv := esfake.New(esfake.WithDiscard())
	putReq := httptest.NewRequest("PUT", "/_index_template/logpipe",
		strings.NewReader(`{"index_patterns":["logs-logpipe-*"],"priority":200,"data_stream":{}}`))
	putReq.Header.Set("Content-Type", "application/json")
	srv.ServeHTTP(httptest.NewRecorder(), putReq)

	const items = 500
	var body bytes.Buffer
	for i := range items {
		fmt.Fprintf(&body, `{"create":{"_index":"logs-logpipe-default","_id":"logs-3-%d"}}`+"\n", i)
		doc := fmt.Sprintf(`{"@timestamp":"2026-11-21T10:00:00.123456Z","message":"GET /api/v1/items/%06d 200","job":"web-1","host":{"name":"node-a"},"log":{"offset":%d},"kafka":{"offset":%d}`, i, i*200, i)
		doc += `,"pad":"` + strings.Repeat("x", 200-len(doc)-len(`,"pad":""}`)) + `"}`
		if len(doc) != 200 {
			b.Fatalf("document is %d bytes", len(doc))
		}
		body.WriteString(doc)
		body.WriteByte('\n')
	}
	w := &discardWriter{header: http.Header{}}
	b.SetBytes(int64(body.Len()))
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest("POST", "/_bulk", bytes.NewReader(body.Bytes()))
		req.Header.Set("Content-Type", "application/x-ndjson")
		srv.ServeHTTP(w, req)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*items), "ns/doc")
	if w.status != http.StatusOK || bytes.Contains(w.last, []byte(`"errors":true`)) {
		b.Fatalf("status %d: %.300s", w.status, w.last)
	}
}

type discardWriter struct {
	header http.Header
	status int
	last   []byte
}

func (w *discardWriter) Header() http.Header { return w.header }
func (w *discardWriter) WriteHeader(code int) {
	w.status = code
	w.last = w.last[:0]
}
func (w *discardWriter) Write(p []byte) (int, error) {
	w.last = append(w.last, p...)
	return len(p), nil
}
