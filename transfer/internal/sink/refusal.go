package sink

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/logpipe/logpipe/transfer/internal/esbulk"
	"github.com/logpipe/logpipe/transfer/internal/metrics"
)

// refusalOf tells whether an answer with this status and error type
// refuses documents for a reason that is not about them: a block on the
// index or the cluster, missing privileges or credentials, a missing or
// closed index. It returns the reason label of transfer_es_refusals_total,
// or "" for an answer that is about the documents themselves (400 parsing
// and mapping errors), a success, a 409, a 413, a 429 of an overloaded
// node or a 5xx.
//
// A 429 is a refusal when its error type is a block: the flood-stage disk
// watermark's read-only-allow-delete block answers 429
// cluster_block_exception ("blocked by: [TOO_MANY_REQUESTS/12/disk usage
// exceeded flood-stage watermark ...]"). It is the most common write block
// in production and lasts until disk is freed, so it is no passing
// overload, and an operator needs /readyz to say so. Any other 429, such
// as es_rejected_execution_exception from a full write queue, is overload.
//
// Such refusals are retried: dead-lettering them would empty the whole
// stream into the dead-letter topic at full speed while, say, a disk
// watermark or an expired API key is being fixed.
func refusalOf(status int, errType string) string {
	if status == http.StatusTooManyRequests {
		if errType == metrics.RefusedBlock {
			return metrics.RefusedBlock
		}
		return "" // overload: retried as such
	}
	if status >= 500 {
		return "" // retried as unavailability, such as a 503 no-master block
	}
	switch errType {
	case metrics.RefusedBlock, metrics.RefusedSecurity, metrics.RefusedIndexMissing, metrics.RefusedIndexClosed:
		return errType
	}
	switch {
	case status == http.StatusUnauthorized:
		return metrics.RefusedUnauthorized
	case status == http.StatusForbidden:
		return metrics.RefusedForbidden
	case status == http.StatusNotFound:
		return metrics.RefusedNotFound
	case status < 200, status >= 300 && status < 400:
		return metrics.RefusedOther // not an answer a bulk item has: never dead-letter on it
	case status >= 400 && status < 500 && status != http.StatusBadRequest && status != http.StatusConflict &&
		status != http.StatusRequestEntityTooLarge:
		return metrics.RefusedOther
	}
	return ""
}

// refusal is the latest refusal a batch is waiting on.
type refusal struct {
	index  string
	status int
	typ    string
	reason string
	since  time.Time
}

// refusals are the batches currently held back by a refusal, for /readyz.
type refusals struct {
	mu      sync.Mutex
	waiting map[*Batch]refusal
}

// set records that b waits on the refusal of status and error e.
func (r *refusals) set(b *Batch, status int, e *esbulk.ItemError) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.waiting == nil {
		r.waiting = map[*Batch]refusal{}
	}
	ref := refusal{index: b.index, status: status, since: time.Now()}
	if old, ok := r.waiting[b]; ok {
		ref.since = old.since
	}
	if e != nil {
		ref.typ, ref.reason = e.Type, e.Reason
		if e.Index != "" && !strings.Contains(e.Reason, e.Index) {
			ref.reason += " (index " + e.Index + ")" // index_closed_exception says only "closed"
		}
	}
	r.waiting[b] = ref
}

// clear records that b no longer waits on a refusal.
func (r *refusals) clear(b *Batch) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.waiting, b)
}

// err describes the oldest refusal still waited on, or is nil.
func (r *refusals) err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var oldest *refusal
	for _, ref := range r.waiting {
		if oldest == nil || ref.since.Before(oldest.since) {
			oldest = &ref
		}
	}
	if oldest == nil {
		return nil
	}
	what := fmt.Sprint(oldest.status)
	if oldest.typ != "" {
		what += " " + oldest.typ + ": " + oldest.reason
	}
	return fmt.Errorf("elasticsearch refuses writes to %s since %s, %d partitions retrying, nothing dead-lettered or committed past it: %s",
		oldest.index, oldest.since.UTC().Format(time.RFC3339), len(r.waiting), what)
}
