// Package metrics defines transfer's Prometheus metrics (DESIGN.md,
// "Metrics"), all prefixed transfer_.
package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a record goes to the dead-letter topic, the reason label of
// transfer_docs_dlq_total.
const (
	ReasonRejected      = "rejected"       // Elasticsearch refused the document for good (400-class)
	ReasonInvalidRecord = "invalid_record" // the Kafka value is not a log record
)

// Reasons for a retry, the reason label of transfer_bulk_retries_total.
const (
	RetryTransport = "transport"  // Elasticsearch could not be reached or the response was unreadable
	RetryRequest   = "request"    // the whole bulk request got a 429 or 5xx
	RetryItems     = "items"      // some items got a 429 or 5xx
	RetryDLQ       = "dlq"        // producing to the dead-letter topic failed
	RetryTooLarge  = "request413" // the request was too large and is split
	RetryRefused   = "refused"    // Elasticsearch refused the documents for a reason about the cluster or the credentials
)

// Reasons Elasticsearch refuses documents for something other than their
// content, the reason label of transfer_es_refusals_total: its error type
// when it is one of these, else the HTTP status's meaning.
const (
	RefusedBlock        = "cluster_block_exception"   // a write or read-only block on the index or cluster
	RefusedSecurity     = "security_exception"        // missing privileges or bad credentials
	RefusedIndexMissing = "index_not_found_exception" // no such index, and it may not be created
	RefusedIndexClosed  = "index_closed_exception"    // the index is closed
	RefusedUnauthorized = "unauthorized"              // 401 of another type
	RefusedForbidden    = "forbidden"                 // 403 of another type
	RefusedNotFound     = "not_found"                 // 404 of another type
	RefusedOther        = "other"                     // any other 4xx but 400, 409, 413 and 429
)

// Metrics holds every transfer metric.
type Metrics struct {
	DocsIndexed   prometheus.Counter     // created, or already there (409)
	DocsDuplicate prometheus.Counter     // of DocsIndexed, those that were already there
	DocsDLQ       *prometheus.CounterVec // by reason
	BulkSeconds   prometheus.Histogram
	BulkRequests  *prometheus.CounterVec // by HTTP status class, or "error"
	Retries       *prometheus.CounterVec // by reason
	DocsRetried   prometheus.Counter     // item-level retries, document by document
	Refusals      *prometheus.CounterVec // documents refused for a reason not their own, by reason
	Lag           *prometheus.GaugeVec   // by topic and partition
	BatchDocs     prometheus.Histogram
}

// New creates the metrics and registers them on reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		DocsIndexed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "transfer_docs_indexed_total",
			Help: "Documents Elasticsearch acknowledged (created, or already present: 409 on create).",
		}),
		DocsDuplicate: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "transfer_docs_duplicate_total",
			Help: "Documents that were already indexed (409 on create), counted in transfer_docs_indexed_total too; they come from replays after a crash or rebalance.",
		}),
		DocsDLQ: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "transfer_docs_dlq_total",
			Help: "Records sent to the dead-letter topic, by reason (rejected: Elasticsearch refused the document; invalid_record: not a log record).",
		}, []string{"reason"}),
		BulkSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "transfer_bulk_seconds",
			Help:    "Duration of bulk requests, from sending to the parsed response.",
			Buckets: prometheus.ExponentialBuckets(0.002, 2, 14),
		}),
		BulkRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "transfer_bulk_requests_total",
			Help: "Bulk requests by outcome: the HTTP status (2xx, 413, 429, 4xx, 5xx) or error (no answer).",
		}, []string{"status"}),
		Retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "transfer_bulk_retries_total",
			Help: "Backoffs before a retry, by reason (transport, request, items, request413, refused, dlq).",
		}, []string{"reason"}),
		DocsRetried: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "transfer_docs_retried_total",
			Help: "Documents sent again after a 429 or 5xx item or request.",
		}),
		Refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "transfer_es_refusals_total",
			Help: "Documents Elasticsearch refused for a reason about the cluster or the credentials (write block, privileges, missing or closed index), by reason, counted at each attempt; they are retried, never dead-lettered.",
		}, []string{"reason"}),
		Lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "transfer_consumer_lag",
			Help: "Records in a claimed partition not yet indexed or dead-lettered: high watermark minus the next offset to commit.",
		}, []string{"topic", "partition"}),
		BatchDocs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "transfer_batch_docs",
			Help:    "Records per batch.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 8),
		}),
	}
	for _, r := range []string{ReasonRejected, ReasonInvalidRecord} {
		m.DocsDLQ.WithLabelValues(r)
	}
	for _, r := range []string{RetryTransport, RetryRequest, RetryItems, RetryDLQ, RetryTooLarge, RetryRefused} {
		m.Retries.WithLabelValues(r)
	}
	for _, r := range []string{RefusedBlock, RefusedSecurity, RefusedIndexMissing, RefusedIndexClosed,
		RefusedUnauthorized, RefusedForbidden, RefusedNotFound, RefusedOther} {
		m.Refusals.WithLabelValues(r)
	}
	reg.MustRegister(m.DocsIndexed, m.DocsDuplicate, m.DocsDLQ, m.BulkSeconds, m.BulkRequests,
		m.Retries, m.DocsRetried, m.Refusals, m.Lag, m.BatchDocs)
	return m
}

// StatusClass is the status label of transfer_bulk_requests_total.
func StatusClass(status int) string {
	switch {
	case status == 0:
		return "error"
	case status == 413 || status == 429:
		return strconv.Itoa(status)
	default:
		return strconv.Itoa(status/100) + "xx"
	}
}

// PartitionLabel formats a partition for the Lag label.
func PartitionLabel(p int32) string { return strconv.Itoa(int(p)) }
