package real

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/logpipe/logpipe/devstack/internal/listener"
)

// openSearchReady prefixes the line in which the OpenSearch main tells its
// HTTP address (see opensearch/src).
const openSearchReady = "devstack-opensearch http "

// OpenSearchOptions says how to run the OpenSearch node.
type OpenSearchOptions struct {
	// Addr is the proxy's listen address, where Elasticsearch clients
	// connect, such as 127.0.0.1:9200. "" means 127.0.0.1:0; port 0
	// means a random free port below 32768. OpenSearch itself binds a
	// free port of a random range below 32768 (see EngineURL).
	Addr string

	// DataDir holds the node's home: its log (opensearch.log) and data
	// (data/), kept after Close for a later start. "" means a temporary
	// folder removed by Close.
	DataDir string

	// Security, when set, makes the proxy serve HTTPS with basic auth,
	// answering a request without the user's credentials as Elasticsearch
	// does (401). OpenSearch's own port stays plain HTTP on loopback.
	Security *OpenSearchSecurity

	Log logrus.FieldLogger // optional
}

// OpenSearchSecurity is the proxy's TLS and its one user.
type OpenSearchSecurity struct {
	ServerTLS *tls.Config // the proxy's certificate
	ClientTLS *tls.Config // devstack's own client: trusts the CA
	User      string
	Password  string
}

// OpenSearch is a running single OpenSearch node (single-node discovery,
// no security plugin, disk watermarks off, indices created on first use,
// no replicas unless an index asks for them) and the proxy in front of it.
type OpenSearch struct {
	dist    Dist
	log     logrus.FieldLogger
	dir     string
	tmp     bool
	j       *jvm
	engine  *url.URL
	proxy   *proxy
	version string
	sec     *OpenSearchSecurity

	closeOnce sync.Once
	closeErr  error
}

// StartOpenSearch starts the node and the proxy and returns once the
// cluster's health is yellow or green through the proxy, or ctx ends (a
// cold JVM takes ten seconds or more).
func StartOpenSearch(ctx context.Context, dist Dist, opts OpenSearchOptions) (*OpenSearch, error) {
	if opts.Log == nil {
		opts.Log = discard()
	}
	o := &OpenSearch{dist: dist, log: opts.Log.WithField("backend", "opensearch"), dir: opts.DataDir, sec: opts.Security}
	ln, err := listener.Listen(opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("opensearch proxy: %w", err)
	}
	if err := o.start(ctx, ln); err != nil {
		ln.Close() // unless the proxy serves on it, and closes it
		return nil, errors.Join(err, o.Close())
	}
	return o, nil
}

// start starts the node and the proxy on ln, and waits until they serve.
func (o *OpenSearch) start(ctx context.Context, ln net.Listener) error {
	var err error
	if o.dir == "" {
		if o.dir, err = os.MkdirTemp("", "logpipe-opensearch-"); err != nil {
			return fmt.Errorf("opensearch: %w", err)
		}
		o.tmp = true
	} else if err := os.MkdirAll(o.dir, 0o755); err != nil {
		return fmt.Errorf("opensearch: data folder: %w", err)
	}
	if err := writeLogConfig(o.dir); err != nil {
		return fmt.Errorf("opensearch: %w", err)
	}
	begin := time.Now()
	bound := make(chan string, 1)
	onLine := func(line string) {
		if _, addr, ok := strings.Cut(line, openSearchReady); ok {
			select {
			case bound <- strings.TrimSpace(addr):
			default:
			}
		}
	}
	args := []string{
		"-Xms512m", "-Xmx512m", "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
		"-Dlog4j2.disable.jmx=true", "-Dio.netty.allocator.numDirectArenas=0",
		"-cp", o.dist.openSearchClassPath(), "io.logpipe.devstack.opensearch.Main",
		o.dir, randomRange(100), randomRange(100),
	}
	if o.j, err = startJVM("opensearch", o.dist.Java, args, filepath.Join(o.dir, "opensearch.log"), o.log, onLine); err != nil {
		return fmt.Errorf("opensearch: %w", err)
	}
	select {
	case addr := <-bound:
		o.engine = &url.URL{Scheme: "http", Host: addr}
	case <-o.j.exited:
		return fmt.Errorf("opensearch: %w", o.j.failed(fmt.Sprintf("exited while starting (%v)", o.j.err)))
	case <-ctx.Done():
		return fmt.Errorf("opensearch: %w", o.j.failed(fmt.Sprintf("did not bind its HTTP port: %v", context.Cause(ctx))))
	}
	o.proxy = serveProxy(ln, o.engine, o.sec)
	if err := o.waitReady(ctx); err != nil {
		return fmt.Errorf("opensearch: %w", err)
	}
	o.j.ready.Store(true)
	o.log.WithFields(logrus.Fields{"url": o.URL(), "engine": o.engine.String(), "pid": o.j.PID(),
		"took": time.Since(begin).Round(time.Millisecond)}).Info("opensearch ready")
	return nil
}

// URL is the proxy's URL, for Elasticsearch clients, such as
// http://127.0.0.1:9200 (https when secured).
func (o *OpenSearch) URL() string {
	if o.sec != nil {
		return "https://" + o.Addr()
	}
	return "http://" + o.Addr()
}

// Addr is the proxy's listen address, such as 127.0.0.1:9200.
func (o *OpenSearch) Addr() string { return o.proxy.ln.Addr().String() }

// EngineURL is OpenSearch's own HTTP URL, without the proxy.
func (o *OpenSearch) EngineURL() string { return o.engine.String() }

// Version is OpenSearch's version, as the node reports it, such as 2.19.6.
func (o *OpenSearch) Version() string { return o.version }

// DataDir is the node's home folder, holding opensearch.log.
func (o *OpenSearch) DataDir() string { return o.dir }

// PID is the JVM's process id.
func (o *OpenSearch) PID() int { return o.j.PID() }

// Close stops the proxy and the node (SIGTERM, then SIGKILL after
// StopGrace) and removes the node's folder if it was temporary. It is safe
// to call more than once.
func (o *OpenSearch) Close() error {
	o.closeOnce.Do(func() {
		var errs []error
		if o.proxy != nil {
			errs = append(errs, o.proxy.Close())
		}
		if o.j != nil {
			start := time.Now()
			o.j.stop(StopGrace, o.log)
			o.log.WithField("took", time.Since(start).Round(time.Millisecond)).Debug("opensearch stopped")
		}
		if o.tmp {
			errs = append(errs, os.RemoveAll(o.dir))
		}
		o.closeErr = errors.Join(errs...)
	})
	return o.closeErr
}

// waitReady polls the cluster's health through the proxy until it is
// yellow or green, sets the default number of replicas to 0 and reads the
// node's version.
func (o *OpenSearch) waitReady(ctx context.Context) error {
	tr := &http.Transport{DisableKeepAlives: true}
	if o.sec != nil {
		tr.TLSClientConfig = o.sec.ClientTLS.Clone()
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: tr}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		var health struct{ Status string }
		last := o.getJSON(ctx, client, o.URL()+"/_cluster/health?wait_for_status=yellow&timeout=2s", &health)
		if last == nil {
			if health.Status == "yellow" || health.Status == "green" {
				break
			}
			last = fmt.Errorf("cluster health %q", health.Status)
		}
		select {
		case <-o.j.exited:
			return o.j.failed(fmt.Sprintf("exited while starting (%v)", o.j.err))
		case <-ctx.Done():
			return o.j.failed(fmt.Sprintf("not ready: %v (last: %v)", context.Cause(ctx), last))
		case <-tick.C:
		}
	}
	// One node holds no replica: indices without a replica count of their
	// own are green, as esfake reports them. The setting is a cluster
	// setting, which the node's settings at start do not set.
	body := strings.NewReader(`{"persistent":{"cluster.default_number_of_replicas":0}}`)
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, o.URL()+"/_cluster/settings", body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	o.auth(req)
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("setting the default number of replicas: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("setting the default number of replicas: %s", resp.Status)
	}
	var info struct {
		Version struct {
			Distribution string
			Number       string
		}
	}
	if err := o.getJSON(ctx, client, o.URL()+"/", &info); err != nil {
		return err
	}
	if info.Version.Distribution != "opensearch" {
		return fmt.Errorf("the node at %s says it is %q, not OpenSearch", o.engine.Host, info.Version.Distribution)
	}
	o.version = info.Version.Number
	return nil
}

// writeLogConfig writes the node's log4j2.properties into dir/config.
func writeLogConfig(dir string) error {
	b, err := project.ReadFile("opensearch/log4j2.properties")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "config"), 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "config", "log4j2.properties"), b, 0o644)
}

// auth adds the proxy's credentials to req when it is secured.
func (o *OpenSearch) auth(req *http.Request) {
	if o.sec != nil {
		req.SetBasicAuth(o.sec.User, o.sec.Password)
	}
}

// getJSON gets url and decodes its JSON body into v.
func (o *OpenSearch) getJSON(ctx context.Context, client *http.Client, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	o.auth(req)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
