// Package archive reads log records from the search index that transfer
// writes, for what Kafka no longer retains: a partition's records by Kafka
// offset (the session engine's history past retention) and the lines
// around a line in its source file (the context endpoint).
//
// Entries are built from the documents' _source with hub.NewEntry, as
// from Kafka's records, so that a line read from the index is the same
// bytes as the same line read from Kafka: the document is the record plus
// kafka.*, event.ingested and json.*, which the record decoder ignores.
//
// Queries use only term, terms, range, bool, sort, size and search_after,
// which OpenSearch 2 and Elasticsearch 8 answer alike (and esfake, but for
// search_after: a range of more than 1,000 documents needs a real
// engine). An index that does not exist yet is an empty archive.
package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/logpipe/logpipe/common/essec"
	"github.com/logpipe/logpipe/livetail/internal/hub"
)

var (
	// ErrRefused is returned by Check when the search engine refuses
	// livetail's credential (401 or 403): retrying does not fix it.
	ErrRefused = errors.New("the search engine refused the credential")
	// ErrResponse is returned for an answer that cannot be read.
	ErrResponse = errors.New("archive: bad search response")
)

// pageSize is the most documents one search request returns: below the
// engines' default index.max_result_window (10,000).
const pageSize = 1000

// maxWindow is the engines' default index.max_result_window: the most
// documents one search without search_after may reach.
const maxWindow = 10_000

// healthRecheck is how long a failed request's error stands before Health
// asks the search engine again.
const healthRecheck = 10 * time.Second

// Options configure an Archive.
type Options struct {
	// Topic is the log topic livetail reads: documents of other topics
	// (transfer may index several) are left out.
	Topic string
	// Searches counts search requests, Docs the documents they returned
	// (nil: not counted).
	Searches, Docs interface{ Inc() }
}

// Archive reads the index. It is safe for concurrent use.
type Archive struct {
	es    *elasticsearch.Client
	tr    *http.Transport
	index string
	where string // the addresses, for messages
	opts  Options

	mu      sync.Mutex
	lastErr error
	lastAt  time.Time
}

// New returns an archive of the index cfg names; it does not contact the
// search engine (see Check). cfg must be validated and name an address.
func New(cfg essec.Config, opts Options) (*Archive, error) {
	if len(cfg.ESAddresses) == 0 {
		return nil, fmt.Errorf("%w: no --es-addresses", essec.ErrConfig)
	}
	es, tr, err := cfg.Client()
	if err != nil {
		return nil, err
	}
	return &Archive{
		es: es, tr: tr, index: cfg.ESIndex, opts: opts,
		where:   strings.Join(cfg.ESAddresses, ","),
		lastErr: errors.New("not contacted yet"),
	}, nil
}

// Close releases the idle connections.
func (a *Archive) Close() {
	_ = a.es.Close(context.Background())
	a.tr.CloseIdleConnections()
}

// Index is the data stream read.
func (a *Archive) Index() string { return a.index }

// Check asks the search engine who it is, once. A refused credential is
// an error wrapping ErrRefused, in one line naming the endpoint; any other
// failure (unreachable, 5xx) is returned as it is, for the caller to warn
// about and carry on: Health retries it.
func (a *Archive) Check(ctx context.Context) error {
	res, err := esapi.InfoRequest{}.Do(ctx, a.es)
	err = a.answer(res, err, nil)
	a.note(err)
	var se *StatusError
	if errors.As(err, &se) && (se.Status == http.StatusUnauthorized || se.Status == http.StatusForbidden) {
		return fmt.Errorf("%w: %s answered %d to livetail's credential (--es-username and --es-password, or --es-api-key): check them, and that the user may read %s",
			ErrRefused, a.where, se.Status, a.index)
	}
	if err != nil {
		return fmt.Errorf("search engine %s: %w", a.where, err)
	}
	return nil
}

// Health is nil when the latest request reached the search engine and was
// not refused; after a failure it asks again, at most every healthRecheck.
func (a *Archive) Health(ctx context.Context) error {
	a.mu.Lock()
	err, at := a.lastErr, a.lastAt
	a.mu.Unlock()
	if err != nil && time.Since(at) >= healthRecheck {
		err = a.Check(ctx)
	}
	if err != nil {
		return fmt.Errorf("archive index %s at %s: %w", a.index, a.where, err)
	}
	return nil
}

func (a *Archive) note(err error) {
	a.mu.Lock()
	a.lastErr, a.lastAt = err, time.Now()
	a.mu.Unlock()
}

// StatusError is a request the search engine answered with a status other than 2xx.
type StatusError struct {
	Status int
	Reason string
}

func (e *StatusError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("answered %d", e.Status)
	}
	return fmt.Sprintf("answered %d: %s", e.Status, e.Reason)
}

// answer reads res into v (nil: discards it) and closes it.
func (a *Archive) answer(res *esapi.Response, err error, v any) error {
	if err != nil {
		return err
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<20))
		_ = res.Body.Close()
	}()
	if res.StatusCode < 200 || res.StatusCode >= 300 {
		se := &StatusError{Status: res.StatusCode}
		var body struct {
			Error struct {
				Type   string `json:"type"`
				Reason string `json:"reason"`
			} `json:"error"`
		}
		if json.NewDecoder(io.LimitReader(res.Body, 64<<10)).Decode(&body) == nil && body.Error.Type != "" {
			se.Reason = body.Error.Type + ": " + body.Error.Reason
		}
		return se
	}
	if v == nil {
		return nil
	}
	dec := json.NewDecoder(res.Body)
	dec.UseNumber() // sort values go back as search_after exactly
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", ErrResponse, err)
	}
	return nil
}

// hit is one document of a search answer.
type hit struct {
	Source json.RawMessage `json:"_source"`
	Sort   []any           `json:"sort"`
}

// place is the part of a document's _source that says where its record was.
type place struct {
	Job   string `json:"job"`
	Kafka struct {
		Partition int32 `json:"partition"`
		Offset    int64 `json:"offset"`
	} `json:"kafka"`
}

// search runs one query and returns its hits.
func (a *Archive) search(ctx context.Context, query map[string]any) ([]hit, error) {
	body, err := json.Marshal(query)
	if err != nil {
		return nil, err
	}
	ignore := true
	res, err := esapi.SearchRequest{
		Index:             []string{a.index},
		Body:              bytes.NewReader(body),
		IgnoreUnavailable: &ignore, // no index yet: nothing archived
	}.Do(ctx, a.es)
	var out struct {
		Hits struct {
			Hits []hit `json:"hits"`
		} `json:"hits"`
	}
	err = a.answer(res, err, &out)
	a.note(err)
	if a.opts.Searches != nil {
		a.opts.Searches.Inc()
	}
	if err != nil {
		return nil, fmt.Errorf("searching %s: %w", a.index, err)
	}
	if a.opts.Docs != nil {
		for range out.Hits.Hits {
			a.opts.Docs.Inc()
		}
	}
	return out.Hits.Hits, nil
}

// entry builds the entry of a document, as a Kafka read of its record would.
func entry(h hit) (*hub.Entry, error) {
	var d place
	if err := json.Unmarshal(h.Source, &d); err != nil {
		return nil, fmt.Errorf("%w: a document's _source: %w", ErrResponse, err)
	}
	// A document is always of a record that decoded (transfer dead-letters
	// the others), so the Kafka time is never used.
	e, _ := hub.NewEntry(d.Kafka.Partition, d.Kafka.Offset, []byte(d.Job), h.Source, time.Time{})
	return e, nil
}

// filter is the bool query's filter clauses.
type filter []map[string]any

// term, rangeOf and append return a new filter: f is never written to.
func (f filter) term(field string, v any) filter {
	return append(slices.Clip(f), map[string]any{"term": map[string]any{field: v}})
}

func (f filter) rangeOf(field string, bounds map[string]any) filter {
	return append(slices.Clip(f), map[string]any{"range": map[string]any{field: bounds}})
}

func query(f filter, sortField, order string, size int, after []any) map[string]any {
	q := map[string]any{
		"size":  size,
		"query": map[string]any{"bool": map[string]any{"filter": f}},
		"sort":  []any{map[string]any{sortField: map[string]any{"order": order}}},
	}
	if after != nil {
		q["search_after"] = after
	}
	return q
}
