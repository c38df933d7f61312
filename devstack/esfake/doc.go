// Package esfake is an in-process stand-in for the part of the
// Elasticsearch 8 HTTP API that `make run` and the fast tests use, with
// Elasticsearch's response shapes, so that the official Go client works
// against it unchanged. It is not Elasticsearch: documents live in memory,
// in one process. Engine behaviour beyond this subset (index blocks,
// closed indices, rollover, cluster settings, field limits, the wider
// query DSL) is tested on the real engine alone. A Server is an
// http.Handler with no goroutines of its own. It serves:
//
//   - GET and HEAD /, and the X-Elastic-Product header on every answer.
//   - Index and component templates: PUT, GET, DELETE. A new index or data
//     stream takes the matching template of highest priority; templates of
//     equal priority and overlapping patterns are refused, as is a change
//     that leaves a data stream without a data stream template. A built-in
//     "logs" template (logs-*-*, priority 100) makes data streams, as in a
//     default Elasticsearch 8.
//   - Data streams, made on the first create to a name whose template has
//     "data_stream": {}, with one backing index .ds-<name>-<yyyy.MM.dd>-000001;
//     GET and DELETE /_data_stream/<name>. They take only create, and every
//     document needs one @timestamp. Other names become plain indices.
//   - _bulk with create and index: a second create of an _id fails that
//     item with 409 version_conflict_engine_exception, a value that does
//     not fit the mapping with 400 document_parsing_exception; the rest of
//     the request goes on.
//   - _refresh (a no-op: documents are searchable at once), _count,
//     _search, GET <target>/_mapping and GET <target>/_settings.
//
// Mappings: text, keyword, the numeric types, date (ISO 8601 or epoch
// milliseconds), boolean, flattened (each leaf a keyword, found as
// <field>.<key> and as <field>), object, multi-fields and ignore_above;
// new fields are mapped from their first value, numbers in strings are
// coerced, and a refused document leaves the mapping as it was.
//
// Queries: match_all, match_none, match, term, terms (also on _id), range
// (date math such as now-15m or now/d, in UTC) and bool; searches take
// size, from, sort and _source true or false. Scores are not BM25: each
// matching clause adds 1. Anything else is refused with an error that
// names it, never answered with a silently wrong result.
//
// The contract tests (contract_test.go) run against esfake and OpenSearch;
// the README's "esfake and the real engines" lists what differs. Faults: FailBulk answers 429 or 503 to the next bulk requests,
// SetLatency delays every request, and RejectItems fails chosen bulk items
// with the status, type and reason a test gives, which is how tests get
// what Elasticsearch answers for a state esfake does not model (an index
// block, a closed index, missing privileges). WithDiscard acknowledges
// documents without keeping them, for benchmarks of clients.
package esfake
