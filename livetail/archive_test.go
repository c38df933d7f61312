package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/logpipe/logpipe/common/conf"
	"github.com/logpipe/logpipe/devstack/proc"
	"github.com/logpipe/logpipe/devstack/stack"
	"github.com/logpipe/logpipe/livetail/internal/archive"
)

// configAnswer is GET /api/v1/config's answer.
type configAnswer struct {
	KibanaURL *string `json:"kibana_url"`
	Archive   bool    `json:"archive"`
	MaxJobs   int     `json:"max_jobs"`
	ESIndex   string  `json:"es_index"`
}

func getConfig(t testing.TB, base string) configAnswer {
	t.Helper()
	code, body := httpGet(t, base+"/api/v1/config")
	var c configAnswer
	if err := json.Unmarshal([]byte(body), &c); code != http.StatusOK || err != nil {
		t.Fatalf("/api/v1/config: %d %q: %v", code, body, err)
	}
	return c
}

// TestViewerConfig: /api/v1/config tells the viewer, without a token,
// whether there is an archive and where Kibana is.
func TestViewerConfig(t *testing.T) {
	s := newKafka(t)
	cfg := testConfig(s)
	cfg.Auth.Value = "jwt" // the config needs no token all the same
	cfg.JWTSecret = testSecret
	c := getConfig(t, "http://"+startServer(t, cfg).Addr())
	if c.KibanaURL != nil || c.Archive || c.MaxJobs != 10 || c.ESIndex != "logs-logpipe-default" {
		t.Fatalf("without an archive or Kibana: %+v", c)
	}
}

// TestArchiveAtStart: an index that does not answer at start is a
// warning, /readyz says so, and context comes from Kafka meanwhile; an
// index that refuses livetail's credential stops livetail at start with
// one line naming the endpoint, never the secret.
func TestArchiveAtStart(t *testing.T) {
	s := newKafka(t)
	pl := newPlaced(t, s)
	off := pl.send(t, 0, "web", fileLine("web", "00000000000000a1", 0))

	// Nothing listens on the address of a listener closed at once.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + l.Addr().String()
	l.Close()
	cfg := testConfig(s)
	cfg.ESAddresses = conf.List{down}
	cfg.KibanaURL = "https://kibana.example.com"
	ts := startServer(t, cfg)
	base := "http://" + ts.Addr()
	if !strings.Contains(ts.logs.String(), "the archive's index does not answer yet") {
		t.Errorf("no warning at start; log:\n%s", ts.logs.String())
	}
	code, body := httpGet(t, base+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "archive index logs-logpipe-default at "+down) {
		t.Errorf("/readyz: %d %q, want 503 naming the archive", code, body)
	}
	if c := getConfig(t, base); !c.Archive || c.KibanaURL == nil || *c.KibanaURL != cfg.KibanaURL {
		t.Errorf("config %+v", c)
	}
	if code, a := getContext(t, base, fmt.Sprintf("job=web&partition=0&offset=%d", off), ""); code != http.StatusOK || a.From != "kafka" {
		t.Errorf("context while the index is down: %d %+v", code, a)
	}

	// A secured search engine, and a wrong password. (stack.Stack.ESURL
	// says http even for a secured stack: the backends' own says https.)
	es := stack.New(t, stack.Options{Secure: true, Without: []string{stack.Etcd, stack.Kafka}})
	cfg = testConfig(s)
	cfg.ESAddresses = conf.List{es.Stack.ESURL()}
	cfg.ESCAFile = es.Security().PKI.CAFile
	cfg.ESUsername, cfg.ESPassword = "logpipe", "not-the-password"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	_, err = newServer(context.Background(), cfg, &proc.Buffer{})
	if !errors.Is(err, archive.ErrRefused) || !strings.Contains(err.Error(), es.Stack.ESURL()+" answered 401") ||
		strings.Contains(err.Error(), "not-the-password") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("a refused credential at start: %v, want one line naming %s and 401, without the password", err, es.Stack.ESURL())
	}
	cfg.ESPassword = es.Security().ESPassword
	ts = startServer(t, cfg)
	if code, body := httpGet(t, "http://"+ts.Addr()+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz with the right password: %d %q", code, body)
	}
}

// TestContextFromIndex: with an index, the context of a line it holds is
// read from it (three searches), the same entries as Kafka's; a line not
// indexed yet is read from Kafka. On esfake and on OpenSearch.
func TestContextFromIndex(t *testing.T) {
	stack.ForBackends(t, testContextFromIndex)
}

func testContextFromIndex(t *testing.T, kind string) {
	s := stack.New(t, stack.Options{Backends: kind, Without: []string{stack.Etcd}, Partitions: 3})
	esIndex := s.Index("logs-logpipe-context")
	installTemplate(t, s, esIndex)
	pl := newPlaced(t, s)
	var offs []int64
	var bulk strings.Builder
	for i := 0; i < 120; i++ {
		offs = append(offs, pl.send(t, 0, "web", fileLine("web", "00000000000000a1", i)))
		pl.send(t, 0, "db", fileLine("db", "00000000000000d1", i))
		if i < 100 { // transfer has indexed the first 100 lines
			k := [2]int64{0, offs[i]}
			fmt.Fprintf(&bulk, `{"create":{"_id":"x-0-%d"}}`+"\n"+`%s,"kafka":{"topic":%q,"partition":0,"offset":%d}}`+"\n",
				offs[i], strings.TrimSuffix(string(pl.recs[k]), "}"), pl.topic, offs[i])
		}
	}
	esCall(t, s.ESURL(), http.MethodPost, "/"+esIndex+"/_bulk?refresh=true", bulk.String())

	cfg := testConfig(s)
	cfg.ESAddresses = conf.List{s.ESURL()}
	cfg.ESIndex = esIndex
	ts := startServer(t, cfg)
	base := "http://" + ts.Addr()
	check := func(line int, before, after []int64, from string) {
		t.Helper()
		code, a := getContext(t, base, fmt.Sprintf("job=web&partition=0&offset=%d&before=%d&after=%d", offs[line], len(before), len(after)), "")
		if code != http.StatusOK || a.From != from || string(a.Line) != string(pl.entry(0, offs[line])) {
			t.Fatalf("line %d: %d, from %q (want %s), %s %s", line, code, a.From, from, a.Line, a.Error)
		}
		for _, side := range []struct {
			got  []json.RawMessage
			want []int64
		}{{a.Before, before}, {a.After, after}} {
			if len(side.got) != len(side.want) {
				t.Fatalf("line %d: %d lines, want %d", line, len(side.got), len(side.want))
			}
			for i, o := range side.want {
				if string(side.got[i]) != string(pl.entry(0, o)) {
					t.Fatalf("line %d, neighbour %d:\n got %s\nwant %s", line, i, side.got[i], pl.entry(0, o))
				}
			}
		}
	}
	check(50, offs[40:50], offs[51:61], "index")
	check(98, offs[88:98], offs[99:100], "index") // the index's neighbours: it holds lines up to 99
	check(110, offs[100:110], offs[111:120], "kafka")
	if m := ts.metric(t, "livetail_archive_searches_total"); m < 6 {
		t.Errorf("livetail_archive_searches_total %v, want at least 6 (three per context from the index)", m)
	}
}

// installTemplate installs transfer's index template (configs/, which
// transfer's tests keep equal to what it installs) for index alone.
func installTemplate(t testing.TB, s *stack.Stack, index string) {
	t.Helper()
	file := "index-template.json"
	if s.Backends() == stack.Real {
		file = "index-template-opensearch.json"
	}
	raw, err := os.ReadFile(filepath.Join("..", "configs", file))
	if err != nil {
		t.Fatal(err)
	}
	var tmpl map[string]any
	if err := json.Unmarshal(raw, &tmpl); err != nil {
		t.Fatal(err)
	}
	tmpl["index_patterns"] = []string{index}
	delete(tmpl, "composed_of")
	body, _ := json.Marshal(tmpl)
	esCall(t, s.ESURL(), http.MethodPut, "/_index_template/"+index, string(body))
	t.Cleanup(func() {
		esCall(t, s.ESURL(), http.MethodDelete, "/_data_stream/"+index, "")
		esCall(t, s.ESURL(), http.MethodDelete, "/_index_template/"+index, "")
	})
}

func esCall(t testing.TB, base, method, path, body string) {
	t.Helper()
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	if res.StatusCode >= 300 && method != http.MethodDelete || strings.Contains(string(out), `"errors":true`) {
		t.Fatalf("%s %s: %d %s", method, path, res.StatusCode, out)
	}
}
