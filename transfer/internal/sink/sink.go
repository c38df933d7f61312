// Package sink indexes batches of Kafka records into Elasticsearch with
// transfer's delivery policy: every record of a batch ends up either indexed
// (2xx, or 409: already there) or in the dead-letter topic before Write
// returns. Only documents refused for their own content (a 400 parsing or
// mapping error) and values that are not records are dead-lettered. 429
// and 5xx answers, transport errors, and refusals that are about the
// cluster or the credentials rather than the document (blocks, whether 403
// or the flood-stage watermark's 429, privileges, 401, 404 missing index,
// closed index), for the whole request or single items, are retried with capped, jittered exponential backoff,
// for as long as it takes; while a batch waits on such a refusal, Ready
// says why.
package sink

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/logpipe/logpipe/transfer/internal/backoff"
	"github.com/logpipe/logpipe/transfer/internal/dlq"
	"github.com/logpipe/logpipe/transfer/internal/esbulk"
	"github.com/logpipe/logpipe/transfer/internal/metrics"
)

// Indexer sends bulk requests; *esbulk.Client is one.
type Indexer interface {
	Bulk(ctx context.Context, body []byte, n int, out []esbulk.Item) ([]esbulk.Item, error)
}

// DeadLetters writes records to the dead-letter topic, retrying until they
// are acknowledged or ctx ends; *dlq.Producer is one.
type DeadLetters interface {
	Send(ctx context.Context, letters []dlq.Letter) error
}

// Sink writes batches. It is safe for concurrent use by the partitions.
type Sink struct {
	es      Indexer
	dlq     DeadLetters
	backoff backoff.Policy
	m       *metrics.Metrics
	log     logrus.FieldLogger

	refused refusals
}

// New returns a Sink.
func New(es Indexer, dl DeadLetters, p backoff.Policy, m *metrics.Metrics, log logrus.FieldLogger) *Sink {
	return &Sink{es: es, dlq: dl, backoff: p, m: m, log: log}
}

// deadLetter is an item bound for the dead-letter topic.
type deadLetter = dlq.Letter

// Ready is nil unless a batch is held back because Elasticsearch refuses
// its documents for a reason about the cluster or the credentials; then it
// names the index, the status and Elasticsearch's error.
func (s *Sink) Ready() error { return s.refused.err() }

// Write returns nil once every record of b is indexed or dead-lettered. It
// returns ctx's error if ctx ends first; then some records of b may be
// indexed or dead-lettered and others not, and the caller must not treat
// any of them as done.
func (s *Sink) Write(ctx context.Context, b *Batch) error {
	defer s.refused.clear(b)
	b.pending = b.pending[:0]
	for i, it := range b.items {
		if it.err != nil {
			b.letters = append(b.letters, deadLetter{Msg: it.msg, Type: dlq.TypeInvalidRecord, Reason: it.err.Error()})
			continue
		}
		b.pending = append(b.pending, i)
	}
	invalid := len(b.letters)
	s.m.BatchDocs.Observe(float64(len(b.items)))

	bo := s.backoff.Start()
	limit := len(b.pending) // items per request; halved on 413
	for len(b.pending) > 0 {
		chunk := b.pending[:min(limit, len(b.pending))]
		body := b.bodyOf(chunk)
		start := time.Now()
		var err error
		b.results, err = s.es.Bulk(ctx, body, len(chunk), b.results)
		s.m.BulkSeconds.Observe(time.Since(start).Seconds())
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			status := 0
			var se *esbulk.StatusError
			if errors.As(err, &se) {
				status = se.Status
			}
			s.m.BulkRequests.WithLabelValues(metrics.StatusClass(status)).Inc()
			if status == http.StatusRequestEntityTooLarge {
				if len(chunk) > 1 {
					limit = len(chunk) / 2
					s.m.Retries.WithLabelValues(metrics.RetryTooLarge).Inc()
					s.log.WithField("docs", limit).Warn("elasticsearch: bulk request too large; splitting it")
					continue
				}
				it := b.items[chunk[0]]
				b.letters = append(b.letters, deadLetter{Msg: it.msg, Type: "request_too_large", Reason: err.Error(), Status: status})
				b.pending = b.pending[1:]
				continue
			}
			reason := metrics.RetryRequest
			switch {
			case status == 0:
				reason = metrics.RetryTransport
			case refusalOf(status, se.Type) != "":
				reason = metrics.RetryRefused
				s.m.Refusals.WithLabelValues(refusalOf(status, se.Type)).Add(float64(len(chunk)))
				s.refused.set(b, status, &esbulk.ItemError{Type: se.Type, Reason: se.Reason})
			}
			if err := s.wait(ctx, bo, reason, len(chunk), err); err != nil {
				return err
			}
			continue
		}
		s.m.BulkRequests.WithLabelValues("2xx").Inc()

		// Sort the outcomes: keep the items to retry at the front of pending.
		kept, indexed, dups, refused := 0, 0, 0, -1
		for k, i := range chunk {
			res := b.results[k]
			switch {
			case res.OK():
				indexed++
			case res.Status == http.StatusConflict:
				indexed++
				dups++
			case refusalOf(res.Status, res.ErrorType()) != "":
				s.m.Refusals.WithLabelValues(refusalOf(res.Status, res.ErrorType())).Inc()
				if refused < 0 {
					refused = k
				}
				b.pending[kept] = i
				kept++
			case res.Status == http.StatusTooManyRequests || res.Status >= 500:
				b.pending[kept] = i
				kept++
			default:
				b.letters = append(b.letters, rejected(b.items[i], res))
			}
		}
		s.m.DocsIndexed.Add(float64(indexed))
		s.m.DocsDuplicate.Add(float64(dups))
		rest := copy(b.pending[kept:], b.pending[len(chunk):])
		b.pending = b.pending[:kept+rest]
		if refused >= 0 {
			res := b.results[refused]
			s.refused.set(b, res.Status, res.Error)
			if err := s.wait(ctx, bo, metrics.RetryRefused, kept, itemError(b.results)); err != nil {
				return err
			}
			continue
		}
		s.refused.clear(b)
		if kept > 0 {
			s.m.DocsRetried.Add(float64(kept))
			if err := s.wait(ctx, bo, metrics.RetryItems, kept, itemError(b.results)); err != nil {
				return err
			}
		}
	}

	if len(b.letters) > 0 {
		if err := s.dlq.Send(ctx, b.letters); err != nil {
			return err
		}
		s.m.DocsDLQ.WithLabelValues(metrics.ReasonInvalidRecord).Add(float64(invalid))
		s.m.DocsDLQ.WithLabelValues(metrics.ReasonRejected).Add(float64(len(b.letters) - invalid))
		s.log.WithFields(logrus.Fields{
			"invalid_records": invalid, "rejected": len(b.letters) - invalid,
			"first": b.letters[0].Type + ": " + b.letters[0].Reason,
		}).Warn("records sent to the dead-letter topic")
	}
	return nil
}

// wait counts a retry, logs it (the first attempts and then about once per
// longest backoff, so that an outage does not flood the log), and sleeps
// its backoff.
func (s *Sink) wait(ctx context.Context, bo *backoff.Backoff, reason string, docs int, cause error) error {
	s.m.Retries.WithLabelValues(reason).Inc()
	d := bo.Next()
	n := bo.Attempt()
	if n&(n-1) == 0 || d >= s.backoff.Max/2 {
		entry := s.log.WithError(cause).WithFields(logrus.Fields{"reason": reason, "docs": docs, "attempt": n, "retry_in": d.Round(time.Millisecond)})
		switch {
		case reason == metrics.RetryRefused:
			entry.Warn("elasticsearch: refuses the documents for a reason that is not theirs (block, privileges, missing or closed index); retrying, nothing is dead-lettered")
		case n == 1:
			entry.Info("elasticsearch: retrying")
		default:
			entry.Warn("elasticsearch: retrying")
		}
	}
	return backoff.Sleep(ctx, d)
}

// rejected is the dead letter of an item that Elasticsearch refused.
func rejected(it item, res esbulk.Item) deadLetter {
	l := deadLetter{Msg: it.msg, Status: res.Status, Type: "unknown", Reason: "no error in the bulk response"}
	if e := res.Error; e != nil {
		l.Type, l.Reason = e.Type, e.Reason
		if c := e.CausedBy; c != nil {
			l.CausedByType, l.CausedByReason = c.Type, c.Reason
		}
	}
	return l
}

// itemError describes the first retried item of a response, for the log.
func itemError(results []esbulk.Item) error {
	for _, r := range results {
		if r.Status == http.StatusTooManyRequests || r.Status >= 500 || refusalOf(r.Status, r.ErrorType()) != "" {
			if r.Error != nil {
				return &esbulk.StatusError{Status: r.Status, Type: r.Error.Type, Reason: r.Error.Reason}
			}
			return &esbulk.StatusError{Status: r.Status}
		}
	}
	return nil
}
