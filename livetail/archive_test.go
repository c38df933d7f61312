package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
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
