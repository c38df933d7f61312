// Package esfake is an in-process stand-in for the Elasticsearch 8 HTTP API,
// for development and tests. It is not Elasticsearch: it keeps documents in
// memory, in a single process, and implements only the part of the API
// that logpipe uses, with Elasticsearch's documented semantics and response
// shapes, so that the official Go client (esapi, esutil.BulkIndexer)
// works against it unchanged.
//
// A Server is an http.Handler with no goroutines of its own:
//
//	srv := esfake.New()
//	ts := httptest.NewServer(srv)
//	es, _ := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{ts.URL}})
//
// # API
//
//   - GET and HEAD / (cluster info) and GET /_cluster/health. Every answer
//     carries the X-Elastic-Product header the Go client checks.
//   - Cluster settings (GET and PUT /_cluster/settings, persistent and
//     transient, null resets) for action.auto_create_index only: true,
//     false, or a list of patterns such as -logs-x*,+*. A write that would
//     create an index or data stream the setting forbids fails each of its
//     items with Elasticsearch's 404 index_not_found_exception ("no such
//     index [x] and [action.auto_create_index] contains [-x*] which forbids
//     automatic creation of the index"); a template's allow_auto_create
//     overrides the setting.
//   - Index templates (/_index_template/<name>) and component templates
//     (/_component_template/<name>): PUT, GET, HEAD, DELETE. A new index or
//     data stream takes the matching template with the highest priority;
//     two templates with the same priority and overlapping patterns are
//     refused. Unless WithoutBuiltinTemplates is given there is a built-in
//     "logs" template (patterns logs-*-*, priority 100, data streams), as in
//     a default Elasticsearch 8, so a template for names such as
//     logs-logpipe-default needs a priority above 100 to be used. Its
//     mappings and settings approximate Elasticsearch's: strings become
//     keywords, message is match_only_text, and malformed values and fields
//     beyond the field limit are dropped instead of failing the document.
//   - Data streams, created on the first create to a name whose template
//     has "data_stream": {}, or with PUT /_data_stream/<name>. The backing
//     index is .ds-<name>-<yyyy.MM.dd>-000001; bulk items and search hits
//     report it as _index, as Elasticsearch does. A data stream takes only
//     the create op (index and delete answer a 400 item error) and every
//     document needs one @timestamp. POST /<data stream>/_rollover (without
//     conditions) makes a new backing index, generation 2 and so on, from
//     the templates as they are then; the older ones can be deleted.
//   - Indices: auto-created on first write, or with PUT /<index>; GET, HEAD
//     and DELETE /<index>; GET /<index>/_mapping; GET /<index>/_settings,
//     and PUT /<target>/_settings for the index.blocks.* settings only.
//   - Closed indices: POST /<target>/_close and _open, on indices or data
//     streams (all their backing indices). As in Elasticsearch 8, a data
//     stream's write index can be closed. Writes to a closed index fail
//     with 400 index_closed_exception (item by item in a bulk request), and
//     so do searches, counts and refreshes that name it, unless
//     ignore_unavailable=true skips it; wildcards skip closed indices.
//   - Index blocks (index.blocks.read_only, read, write, metadata and
//     read_only_allow_delete), set when an index is made or with PUT
//     _settings, answer Elasticsearch's cluster_block_exception: 403, or
//     429 for read_only_allow_delete, the block a node sets when its disk
//     passes the flood stage. In a bulk request only the blocked items
//     fail.
//   - Writes: _bulk and /<index>/_bulk with create, index and delete (not
//     update); /<index>/_doc/<id>, POST /<index>/_doc, /<index>/_create/<id>.
//     Gzip request bodies are accepted.
//   - Reads: GET /<index>/_doc/<id>, _count and _search on names, data
//     streams, backing indices, comma lists and * patterns. _refresh is
//     accepted but changes nothing: documents are searchable as soon as
//     they are written.
//
// Unknown query parameters, unknown endpoints and wrong methods are
// refused with Elasticsearch's errors, naming what was asked for.
//
// # Mappings
//
// Field types: text, match_only_text, keyword, constant_keyword, wildcard,
// long, integer, short, byte, double, float, half_float, scaled_float,
// date, date_nanos (millisecond precision), boolean, ip, flattened, binary,
// object and nested (treated as object). Parameters acted on: properties,
// fields (multi-fields), dynamic (runtime acts as true), enabled, format,
// ignore_above, ignore_malformed, index, dynamic_date_formats and
// dynamic_templates (match, unmatch, path_match, path_unmatch,
// match_mapping_type, match_pattern); others are kept without effect. Index settings acted on:
// index.mapping.total_fields.limit (1000),
// index.mapping.total_fields.ignore_dynamic_beyond_limit,
// index.mapping.depth.limit (20), index.mapping.ignore_malformed and the
// index.blocks.* settings.
//
// Dynamic mapping follows Elasticsearch: the first value of an unmapped
// field fixes its type (a string becomes text with a keyword sub-field, or
// a date when it looks like one: ISO 8601, or yyyy/MM/dd with an optional
// HH:mm:ss, which gets that format; an integer long; a fraction float;
// then boolean and object). A value that does not fit its field fails that
// document only, with a 400 document_parsing_exception such as
// "[1:6] failed to parse field [n] of type [long] in document with id '7'.
// Preview of field's value: 'abc'"; numbers in strings are coerced as
// Elasticsearch does. A keyword value longer than Lucene's term limit
// (32766 bytes of UTF-8) fails its document too, unless ignore_above
// leaves it unindexed. A document that fails to parse leaves the mapping
// as it was.
//
// # Queries
//
// match_all, match_none, match (on text: lower-cased words split at
// anything that is not a letter, digit or underscore, any word by default,
// all with "operator": "and"; on other fields: exact), term, terms, range
// (numbers, dates with formats, time_zone and date math such as now-5m/m,
// strings, ips), bool (must, filter, should with minimum_should_match,
// must_not), exists, ids, prefix and constant_score; term, terms and
// prefix also work on _id. Searches take size, from, sort (fields with
// order, missing, unmapped_type and mode; _score; _doc), search_after,
// track_total_hits, track_scores, min_score, version,
// seq_no_primary_term and _source true or false. Scores are not BM25:
// each matching clause adds its boost (match: per matching word), so
// relevance order is only roughly Elasticsearch's.
//
// # Not supported
//
// Aggregations, highlighting, scroll and point in time, query_string and
// the q parameter, phrase, wildcard and fuzzy queries, _source filtering,
// update operations, optimistic concurrency control (if_seq_no, version),
// ingest pipelines, aliases, rollover conditions, persistence, security and
// filter_path (answers are not filtered). Asking for them gets an
// Elasticsearch-shaped 400 error that names what is missing, never a
// silently wrong result.
//
// # Fidelity
//
// The contract tests (contract_test.go) run one table of cases against
// esfake and against a real engine (OpenSearch, with devstack --backends
// real). The differences that remain, and those between Elasticsearch 8
// and OpenSearch, are listed in the repository's README, "esfake and the
// real engines".
//
// # Faults and benchmarks
//
// FailBulk answers 429 or 503 to the next bulk requests, SetLatency delays
// every request, and RejectItems fails chosen bulk items. WithDiscard makes
// _bulk acknowledge valid documents without keeping them, for benchmarks of
// clients.
package esfake
