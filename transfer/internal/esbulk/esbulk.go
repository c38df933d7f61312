// Package esbulk is transfer's Elasticsearch client: it sends bulk requests
// built by the caller and reports every item's outcome, installs the index
// template, and keeps track of whether Elasticsearch is reachable.
//
// It deliberately does no retrying of its own: what to retry, and for how
// long, is the caller's policy (see package sink).
package esbulk

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esapi"
)

var (
	// ErrConfig is returned by Config.Validate and New for unusable settings.
	ErrConfig = errors.New("esbulk: bad config")
	// ErrResponse is returned for a bulk response that cannot be read or
	// does not match the request.
	ErrResponse = errors.New("esbulk: bad bulk response")
)

// Config says how to reach Elasticsearch.
type Config struct {
	Addresses []string `yaml:"addresses"`
	Username  string   `yaml:"username"`
	Password  string   `yaml:"password"`
	APIKey    string   `yaml:"api_key"`
	CAFile    string   `yaml:"ca_file"` // PEM file of the CAs to trust for https addresses

	// Timeout bounds one request, from dial to the end of the response.
	Timeout time.Duration `yaml:"timeout"`
}

// Validate checks the addresses and that at most one kind of credentials is given.
func (c *Config) Validate() error {
	if len(c.Addresses) == 0 {
		return fmt.Errorf("%w: no Elasticsearch address", ErrConfig)
	}
	for _, a := range c.Addresses {
		u, err := url.Parse(a)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%w: Elasticsearch address %q: want http://host:port or https://host:port", ErrConfig, a)
		}
	}
	if c.APIKey != "" && (c.Username != "" || c.Password != "") {
		return fmt.Errorf("%w: both an API key and a username/password are set: use one", ErrConfig)
	}
	if c.Password != "" && c.Username == "" {
		return fmt.Errorf("%w: a password without a username", ErrConfig)
	}
	if c.Timeout < 0 {
		return fmt.Errorf("%w: timeout %s is negative", ErrConfig, c.Timeout)
	}
	return nil
}

// StatusError is a whole request that Elasticsearch answered with a status
// other than 2xx.
type StatusError struct {
	Status int
	Type   string // Elasticsearch's error.type, when the body had one
	Reason string
}

func (e *StatusError) Error() string {
	if e.Type == "" {
		return fmt.Sprintf("elasticsearch answered %d", e.Status)
	}
	return fmt.Sprintf("elasticsearch answered %d: %s: %s", e.Status, e.Type, e.Reason)
}

// Client talks to Elasticsearch. It is safe for concurrent use.
type Client struct {
	es        *elasticsearch.Client
	transport *http.Transport

	installed chan struct{} // closed by Maintain once the template is in place

	mu       sync.Mutex
	lastErr  error     // outcome of the latest request: nil when it reached Elasticsearch
	lastAt   time.Time // when the latest request ended
	setupErr error     // why the template is not installed yet
}

// New makes a client; it does not contact Elasticsearch.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 32
	tr.ResponseHeaderTimeout = cfg.Timeout
	tr.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	if cfg.CAFile != "" {
		pool, err := LoadCA(cfg.CAFile)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	es, err := elasticsearch.NewClient(elasticsearch.Config{
		Addresses:    cfg.Addresses,
		Username:     cfg.Username,
		Password:     cfg.Password,
		APIKey:       cfg.APIKey,
		Transport:    tr,
		DisableRetry: true, // the caller retries, with its own policy
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return &Client{
		es:        es,
		transport: tr,
		installed: make(chan struct{}),
		lastErr:   errors.New("not contacted yet"),
	}, nil
}

// LoadCA reads a PEM file of CA certificates.
func LoadCA(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: CA file: %w", ErrConfig, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%w: CA file %s holds no PEM certificate", ErrConfig, path)
	}
	return pool, nil
}

// Close releases idle connections. Requests in progress are not interrupted.
func (c *Client) Close() {
	_ = c.es.Close(context.Background())
	c.transport.CloseIdleConnections()
}

// Health is nil when the latest request reached Elasticsearch and got an
// answer that was not 5xx, and otherwise says what went wrong.
func (c *Client) Health() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}

// idle is how long ago the latest request ended.
func (c *Client) idle() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Since(c.lastAt)
}

// note records the outcome of a request for Health.
func (c *Client) note(err error) {
	var se *StatusError
	if errors.As(err, &se) && se.Status < 500 {
		err = nil // Elasticsearch is there and answering
	}
	c.mu.Lock()
	c.lastErr = err
	c.lastAt = time.Now()
	c.mu.Unlock()
}

// Ping asks Elasticsearch for its cluster info.
func (c *Client) Ping(ctx context.Context) error {
	res, err := esapi.InfoRequest{}.Do(ctx, c.es)
	err = check(res, err)
	c.note(err)
	return err
}

// Info is what GET / says about the cluster.
type Info struct {
	// Distribution is version.distribution: "opensearch" for OpenSearch;
	// Elasticsearch leaves it out ("").
	Distribution string
	Version      string // version.number
}

// Info asks the cluster what it is.
func (c *Client) Info(ctx context.Context) (Info, error) {
	res, err := esapi.InfoRequest{}.Do(ctx, c.es)
	if err != nil {
		c.note(err)
		return Info{}, err
	}
	defer drainClose(res.Body)
	if res.StatusCode < 200 || res.StatusCode >= 300 {
		err := statusError(res)
		c.note(err)
		return Info{}, err
	}
	var body struct {
		Version struct {
			Distribution string `json:"distribution"`
			Number       string `json:"number"`
		} `json:"version"`
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, 1<<20)).Decode(&body); err != nil {
		err = fmt.Errorf("%w: GET /: %w", ErrResponse, err)
		c.note(err)
		return Info{}, err
	}
	c.note(nil)
	return Info{Distribution: body.Version.Distribution, Version: body.Version.Number}, nil
}

// CreateComponentTemplate creates the component template name unless it
// exists; an existing one is left as it is. created tells which.
func (c *Client) CreateComponentTemplate(ctx context.Context, name string, body []byte) (created bool, err error) {
	create := true
	res, err := esapi.ClusterPutComponentTemplateRequest{Name: name, Body: bytes.NewReader(body), Create: &create}.Do(ctx, c.es)
	err = check(res, err)
	c.note(err)
	var se *StatusError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &se) && se.Status == http.StatusBadRequest && strings.Contains(se.Reason, "already exists"):
		return false, nil
	}
	return false, fmt.Errorf("creating component template %s: %w", name, err)
}

// PutTemplate installs (or replaces) the composable index template name.
func (c *Client) PutTemplate(ctx context.Context, name string, body []byte) error {
	res, err := esapi.IndicesPutIndexTemplateRequest{Name: name, Body: bytes.NewReader(body)}.Do(ctx, c.es)
	err = check(res, err)
	c.note(err)
	if err != nil {
		return fmt.Errorf("installing index template %s: %w", name, err)
	}
	return nil
}

// check closes res and turns a non-2xx answer into a *StatusError.
func check(res *esapi.Response, err error) error {
	if err != nil {
		return err
	}
	defer drainClose(res.Body)
	if res.StatusCode >= 200 && res.StatusCode < 300 {
		return nil
	}
	return statusError(res)
}

func statusError(res *esapi.Response) *StatusError {
	se := &StatusError{Status: res.StatusCode}
	var body struct {
		Error json.RawMessage `json:"error"`
	}
	if json.NewDecoder(io.LimitReader(res.Body, 64<<10)).Decode(&body) == nil && len(body.Error) > 0 {
		var e ItemError
		if json.Unmarshal(body.Error, &e) == nil {
			se.Type, se.Reason = e.Type, e.Reason
		} else {
			var s string
			if json.Unmarshal(body.Error, &s) == nil {
				se.Reason = s
			}
		}
	}
	return se
}

func drainClose(r io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(r, 1<<20))
	_ = r.Close()
}
