package sink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sirupsen/logrus"

	"github.com/logpipe/logpipe/common/essec"
	"github.com/logpipe/logpipe/common/record"
	"github.com/logpipe/logpipe/devstack/esfake"
	"github.com/logpipe/logpipe/transfer/internal/backoff"
	"github.com/logpipe/logpipe/transfer/internal/dlq"
	"github.com/logpipe/logpipe/transfer/internal/document"
	"github.com/logpipe/logpipe/transfer/internal/esbulk"
	"github.com/logpipe/logpipe/transfer/internal/metrics"
)

const index = "logs-logpipe-default"

// letterBox is an in-memory dead-letter topic.
type letterBox struct {
	mu      sync.Mutex
	letters []dlq.Letter
}

func (l *letterBox) Send(ctx context.Context, letters []dlq.Letter) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.letters = append(l.letters, letters...)
	return ctx.Err()
}

func (l *letterBox) all() []dlq.Letter {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]dlq.Letter(nil), l.letters...)
}

type fixture struct {
	fake *esfake.Server
	url  string
	es   *esbulk.Client
	dlq  *letterBox
	m    *metrics.Metrics
	sink *Sink
}

// newFixture serves esfake (through wrap, when given) and builds a Sink on it.
func newFixture(t testing.TB, wrap func(http.Handler) http.Handler) *fixture {
	t.Helper()
	f := &fixture{fake: esfake.New(), dlq: &letterBox{}, m: metrics.New(prometheus.NewRegistry())}
	var h http.Handler = f.fake
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	f.url = srv.URL
	es, err := esbulk.New(essec.Config{ESAddresses: []string{srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(es.Close)
	f.es = es
	if err := es.PutTemplate(context.Background(), index, document.Template(index, document.Elasticsearch)); err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	f.sink = New(es, f.dlq, backoff.Policy{Min: time.Millisecond, Max: 10 * time.Millisecond}, f.m, log)
	return f
}

// batch makes a batch of the given messages of partition 0, from offset first on.
func batch(first int64, messages ...string) *Batch {
	b := NewBatch(index, document.Builder{ParseJSON: true})
	for i, m := range messages {
		var value []byte
		if strings.HasPrefix(m, "raw:") {
			value = []byte(strings.TrimPrefix(m, "raw:"))
		} else {
			r := record.Record{Timestamp: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC), Message: m, Job: "web"}
			value = r.AppendJSON(nil)
		}
		b.Add(&sarama.ConsumerMessage{Topic: "logs", Partition: 0, Offset: first + int64(i), Key: []byte("web"), Value: value})
	}
	return b
}

func ids(docs []esfake.Doc) string {
	var s []string
	for _, d := range docs {
		s = append(s, d.ID)
	}
	return strings.Join(s, ",")
}

func TestWrite(t *testing.T) {
	tests := map[string]struct {
		setup       func(f *fixture)
		messages    []string
		wantIDs     string
		wantLetters []string // type/status of each dead letter
		wantDups    float64
	}{
		"all indexed": {
			messages: []string{"a", "b", "c"},
			wantIDs:  "logs-0-0,logs-0-1,logs-0-2",
		},
		"409 counts as indexed": {
			setup: func(f *fixture) {
				if err := f.sink.Write(context.Background(), batch(0, "a")); err != nil {
					panic(err)
				}
			},
			messages: []string{"a", "b"},
			wantIDs:  "logs-0-0,logs-0-1",
			wantDups: 1,
		},
		"request 429 and 503 storms are retried": {
			setup: func(f *fixture) {
				f.fake.FailBulk(3, http.StatusTooManyRequests)
			},
			messages: []string{"a", "b"},
			wantIDs:  "logs-0-0,logs-0-1",
		},
		"item 429 and 503 are retried alone": {
			setup: func(f *fixture) {
				var n atomic.Int32
				f.fake.RejectItems(func(_, id string, _ []byte) (int, string, string, bool) {
					switch {
					case id == "logs-0-1" && n.Add(1) <= 3:
						return http.StatusTooManyRequests, "es_rejected_execution_exception", "rejected execution of coordinating operation", true
					case id == "logs-0-2" && n.Load() <= 2:
						return http.StatusServiceUnavailable, "unavailable_shards_exception", "no shard", true
					}
					return 0, "", "", false
				})
			},
			messages: []string{"a", "b", "c", "d"},
			wantIDs:  "logs-0-0,logs-0-1,logs-0-2,logs-0-3",
		},
		"json types that differ are all indexed": {
			messages: []string{`{"status":200}`, `{"status":"not a number"}`, `{"status":{"code":404}}`},
			wantIDs:  "logs-0-0,logs-0-1,logs-0-2",
		},
		"a document refused for its content goes to the dead-letter topic": {
			setup:       rejectContent("logs-0-1"),
			messages:    []string{"a", "b", "c"},
			wantIDs:     "logs-0-0,logs-0-2",
			wantLetters: []string{"document_parsing_exception/400"},
		},
		"invalid records go to the dead-letter topic": {
			messages:    []string{"a", "raw:not json", "b", `raw:{"message":"no timestamp"}`},
			wantIDs:     "logs-0-0,logs-0-2",
			wantLetters: []string{"invalid_record/0", "invalid_record/0"},
		},
		"only invalid records": {
			messages:    []string{"raw:"},
			wantIDs:     "",
			wantLetters: []string{"invalid_record/0"},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, nil)
			if tt.setup != nil {
				tt.setup(f)
			}
			dupsBefore := testutil.ToFloat64(f.m.DocsDuplicate)
			if err := f.sink.Write(context.Background(), batch(0, tt.messages...)); err != nil {
				t.Fatal(err)
			}
			if got := ids(f.fake.Docs(index)); got != tt.wantIDs {
				t.Fatalf("indexed %q, want %q", got, tt.wantIDs)
			}
			var letters []string
			for _, l := range f.dlq.all() {
				letters = append(letters, fmt.Sprintf("%s/%d", l.Type, l.Status))
				if l.Reason == "" || l.Msg == nil {
					t.Errorf("dead letter without reason or message: %+v", l)
				}
			}
			if fmt.Sprint(letters) != fmt.Sprint(tt.wantLetters) && !(len(letters) == 0 && len(tt.wantLetters) == 0) {
				t.Fatalf("dead letters %v, want %v", letters, tt.wantLetters)
			}
			if got := testutil.ToFloat64(f.m.DocsDuplicate) - dupsBefore; got != tt.wantDups {
				t.Fatalf("duplicates = %v, want %v", got, tt.wantDups)
			}
			dlqTotal := testutil.ToFloat64(f.m.DocsDLQ.WithLabelValues(metrics.ReasonRejected)) + testutil.ToFloat64(f.m.DocsDLQ.WithLabelValues(metrics.ReasonInvalidRecord))
			if int(dlqTotal) != len(tt.wantLetters) {
				t.Fatalf("transfer_docs_dlq_total = %v, want %d", dlqTotal, len(tt.wantLetters))
			}
			// None of these is a refusal: an overloaded node's 429 is retried as overload.
			if n := testutil.ToFloat64(f.m.Retries.WithLabelValues(metrics.RetryRefused)); n != 0 {
				t.Fatalf("%v retries counted as refused, want none", n)
			}
		})
	}
}

// rejectContent makes esfake refuse the documents ids as Elasticsearch
// refuses a value that does not fit its field.
func rejectContent(ids ...string) func(f *fixture) {
	return func(f *fixture) {
		f.fake.RejectItems(func(_, id string, _ []byte) (int, string, string, bool) {
			return http.StatusBadRequest, "document_parsing_exception",
				"[1:40] failed to parse field [json.n] of type [long] in document with id '" + id + "'", slices.Contains(ids, id)
		})
	}
}

func TestWriteRejectedLetterCarriesTheError(t *testing.T) {
	f := newFixture(t, nil)
	rejectContent("logs-0-1")(f)
	if err := f.sink.Write(context.Background(), batch(0, `{"n":1}`, `{"n":"x"}`)); err != nil {
		t.Fatal(err)
	}
	letters := f.dlq.all()
	if len(letters) != 1 {
		t.Fatalf("%d dead letters, want 1", len(letters))
	}
	l := letters[0]
	if l.Msg.Offset != 1 || l.Status != 400 || l.Type != "document_parsing_exception" || !strings.Contains(l.Reason, "json.n") {
		t.Fatalf("dead letter = %+v", l)
	}
}

func TestWriteSplitsTooLargeRequests(t *testing.T) {
	const limit = 600 // bytes: two documents fit, three do not
	f := newFixture(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/_bulk") && r.ContentLength > limit {
				w.Header().Set("X-Elastic-Product", "Elasticsearch")
				http.Error(w, "", http.StatusRequestEntityTooLarge)
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	huge := strings.Repeat("x", 2*limit)
	if err := f.sink.Write(context.Background(), batch(0, "a", "b", "c", "d", "e", huge, "f")); err != nil {
		t.Fatal(err)
	}
	if got, want := ids(f.fake.Docs(index)), "logs-0-0,logs-0-1,logs-0-2,logs-0-3,logs-0-4,logs-0-6"; got != want {
		t.Fatalf("indexed %q, want %q", got, want)
	}
	if l := f.dlq.all(); len(l) != 1 || l[0].Status != http.StatusRequestEntityTooLarge || l[0].Msg.Offset != 5 {
		t.Fatalf("dead letters = %+v, want the huge record with 413", l)
	}
}

func TestWriteWaitsOutAnOutage(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	f := newFixture(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if down.Load() && strings.HasSuffix(r.URL.Path, "/_bulk") {
				// Cut the connection without an answer.
				conn, _, err := w.(http.Hijacker).Hijack()
				if err == nil {
					conn.Close()
				}
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	done := make(chan error, 1)
	go func() { done <- f.sink.Write(context.Background(), batch(0, "a", "b")) }()
	deadline := time.Now().Add(time.Minute)
	for testutil.ToFloat64(f.m.Retries.WithLabelValues(metrics.RetryTransport)) < 3 {
		if time.Now().After(deadline) {
			t.Fatal("no transport retries")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("Write returned %v during the outage", err)
	default:
	}
	down.Store(false)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := f.fake.Count(index); n != 2 {
		t.Fatalf("Count = %d, want 2", n)
	}
}

func TestWriteGivesUpOnlyWithTheContext(t *testing.T) {
	f := newFixture(t, nil)
	f.fake.FailBulk(1<<30, http.StatusServiceUnavailable)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := f.sink.Write(ctx, batch(0, "a", "raw:bad"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Write = %v, want DeadlineExceeded", err)
	}
	if n := testutil.ToFloat64(f.m.Retries.WithLabelValues(metrics.RetryRequest)); n < 2 {
		t.Fatalf("%v request retries, want several", n)
	}
	if l := f.dlq.all(); len(l) != 0 {
		t.Fatalf("dead letters sent for an abandoned batch: %+v", l)
	}
}

func TestBatchBounds(t *testing.T) {
	b := batch(7, "a", "raw:bad", "c")
	if b.Len() != 3 || b.Last().Offset != 9 || b.Size() == 0 {
		t.Fatalf("Len %d Last %d Size %d", b.Len(), b.Last().Offset, b.Size())
	}
	if got := strings.Count(string(b.body), "\n"); got != 4 {
		t.Fatalf("body has %d lines, want 4 (two documents)", got)
	}
	b.Reset()
	if b.Len() != 0 || b.Size() != 0 || b.Last() != nil {
		t.Fatal("Reset left records behind")
	}
}

// TestRefusalsAreRetriedNotDeadLettered: refusals about the cluster or the
// credentials, for single items or the whole request, hold the batch back
// (retrying, counted, Ready red with the reason) and dead-letter nothing;
// once lifted, every record is indexed.
func TestRefusalsAreRetriedNotDeadLettered(t *testing.T) {
	items := func(status int, typ, reason string) func(f *fixture) {
		return func(f *fixture) {
			f.fake.RejectItems(func(_, _ string, _ []byte) (int, string, string, bool) {
				return status, typ, reason, true
			})
		}
	}
	// floodStage answers every bulk request, as a whole, what a node
	// answers while a cluster-wide flood-stage block is on, until lifted.
	var lifted atomic.Bool
	floodStage := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.HasSuffix(r.URL.Path, "/_bulk") || lifted.Load() {
				h.ServeHTTP(w, r)
				return
			}
			w.Header().Set("X-Elastic-Product", "Elasticsearch")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprint(w, `{"error":{"root_cause":[{"type":"cluster_block_exception","reason":"blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark, index has read-only-allow-delete block];"}],"type":"cluster_block_exception","reason":"blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark, index has read-only-allow-delete block];"},"status":429}`)
		})
	}
	tests := map[string]struct {
		wrap       func(http.Handler) http.Handler
		refuse     func(f *fixture)
		lift       func(f *fixture) // besides removing esfake's faults
		wantReason string           // label of transfer_es_refusals_total
		wantReady  string           // in Ready's error
	}{
		"flood-stage block": { // what Elasticsearch answers each item; esfake has no index blocks
			refuse: items(http.StatusTooManyRequests, "cluster_block_exception",
				"index [.ds-logs-logpipe-default-2026.11.21-000001] blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark, index has read-only-allow-delete block];"),
			wantReason: metrics.RefusedBlock,
			wantReady:  "429 cluster_block_exception: index [.ds-logs-logpipe-default",
		},
		"flood-stage block, whole request": {
			wrap:       floodStage,
			refuse:     func(*fixture) { lifted.Store(false) },
			lift:       func(*fixture) { lifted.Store(true) },
			wantReason: metrics.RefusedBlock,
			wantReady:  "429 cluster_block_exception: blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark",
		},
		"write block": {
			refuse:     items(http.StatusForbidden, "cluster_block_exception", "index [.ds-logs-logpipe-default-2026.11.21-000001] blocked by: [FORBIDDEN/8/index write (api)];"),
			wantReason: metrics.RefusedBlock, wantReady: "403 cluster_block_exception: index [.ds-logs-logpipe-default",
		},
		"missing privilege": {
			refuse:     items(http.StatusForbidden, "security_exception", "action [indices:data/write/bulk[s]] is unauthorized for user [transfer]"),
			wantReason: metrics.RefusedSecurity, wantReady: "403 security_exception: action [indices:data/write/bulk[s]]",
		},
		"missing index, auto-create off": {
			refuse:     items(http.StatusNotFound, "index_not_found_exception", "no such index [logs-logpipe-default]"),
			wantReason: metrics.RefusedIndexMissing, wantReady: "404 index_not_found_exception",
		},
		"closed index": {
			refuse:     items(http.StatusBadRequest, "index_closed_exception", "closed"),
			wantReason: metrics.RefusedIndexClosed, wantReady: "400 index_closed_exception",
		},
		"403 of another type": {
			refuse:     items(http.StatusForbidden, "access_denied", "no"),
			wantReason: metrics.RefusedForbidden, wantReady: "403 access_denied",
		},
		"bad credentials, whole request": {
			refuse:     func(f *fixture) { f.fake.FailBulk(1<<30, http.StatusUnauthorized) },
			wantReason: metrics.RefusedUnauthorized, wantReady: "401 exception",
		},
		"whole request forbidden": {
			refuse:     func(f *fixture) { f.fake.FailBulk(1<<30, http.StatusForbidden) },
			wantReason: metrics.RefusedForbidden, wantReady: "403",
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, tt.wrap)
			if strings.HasPrefix(tt.wantReady, "429 cluster_block_exception: index") {
				// The block is an index setting: make the data stream
				// first, with the documents of another batch.
				if err := f.sink.Write(context.Background(), batch(100, "before")); err != nil {
					t.Fatal(err)
				}
			}
			tt.refuse(f)
			done := make(chan error, 1)
			go func() {
				done <- f.sink.Write(context.Background(), batch(0, "a", `{"status":200}`, "raw:not a record"))
			}()

			refusals := f.m.Refusals.WithLabelValues(tt.wantReason)
			deadline := time.Now().Add(10 * time.Second)
			for testutil.ToFloat64(refusals) < 6 || testutil.ToFloat64(f.m.Retries.WithLabelValues(metrics.RetryRefused)) < 3 {
				if time.Now().After(deadline) {
					t.Fatalf("transfer_es_refusals_total{reason=%q} = %v, want several attempts", tt.wantReason, testutil.ToFloat64(refusals))
				}
				time.Sleep(time.Millisecond)
			}
			if err := f.sink.Ready(); err == nil || !strings.Contains(err.Error(), tt.wantReady) || !strings.Contains(err.Error(), index) {
				t.Fatalf("Ready = %v, want the refusal %q of %s", err, tt.wantReady, index)
			}
			select {
			case err := <-done:
				t.Fatalf("Write returned %v while refused", err)
			default:
			}
			if l := f.dlq.all(); len(l) != 0 {
				t.Fatalf("dead letters while refused: %+v", l)
			}

			f.fake.RejectItems(nil)
			f.fake.FailBulk(0, 0)
			if tt.lift != nil {
				tt.lift(f)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			got := ids(slices.DeleteFunc(f.fake.Docs(index), func(d esfake.Doc) bool { return d.ID == "logs-0-100" }))
			if want := "logs-0-0,logs-0-1"; got != want {
				t.Fatalf("indexed %q, want %q", got, want)
			}
			// Only the record that is not a record is dead-lettered.
			if l := f.dlq.all(); len(l) != 1 || l[0].Type != dlq.TypeInvalidRecord {
				t.Fatalf("dead letters = %+v, want the invalid record alone", l)
			}
			if err := f.sink.Ready(); err != nil {
				t.Fatalf("Ready = %v after the refusal was lifted", err)
			}
		})
	}
}

func TestRefusalOf(t *testing.T) {
	tests := map[string]struct {
		status int
		typ    string
		want   string
	}{
		"mapping error":         {400, "document_parsing_exception", ""},
		"mapper error":          {400, "mapper_parsing_exception", ""},
		"illegal argument":      {400, "illegal_argument_exception", ""},
		"closed index":          {400, "index_closed_exception", metrics.RefusedIndexClosed},
		"write block":           {403, "cluster_block_exception", metrics.RefusedBlock},
		"privileges":            {403, "security_exception", metrics.RefusedSecurity},
		"credentials":           {401, "security_exception", metrics.RefusedSecurity},
		"401 untyped":           {401, "", metrics.RefusedUnauthorized},
		"missing index":         {404, "index_not_found_exception", metrics.RefusedIndexMissing},
		"404 untyped":           {404, "", metrics.RefusedNotFound},
		"other 4xx":             {408, "", metrics.RefusedOther},
		"conflict":              {409, "version_conflict_engine_exception", ""},
		"too large":             {413, "", ""},
		"busy":                  {429, "es_rejected_execution_exception", ""},
		"429 untyped":           {429, "", ""},
		"flood-stage watermark": {429, "cluster_block_exception", metrics.RefusedBlock},
		"no master":             {503, "cluster_block_exception", ""},
		"created":               {201, "", ""},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := refusalOf(tt.status, tt.typ); got != tt.want {
				t.Fatalf("refusalOf(%d, %q) = %q, want %q", tt.status, tt.typ, got, tt.want)
			}
		})
	}
}
