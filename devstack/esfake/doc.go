// Package esfake is an in-process stand-in for the Elasticsearch 8 HTTP API,
// for development and tests. It is not Elasticsearch: it keeps documents in
// memory, in a single process, and implements only the small part of the API
// that logpipe uses, with Elasticsearch's documented semantics and response
// shapes so that the official Go client (including esutil.BulkIndexer)
// works against it unchanged.
//
// # Supported API
//
//   - GET / and HEAD / (cluster info). Every response carries the
//     X-Elastic-Product header that the Go client checks.
//   - GET /_cluster/health (always green).
//   - Index templates (/_index_template/<name>) and component templates
//     (/_component_template/<name>): PUT, GET, HEAD, DELETE. Templates are
//     chosen by index pattern and priority; two templates with the same
//     priority and overlapping patterns are refused, as Elasticsearch does.
//     Unless WithoutBuiltinTemplates is given, a built-in "logs" template
//     (patterns logs-*-*, priority 100, data streams) is present, as in a
//     default Elasticsearch 8: a template for logs-*-* names needs a
//     priority above 100 to take effect.
//   - Data streams, created on the first create to a name whose template has
//     "data_stream": {}. The backing index is .ds-<name>-<yyyy.MM.dd>-000001
//     and is what bulk items and search hits report as _index. Data streams
//     accept only the create op, need an @timestamp, and are listed,
//     created and deleted with /_data_stream/<name>. There is no rollover.
//   - Indices: auto-created on first write, or with PUT /<index>; GET, HEAD,
//     DELETE /<index>; GET /<index>/_mapping.
//   - _bulk (create, index, delete; not update), /<index>/_doc/<id>,
//     /<index>/_doc and /<index>/_create/<id>.
//   - _refresh (a no-op: documents are searchable as soon as they are
//     written), _count and _search.
//
// # Mappings
//
// Field types: text, match_only_text, keyword, constant_keyword, wildcard,
// long, integer, short, byte, double, float, half_float, scaled_float,
// date, date_nanos, boolean, ip, flattened, binary, object and nested
// (nested is treated as object). Mapping parameters acted on: properties,
// fields (multi-fields), dynamic (true, false, strict; runtime acts as
// true), enabled, format, ignore_above, ignore_malformed, index, and
// dynamic_templates with match_mapping_type, match, unmatch, path_match,
// path_unmatch and match_pattern. Other parameters are kept but have no
// effect.
//
// Dynamic mapping follows Elasticsearch: the first value of an unmapped
// field fixes its type (string: text with a keyword sub-field, or date when
// it looks like one; integer: long; fraction: float; boolean; object).
// A value that does not fit its field's type fails that document only, with
// a 400 document_parsing_exception; numbers in strings are coerced as
// Elasticsearch does. The limits on total fields (1000) and depth (20) are
// enforced.
//
// # Queries
//
// match_all, match_none, match (text is lower-cased and split on
// non-alphanumeric characters; other fields match exactly), term, terms,
// range (numbers, dates with formats and date math such as now-5m/m,
// strings, ips), bool (must, filter, should with minimum_should_match,
// must_not), exists, ids, prefix and constant_score. Searches take size,
// from, sort (field order, missing, unmapped_type, mode; _score; _doc),
// search_after, track_total_hits, track_scores, min_score, version,
// seq_no_primary_term and _source true or false. Scores are not BM25: each
// matching scoring clause adds its boost, so relevance order is only
// roughly like Elasticsearch's.
//
// # Not supported
//
// Aggregations, highlighting, scroll and point in time, query_string and
// the q parameter, phrase queries, update operations, optimistic
// concurrency control (if_seq_no, version), ingest pipelines, aliases,
// rollover, persistence, security and filter_path (responses are not
// filtered). These answer an Elasticsearch-shaped 400 error that names what
// is missing, never a silently wrong result.
//
// # Faults
//
// FailBulk, SetLatency and RejectItems inject failures for tests;
// WithDiscard makes _bulk acknowledge documents without keeping them, for
// benchmarks.
package esfake
