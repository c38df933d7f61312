package real

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/logpipe/logpipe/devstack/internal/listener"
)

func TestPlainMediaTypes(t *testing.T) {
	cases := map[string]string{
		"application/vnd.elasticsearch+json; compatible-with=8":               "application/json",
		"application/vnd.elasticsearch+x-ndjson; compatible-with=8":           "application/x-ndjson",
		"application/vnd.elasticsearch+json;compatible-with=8; charset=utf-8": "application/json; charset=utf-8",
		"application/json":          "application/json",
		"text/plain; charset=utf-8": "text/plain; charset=utf-8",
		"application/vnd.elasticsearch+json; compatible-with=8, text/plain; q=0": "application/json, text/plain; q=0",
	}
	for in, want := range cases {
		h := http.Header{"Accept": {in}}
		plainMediaTypes(h, "Accept")
		if got := h.Get("Accept"); got != want {
			t.Errorf("Accept %q became %q, want %q", in, got, want)
		}
	}
}

// TestProxy: what Elasticsearch's client sends reaches the engine in plain
// media types, and every answer, the engine's or the proxy's own, carries
// the product header that the client requires.
func TestProxy(t *testing.T) {
	type seen struct{ contentType, accept, body, path string }
	got := make(chan seen, 1)
	engine := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Header.Get("Content-Type"), r.Header.Get("Accept"), string(b), r.URL.RequestURI()}
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"error":"no such index"}`)
	}))
	defer engine.Close()
	ln, err := listener.Listen("")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(engine.URL)
	p := serveProxy(ln, u, nil)
	defer p.Close()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

	body := "{\"create\":{}}\n{\"message\":\"a\"}\n"
	req, _ := http.NewRequest(http.MethodPost, "http://"+ln.Addr().String()+"/logs/_bulk?refresh=true", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/vnd.elasticsearch+x-ndjson; compatible-with=8")
	req.Header.Set("Accept", "application/vnd.elasticsearch+json; compatible-with=8")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	respBody, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	s := <-got
	if s.contentType != "application/x-ndjson" || s.accept != "application/json" {
		t.Errorf("engine saw Content-Type %q and Accept %q, want application/x-ndjson and application/json", s.contentType, s.accept)
	}
	if s.body != body || s.path != "/logs/_bulk?refresh=true" {
		t.Errorf("engine saw %s with body %q, want /logs/_bulk?refresh=true with %q", s.path, s.body, body)
	}
	if resp.StatusCode != http.StatusNotFound || string(respBody) != `{"error":"no such index"}` {
		t.Errorf("answer %s %q, want the engine's 404 as it was", resp.Status, respBody)
	}
	if h := resp.Header.Get("X-Elastic-Product"); h != "Elasticsearch" {
		t.Errorf("X-Elastic-Product %q on the engine's answer, want Elasticsearch", h)
	}

	// The engine gone: the proxy answers 502 itself, with the header.
	engine.Close()
	resp, err = client.Get("http://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	respBody, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || resp.Header.Get("X-Elastic-Product") != "Elasticsearch" ||
		!strings.Contains(string(respBody), u.Host) {
		t.Errorf("without the engine: %s, header %q, body %q; want 502 naming %s, with the product header",
			resp.Status, resp.Header.Get("X-Elastic-Product"), respBody, u.Host)
	}
}

func TestListenPicksPortBelowEphemeralRange(t *testing.T) {
	for range 20 {
		ln, err := listener.Listen("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if port < listener.PickLow || port >= listener.PickHigh {
			t.Fatalf("port %d, want in [%d, %d)", port, listener.PickLow, listener.PickHigh)
		}
	}
}
