package esbulk

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/logpipe/logpipe/common/essec"
	"github.com/logpipe/logpipe/devstack/esfake"
	"github.com/logpipe/logpipe/devstack/proc"
	"github.com/logpipe/logpipe/transfer/internal/backoff"
)

func TestReadItems(t *testing.T) {
	tests := map[string]struct {
		body    string
		n       int
		want    []int // statuses
		wantErr bool
	}{
		"no errors: items not decoded": {
			body: `{"errors":false,"took":1,"items":[{"create":{"status":201}},{"create":{"status":201}}]}`,
			n:    2, want: []int{201, 201},
		},
		"errors after items": {
			body: `{"took":1,"items":[{"create":{"status":201}},{"create":{"status":409,"error":{"type":"version_conflict_engine_exception","reason":"exists"}}}],"errors":true}`,
			n:    2, want: []int{201, 409},
		},
		"mixed": {
			body: `{"errors":true,"items":[{"create":{"_index":"x","status":201}},{"create":{"status":400,"error":{"type":"document_parsing_exception","reason":"bad","caused_by":{"type":"illegal_argument_exception","reason":"For input string"}}}},{"index":{"status":429}}]}`,
			n:    3, want: []int{201, 400, 429},
		},
		"too few items":  {body: `{"errors":true,"items":[{"create":{"status":201}}]}`, n: 2, wantErr: true},
		"no items":       {body: `{"errors":true}`, n: 1, wantErr: true},
		"not json":       {body: `<html>`, n: 1, wantErr: true},
		"two ops a item": {body: `{"errors":true,"items":[{"create":{"status":201},"index":{"status":201}}]}`, n: 1, wantErr: true},
		"truncated":      {body: `{"errors":true,"items":[{"create":{"status":201}`, n: 1, wantErr: true},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := readItems(strings.NewReader(tt.body), tt.n, nil)
			if tt.wantErr {
				if !errors.Is(err, ErrResponse) {
					t.Fatalf("readItems error = %v, want ErrResponse", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var statuses []int
			for _, it := range got {
				statuses = append(statuses, it.Status)
			}
			if fmt.Sprint(statuses) != fmt.Sprint(tt.want) {
				t.Fatalf("statuses = %v, want %v", statuses, tt.want)
			}
		})
	}
	got, _ := readItems(strings.NewReader(tests["mixed"].body), 3, nil)
	if e := got[1].Error; e == nil || e.Type != "document_parsing_exception" || e.CausedBy == nil || e.CausedBy.Type != "illegal_argument_exception" {
		t.Fatalf("item error = %+v", got[1].Error)
	}
}

func TestAppendCreate(t *testing.T) {
	got := string(AppendCreate([]byte("x"), "logs-logpipe-default", []byte("logs-1-2")))
	want := "x" + `{"create":{"_index":"logs-logpipe-default","_id":"logs-1-2"}}` + "\n"
	if got != want {
		t.Fatalf("AppendCreate = %q, want %q", got, want)
	}
}

// TestNewNeedsAnAddress: transfer cannot run without the search engine
// (the --es-* values themselves are checked by essec.Config.Validate).
func TestNewNeedsAnAddress(t *testing.T) {
	if _, err := New(essec.Config{}); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "no Elasticsearch address") {
		t.Fatalf("New without an address = %v, want ErrConfig naming the address", err)
	}
}

// newFake serves an esfake server over HTTP for one test.
func newFake(t testing.TB, opts ...esfake.Option) (*esfake.Server, *httptest.Server) {
	t.Helper()
	fake := esfake.New(opts...)
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	return fake, srv
}

func newClient(t testing.TB, cfg essec.Config) *Client {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func discardLog() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

const index = "logs-logpipe-test"

func body(ids ...string) []byte {
	var b []byte
	for _, id := range ids {
		b = AppendCreate(b, index, []byte(id))
		b = append(b, `{"@timestamp":"2026-11-21T10:00:00.000000Z","message":"m`+id+`"}`+"\n"...)
	}
	return b
}

var template = []byte(`{"index_patterns":["` + index + `"],"data_stream":{},"priority":200}`)

func TestBulkAgainstEsfake(t *testing.T) {
	fake, srv := newFake(t)
	c := newClient(t, essec.Config{ESAddresses: []string{srv.URL}})
	ctx := context.Background()

	if err := c.PutTemplate(ctx, index, template); err != nil {
		t.Fatal(err)
	}
	items, err := c.Bulk(ctx, body("a", "b"), 2, nil)
	if err != nil || len(items) != 2 || !items[0].OK() || !items[1].OK() {
		t.Fatalf("first bulk = %+v, %v", items, err)
	}
	items, err = c.Bulk(ctx, body("b", "c"), 2, items)
	if err != nil || len(items) != 2 || items[0].Status != http.StatusConflict || !items[1].OK() {
		t.Fatalf("second bulk = %+v, %v", items, err)
	}
	if items[0].Error == nil || items[0].Error.Type != "version_conflict_engine_exception" {
		t.Fatalf("conflict error = %+v", items[0].Error)
	}
	if n := fake.Count(index); n != 3 {
		t.Fatalf("Count = %d, want 3", n)
	}

	fake.RejectItems(func(_, id string, _ []byte) (int, string, string, bool) {
		return http.StatusBadRequest, "document_parsing_exception", "no " + id, id == "e"
	})
	items, err = c.Bulk(ctx, body("d", "e"), 2, items)
	if err != nil || !items[0].OK() || items[1].Status != http.StatusBadRequest || items[1].Error.Reason != "no e" {
		t.Fatalf("rejecting bulk = %+v, %v", items, err)
	}

	for _, status := range []int{http.StatusTooManyRequests, http.StatusServiceUnavailable} {
		fake.FailBulk(1, status)
		_, err = c.Bulk(ctx, body("f"), 1, items)
		var se *StatusError
		if !errors.As(err, &se) || se.Status != status || se.Type == "" {
			t.Fatalf("failed bulk error = %v, want a StatusError %d with a type", err, status)
		}
	}
	if err := c.Health(); err == nil {
		t.Fatal("Health() = nil after a 503")
	}
	if _, err := c.Bulk(ctx, body("f"), 1, items); err != nil {
		t.Fatal(err)
	}
	if err := c.Health(); err != nil {
		t.Fatalf("Health() = %v after a good bulk", err)
	}
}

func TestBulkUnreachable(t *testing.T) {
	// An address that refuses connections for the whole test: a port
	// closed after use could be taken by another process meanwhile.
	addr := proc.NewRelay(t).Addr()
	c := newClient(t, essec.Config{ESAddresses: []string{"http://" + addr}})
	_, err := c.Bulk(context.Background(), body("a"), 1, nil)
	var se *StatusError
	if err == nil || errors.As(err, &se) {
		t.Fatalf("Bulk to a closed port = %v, want a transport error", err)
	}
	if c.Health() == nil || c.Ready() == nil {
		t.Fatal("Health and Ready are nil after a transport error")
	}
}

func TestCredentialsAreSent(t *testing.T) {
	tests := map[string]struct {
		cfg  essec.Config
		want string
	}{
		"basic":   {essec.Config{ESUsername: "elastic", ESPassword: "s3cret"}, "Basic ZWxhc3RpYzpzM2NyZXQ="},
		"api key": {essec.Config{ESAPIKey: "a2V5OnNlY3JldA=="}, "APIKey a2V5OnNlY3JldA=="},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got := make(chan string, 1)
			fake := esfake.New()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				select {
				case got <- r.Header.Get("Authorization"):
				default:
				}
				fake.ServeHTTP(w, r)
			}))
			t.Cleanup(srv.Close)
			tt.cfg.ESAddresses = []string{srv.URL}
			c := newClient(t, tt.cfg)
			if err := c.Ping(context.Background()); err != nil {
				t.Fatal(err)
			}
			if a := <-got; a != tt.want {
				t.Fatalf("Authorization = %q, want %q", a, tt.want)
			}
		})
	}
}

func TestMaintainInstallsTemplateOnceReachable(t *testing.T) {
	fake := esfake.New()
	var up atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			http.Error(w, `{"error":{"type":"unavailable","reason":"starting"},"status":503}`, http.StatusServiceUnavailable)
			return
		}
		fake.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	c := newClient(t, essec.Config{ESAddresses: []string{srv.URL}})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		done <- c.Maintain(ctx, Setup{
			TemplateName: index, Template: func(Info) []byte { return template },
			Backoff:   backoff.Policy{Min: time.Millisecond, Max: 5 * time.Millisecond},
			PingEvery: 10 * time.Millisecond,
		}, discardLog())
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Maintain = %v", err)
		}
	}()

	waitFor(t, func() bool { return c.Ready() != nil && strings.Contains(c.Ready().Error(), "503") })
	select {
	case <-c.Installed():
		t.Fatal("Installed before Elasticsearch answered")
	default:
	}
	up.Store(true)
	<-c.Installed()
	waitFor(t, func() bool { return c.Ready() == nil })

	// An outage while idle shows in Ready through the pings.
	up.Store(false)
	waitFor(t, func() bool { return c.Ready() != nil })
	up.Store(true)
	waitFor(t, func() bool { return c.Ready() == nil })

	res, err := http.Get(srv.URL + "/_index_template/" + index)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var got struct {
		IndexTemplates []struct{ Name string } `json:"index_templates"`
	}
	if err := json.NewDecoder(res.Body).Decode(&got); err != nil || len(got.IndexTemplates) != 1 {
		t.Fatalf("template lookup = %+v, %v", got, err)
	}
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute) // generous, for a loaded machine
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within a minute")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestTLSWithCAFile(t *testing.T) {
	srv := httptest.NewTLSServer(esfake.New())
	t.Cleanup(srv.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	trusted := newClient(t, essec.Config{ESAddresses: []string{srv.URL}, ESCAFile: caFile})
	if err := trusted.Ping(context.Background()); err != nil {
		t.Fatalf("Ping with the CA file: %v", err)
	}
	untrusted := newClient(t, essec.Config{ESAddresses: []string{srv.URL}})
	if err := untrusted.Ping(context.Background()); err == nil {
		t.Fatal("Ping without the CA file succeeded")
	}
}

// TestMaintainCreatesTheComponentOnlyWhenAbsent: the component template
// belongs to the operators; the index template is chosen for the engine
// that GET / names.
func TestMaintainCreatesTheComponentOnlyWhenAbsent(t *testing.T) {
	for name, existing := range map[string]string{
		"absent":  "",
		"present": `{"template":{"settings":{"index":{"lifecycle":{"name":"logs-30d"}}}}}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, srv := newFake(t)
			if existing != "" {
				put(t, srv.URL+"/_component_template/custom", existing)
			}
			c := newClient(t, essec.Config{ESAddresses: []string{srv.URL}})
			var asked Info
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error)
			go func() {
				done <- c.Maintain(ctx, Setup{
					TemplateName: index,
					Template: func(i Info) []byte {
						asked = i
						return []byte(`{"index_patterns":["` + index + `"],"data_stream":{},"priority":200,"composed_of":["custom"]}`)
					},
					Component: "custom", ComponentBody: []byte(`{"template":{}}`),
					Backoff:   backoff.Policy{Min: time.Millisecond, Max: 5 * time.Millisecond},
					PingEvery: time.Hour,
				}, discardLog())
			}()
			<-c.Installed()
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if asked.Distribution != "" || asked.Version == "" {
				t.Errorf("Template got %+v, want esfake's Elasticsearch version", asked)
			}
			var got struct {
				ComponentTemplates []struct {
					ComponentTemplate struct {
						Template map[string]any `json:"template"`
					} `json:"component_template"`
				} `json:"component_templates"`
			}
			get(t, srv.URL+"/_component_template/custom", &got)
			want := map[string]any{}
			if existing != "" {
				var body struct {
					Template map[string]any `json:"template"`
				}
				if err := json.Unmarshal([]byte(existing), &body); err != nil {
					t.Fatal(err)
				}
				want = body.Template
			}
			if len(got.ComponentTemplates) != 1 || !reflect.DeepEqual(got.ComponentTemplates[0].ComponentTemplate.Template, want) {
				t.Fatalf("component template = %+v, want template %v", got, want)
			}
		})
	}
}

func TestInfoTellsOpenSearch(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"name":"n","version":{"distribution":"opensearch","number":"2.19.6"},"tagline":"The OpenSearch Project"}`)
	}))
	t.Cleanup(srv.Close)
	c := newClient(t, essec.Config{ESAddresses: []string{srv.URL}})
	info, err := c.Info(context.Background())
	if err != nil || info.Distribution != "opensearch" || info.Version != "2.19.6" {
		t.Fatalf("Info = %+v, %v", info, err)
	}
}

func put(t testing.TB, url, body string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("PUT %s: %d %s", url, res.StatusCode, b)
	}
}

func get(t testing.TB, url string, v any) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if err := json.NewDecoder(res.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// TestMaintainTakesTheTemplateTheClusterChooses: another index template
// that matches the data stream with transfer's priority (the cluster then
// refuses transfer's) or a higher one decides how the data stream is
// made. Maintain uses it as it is when it makes data streams, and stops at
// once with ErrTemplateConflict, naming it, when it does not.
func TestMaintainTakesTheTemplateTheClusterChooses(t *testing.T) {
	const ours = `{"index_patterns":["` + index + `"],"data_stream":{},"priority":200,"_meta":{"managed_by":"logpipe-transfer"}}`
	other := func(priority int, dataStream bool, managedBy string) string {
		ds := ""
		if dataStream {
			ds = `"data_stream":{},`
		}
		return fmt.Sprintf(`{"index_patterns":["logs-logpipe-*"],%s"priority":%d,"_meta":{"managed_by":%q}}`, ds, priority, managedBy)
	}
	tests := map[string]struct {
		other    string // installed as "mine" first; "" for none
		chosen   string // the template the data stream is made from
		conflict bool
		warning  string
		own      string // what the warning says of transfer's own template
	}{
		"no other template":                     {chosen: index},
		"another one with a lower priority":     {other: other(150, true, ""), chosen: index},
		"a copy of ours with the same priority": {other: other(200, true, "logpipe-transfer"), chosen: "mine", warning: "a copy of logpipe's", own: "is not installed"},
		"another one with a higher priority":    {other: other(300, true, "someone"), chosen: "mine", warning: "which is not logpipe's", own: "is installed but has a lower priority"},
		"same priority, no data stream":         {other: other(200, false, ""), conflict: true},
		"higher priority, no data stream":       {other: other(300, false, ""), conflict: true},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, srv := newFake(t)
			if tt.other != "" {
				put(t, srv.URL+"/_index_template/mine", tt.other)
			}
			c := newClient(t, essec.Config{ESAddresses: []string{srv.URL}})
			log, hook := logtest.NewNullLogger()
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				done <- c.Maintain(ctx, Setup{
					Index: index, TemplateName: index, ManagedBy: "logpipe-transfer",
					Template: func(Info) []byte { return []byte(ours) },
					Backoff:  backoff.Policy{Min: time.Millisecond, Max: 5 * time.Millisecond}, PingEvery: time.Hour,
				}, log)
			}()
			if tt.conflict {
				err := <-done
				cancel()
				if !errors.Is(err, ErrTemplateConflict) || !strings.Contains(err.Error(), "index template mine (patterns [logs-logpipe-*]") ||
					!strings.Contains(err.Error(), "makes no data stream") {
					t.Fatalf("Maintain = %v, want ErrTemplateConflict naming mine", err)
				}
				select {
				case <-c.Installed():
					t.Fatal("Installed after a conflict")
				default:
				}
				return
			}
			<-c.Installed()
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			chosen, err := c.ChosenTemplate(context.Background(), index)
			if err != nil || chosen == nil || chosen.Name != tt.chosen {
				t.Fatalf("ChosenTemplate = %+v, %v; want %s", chosen, err, tt.chosen)
			}
			var warnings []string
			for _, e := range hook.AllEntries() {
				if e.Level == logrus.WarnLevel {
					warnings = append(warnings, e.Message)
				}
			}
			switch {
			case tt.warning == "" && len(warnings) > 0:
				t.Errorf("warnings %q, want none", warnings)
			case tt.warning != "" && (len(warnings) != 1 || !strings.Contains(warnings[0], tt.warning) ||
				!strings.Contains(warnings[0], "takes index template mine") || !strings.Contains(warnings[0], tt.own)):
				t.Errorf("warnings %q, want one saying %q and %q", warnings, tt.warning, tt.own)
			}
		})
	}
}

func TestGlobMatch(t *testing.T) {
	for _, tt := range []struct {
		pattern, name string
		want          bool
	}{
		{"logs-logpipe-default", "logs-logpipe-default", true},
		{"logs-logpipe-default", "logs-logpipe-default2", false},
		{"logs-*-*", "logs-logpipe-default", true},
		{"logs-*-*", "logs-logpipe", false},
		{"*", "anything", true},
		{"logs-*", "logs-", true},
		{"*-default", "logs-logpipe-default", true},
		{"l*p*e-d*t", "logs-logpipe-default", true},
		{"l*x*", "logs-logpipe-default", false},
	} {
		if got := globMatch(tt.pattern, tt.name); got != tt.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
		}
	}
}
