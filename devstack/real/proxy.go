package real

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/logpipe/logpipe/devstack/internal/esauth"
)

// proxyShutdownLimit bounds how long Close waits for requests in progress.
const proxyShutdownLimit = 2 * time.Second

// proxy makes OpenSearch answer Elasticsearch clients. Elasticsearch's Go
// client (v8) refuses a server whose responses lack the header
// "X-Elastic-Product: Elasticsearch", and sends its bodies as
// application/vnd.elasticsearch+json; compatible-with=8, which OpenSearch
// refuses with 406. The proxy adds the header to every response and
// rewrites those media types in Content-Type and Accept to the plain ones
// (application/json, application/x-ndjson). Everything else passes as is.
type proxy struct {
	ln  net.Listener
	srv *http.Server
	tr  *http.Transport
	wg  sync.WaitGroup
}

// serveProxy serves on ln, forwarding to engine (such as
// http://127.0.0.1:9201); with sec, over HTTPS behind basic auth.
func serveProxy(ln net.Listener, engine *url.URL, sec *OpenSearchSecurity) *proxy {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 32
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(engine)
			r.SetXForwarded()
			plainMediaTypes(r.Out.Header, "Content-Type")
			plainMediaTypes(r.Out.Header, "Accept")
		},
		Transport: tr,
		ModifyResponse: func(resp *http.Response) error {
			resp.Header.Set("X-Elastic-Product", "Elasticsearch")
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			w.Header().Set("X-Elastic-Product", "Elasticsearch")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadGateway)
			fmt.Fprintf(w, `{"error":{"type":"proxy_error","reason":%q},"status":502}`,
				"OpenSearch at "+engine.Host+" did not answer: "+err.Error())
		},
	}
	var h http.Handler = rp
	serveOn := ln
	if sec != nil {
		h = esauth.Wrap(rp, sec.User, sec.Password)
		serveOn = tls.NewListener(ln, sec.ServerTLS)
	}
	p := &proxy{ln: ln, tr: tr, srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}}
	p.wg.Go(func() { _ = p.srv.Serve(serveOn) })
	return p
}

// Close lets requests in progress finish for a moment, then closes every
// connection and waits for the server to stop.
func (p *proxy) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), proxyShutdownLimit)
	defer cancel()
	err := p.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = p.srv.Close()
	}
	p.wg.Wait()
	p.tr.CloseIdleConnections()
	return err
}

// plainMediaTypes replaces Elasticsearch's versioned media types in the
// header key (application/vnd.elasticsearch+json; compatible-with=8) by
// the plain ones (application/json), keeping other parameters.
func plainMediaTypes(h http.Header, key string) {
	vals := h.Values(key)
	if len(vals) == 0 {
		return
	}
	changed := false
	out := make([]string, 0, len(vals))
	for _, v := range vals {
		parts := strings.Split(v, ",")
		for i, part := range parts {
			parts[i] = strings.TrimSpace(part)
			mt, params, err := mime.ParseMediaType(parts[i])
			if err != nil {
				continue
			}
			rest, ok := strings.CutPrefix(mt, "application/vnd.elasticsearch+")
			if !ok {
				continue
			}
			delete(params, "compatible-with")
			parts[i] = mime.FormatMediaType("application/"+rest, params)
			changed = true
		}
		out = append(out, strings.Join(parts, ", "))
	}
	if changed {
		h[http.CanonicalHeaderKey(key)] = out
	}
}
