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
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/logpipe/logpipe/common/essec"
)

var (
	// ErrConfig is returned by New for unusable settings.
	ErrConfig = errors.New("esbulk: bad config")
	// ErrResponse is returned for a bulk response that cannot be read or
	// does not match the request.
	ErrResponse = errors.New("esbulk: bad bulk response")
)

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

// New makes a client of cfg, which must name at least one address and
// have been validated; it does not contact Elasticsearch.
func New(cfg essec.Config) (*Client, error) {
	if len(cfg.ESAddresses) == 0 {
		return nil, fmt.Errorf("%w: no Elasticsearch address", ErrConfig)
	}
	es, tr, err := cfg.Client()
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
