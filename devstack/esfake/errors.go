package esfake

import (
	"cmp"
	"fmt"
	"net/http"
	"slices"
)

// esError is an error in Elasticsearch's shape. It renders either as the
// body of a failed request ({"error":{"root_cause":[...],...},"status":N})
// or, for one item of a bulk request, as the item's "error" object.
type esError struct {
	status    int
	typ       string
	reason    string
	extra     obj      // keys Elasticsearch adds after the reason, such as index_uuid
	causedBy  *esError // rendered as caused_by
	rootCause *esError // nil: the error is its own root cause
}

func (e *esError) Error() string { return e.typ + ": " + e.reason }

// object renders the error as Elasticsearch renders an exception.
func (e *esError) object() obj {
	o := obj{{"type", e.typ}, {"reason", e.reason}}
	o = append(o, e.extra...)
	if e.causedBy != nil {
		o = append(o, kv{"caused_by", e.causedBy.object()})
	}
	return o
}

// body renders the error as the whole body of a failed request.
func (e *esError) body() obj {
	root := *cmp.Or(e.rootCause, e)
	root.causedBy = nil
	return obj{{"error", append(obj{{"root_cause", []obj{root.object()}}}, e.object()...)}, {"status", e.status}}
}

func newError(status int, typ, format string, args ...any) *esError {
	return &esError{status: status, typ: typ, reason: fmt.Sprintf(format, args...)}
}

func illegalArgument(format string, args ...any) *esError {
	return newError(http.StatusBadRequest, "illegal_argument_exception", format, args...)
}

func validationFailed(problems ...string) *esError {
	reason := "Validation Failed: "
	for i, p := range problems {
		reason += fmt.Sprintf("%d: %s;", i+1, p)
	}
	return &esError{status: http.StatusBadRequest, typ: "action_request_validation_exception", reason: reason}
}

func indexNotFound(name string) *esError {
	return &esError{
		status: http.StatusNotFound,
		typ:    "index_not_found_exception",
		reason: fmt.Sprintf("no such index [%s]", name),
		extra: obj{
			{"resource.type", "index_or_alias"},
			{"resource.id", name},
			{"index_uuid", "_na_"},
			{"index", name},
		},
	}
}

func resourceNotFound(format string, args ...any) *esError {
	return newError(http.StatusNotFound, "resource_not_found_exception", format, args...)
}

// shardFailure wraps an error raised while searching one index the way
// Elasticsearch reports a query that failed on every shard.
func shardFailure(cause *esError, index string) *esError {
	root := *cause
	root.extra = append(slices.Clone(cause.extra), kv{"index_uuid", "_na_"}, kv{"index", index})
	failed := obj{{"shard", 0}, {"index", index}, {"node", "esfake-node-0"}, {"reason", root.object()}}
	return &esError{status: cause.status, typ: "search_phase_execution_exception", reason: "all shards failed",
		extra:    obj{{"phase", "query"}, {"grouped", true}, {"failed_shards", []obj{failed}}},
		causedBy: cause, rootCause: &root}
}

// injectedFault is the body of a whole-request failure set up with FailBulk.
func injectedFault(status int) *esError {
	switch status {
	case http.StatusTooManyRequests:
		return newError(status, "es_rejected_execution_exception", "rejected execution of coordinating operation (injected by esfake)")
	case http.StatusServiceUnavailable:
		return newError(status, "cluster_block_exception", "blocked by: [SERVICE_UNAVAILABLE/2/no master]; (injected by esfake)")
	}
	return newError(status, "exception", "failure injected by esfake")
}
