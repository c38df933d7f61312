package esfake

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"
	"unicode/utf8"
)

const maxIDBytes = 512

// bulkItem is one action of a bulk request and, once applied, its result.
type bulkItem struct {
	op     string // create or index
	index  string // the target as the request names it
	id     string
	hasID  bool
	source []byte

	concrete string // the index the item went to (a backing index for data streams)
	status   int
	err      *esError
	result   string
	version  int64
	seqNo    int64
}

func (it *bulkItem) fail(e *esError) { it.err, it.status = e, e.status }

// parseBulk reads an NDJSON bulk body: action lines, each followed by a
// source line (a last action without one is dropped, as Elasticsearch
// does). Whatever Elasticsearch refuses as a whole (malformed action
// lines, a missing final newline, missing indices, ids too long) is an
// error for the whole request; an empty _id and problems with one
// document's source are left for that item.
func parseBulk(body []byte, defaultIndex string) ([]bulkItem, *esError) {
	if len(body) == 0 {
		return nil, newError(http.StatusBadRequest, "parse_exception", "request body is required")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, validationFailed("no requests added")
	}
	if body[len(body)-1] != '\n' {
		return nil, illegalArgument("The bulk request must be terminated by a newline [\\n]")
	}
	items := make([]bulkItem, 0, bytes.Count(body, []byte{'\n'})/2+1)
	lines := bytes.Split(body[:len(body)-1], []byte{'\n'})
	var problems []string
	for n := 0; n < len(lines); n++ {
		if len(bytes.TrimSpace(lines[n])) == 0 {
			continue
		}
		it, e := parseAction(lines[n], n+1, defaultIndex)
		if e != nil {
			return nil, e
		}
		if n+1 == len(lines) {
			break
		}
		n++
		it.source = lines[n]
		switch {
		case it.index == "":
			problems = append(problems, "index is missing")
		case len(it.id) > maxIDBytes:
			problems = append(problems, fmt.Sprintf("id [%s] is too long, must be no longer than %d bytes but was: %d", it.id, maxIDBytes, len(it.id)))
		case it.hasID && it.id == "":
			it.fail(illegalArgument("if _id is specified it must not be empty"))
		}
		items = append(items, it)
	}
	if len(items) == 0 {
		problems = append(problems, "no requests added")
	}
	if len(problems) > 0 {
		return nil, validationFailed(problems...)
	}
	return items, nil
}

// parseAction reads one action line such as {"create":{"_index":"x","_id":"1"}}.
func parseAction(line []byte, n int, defaultIndex string) (bulkItem, *esError) {
	it := bulkItem{index: defaultIndex}
	if simpleAction(line, &it) {
		return it, nil
	}
	it = bulkItem{index: defaultIndex}
	var action map[string]map[string]any
	if err := json.Unmarshal(line, &action); err != nil || len(action) != 1 {
		return it, illegalArgument("Malformed action/metadata line [%d], expected one object with one action: %v", n, err)
	}
	for op, meta := range action {
		switch op {
		case "create", "index":
			it.op = op
		case "delete", "update":
			return it, illegalArgument("esfake (a development stand-in for Elasticsearch) does not support the bulk [%s] action", op)
		default:
			return it, illegalArgument("Malformed action/metadata line [%d], expected one of [create, delete, index, update] but found [%s]", n, op)
		}
		for key, v := range meta {
			s, isString := v.(string)
			switch {
			case key != "_index" && key != "_id":
				return it, illegalArgument("Action/metadata line [%d] contains an unknown parameter [%s]", n, key)
			case v == nil:
			case !isString:
				return it, illegalArgument("Malformed action/metadata line [%d], expected a simple value for field [%s]", n, key)
			case key == "_index":
				it.index = s
			default:
				it.id, it.hasID = s, true
			}
		}
	}
	return it, nil
}

// simpleAction reads, without a JSON decoder, the action lines clients send
// almost always: create or index with _index and _id as plain strings. It
// reports false for anything else, which parseAction reads in full.
func simpleAction(line []byte, it *bulkItem) bool {
	op, rest, ok := bytes.Cut(bytes.TrimPrefix(line, []byte(`{"`)), []byte(`":{`))
	if !ok || (string(op) != "create" && string(op) != "index") || bytes.IndexByte(rest, '\\') >= 0 {
		return false
	}
	it.op = string(op)
	for rest = bytes.TrimSuffix(rest, []byte("}}")); len(rest) > 0; rest = bytes.TrimPrefix(rest, []byte(",")) {
		key, after, ok := bytes.Cut(rest, []byte(`":"`))
		value, next, ok2 := bytes.Cut(after, []byte(`"`))
		switch {
		case !ok || !ok2 || !utf8.Valid(value):
			return false
		case string(key) == `"_index`:
			it.index = string(value)
		case string(key) == `"_id`:
			it.id, it.hasID = string(value), true
		default:
			return false
		}
		rest = next
	}
	return len(line) > 4 && string(line[len(line)-2:]) == "}}"
}

func (s *Server) handleBulk(w http.ResponseWriter, r *request) {
	start := time.Now()
	if status, ok := s.takeBulkFault(); ok {
		s.fail(w, r, injectedFault(status))
		return
	}
	items, e := parseBulk(r.body, r.target)
	if e != nil {
		s.fail(w, r, e)
		return
	}
	s.apply(items)

	failed := slices.ContainsFunc(items, func(it bulkItem) bool { return it.err != nil })
	b := make([]byte, 0, 64+len(items)*256)
	b = fmt.Appendf(b, `{"errors":%t,"took":%d,"items":[`, failed, time.Since(start).Milliseconds())
	for i := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"`...)
		b = append(b, items[i].op...)
		b = append(b, `":`...)
		b = appendItemBody(b, &items[i])
		b = append(b, '}')
	}
	b = append(b, "]}"...)
	s.reply(w, r, http.StatusOK, b)
}

// apply performs the items of a parsed bulk request, in order.
func (s *Server) apply(items []bulkItem) {
	for i := range items {
		if !items[i].hasID {
			items[i].id = newDocID()
		}
	}
	if hook := s.rejectHook(); hook != nil {
		for i := range items {
			if it := &items[i]; it.err == nil {
				if status, typ, reason, reject := hook(it.index, it.id, it.source); reject {
					it.fail(injectedItemError(status, typ, reason))
				}
			}
		}
	}
	if s.discard {
		type target struct {
			concrete string
			e        *esError
		}
		targets := map[[2]string]target{}
		s.mu.RLock()
		defer s.mu.RUnlock()
		for i := range items {
			it := &items[i]
			t, ok := targets[[2]string{it.op, it.index}]
			if !ok {
				_, t.concrete, t.e = s.writeTarget(it.index, it.op, false)
				targets[[2]string{it.op, it.index}] = t
			}
			e := t.e
			it.concrete = t.concrete
			switch {
			case it.err != nil:
			case e != nil:
				it.fail(e)
			case !json.Valid(it.source) || bytes.TrimLeft(it.source, " \t\r")[0] != '{':
				it.fail(newError(http.StatusBadRequest, "document_parsing_exception", "failed to parse: the source is not a valid JSON object"))
			default:
				it.status, it.result, it.version, it.seqNo = http.StatusCreated, "created", 1, s.discardSeq.Add(1)-1
			}
		}
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range items {
		it := &items[i]
		ix, concrete, e := s.writeTarget(it.index, it.op, it.err == nil)
		it.concrete = concrete
		if it.err != nil {
			continue
		}
		if e != nil {
			it.fail(e)
			continue
		}
		ix.store(it)
	}
}

// injectedItemError is the error of an item refused through RejectItems.
func injectedItemError(status int, typ, reason string) *esError {
	if status < 400 || status > 599 {
		status = http.StatusBadRequest
	}
	if typ == "" {
		typ = "illegal_argument_exception"
		if status == http.StatusTooManyRequests {
			typ = "es_rejected_execution_exception"
		}
	}
	return &esError{status: status, typ: typ, reason: reason}
}

// store indexes an item's document: the mapping is checked first, then a
// create of an existing id is a version conflict.
func (ix *index) store(it *bulkItem) {
	fields, e := ix.mapping.parseDocument(it.source, it.id)
	if e != nil {
		it.fail(e)
		return
	}
	old := ix.docs[it.id]
	if old != nil && it.op == "create" {
		it.fail(&esError{
			status: http.StatusConflict,
			typ:    "version_conflict_engine_exception",
			reason: fmt.Sprintf("[%s]: version conflict, document already exists (current version [1])", it.id),
			extra:  obj{{"index_uuid", ix.uuid}, {"shard", "0"}, {"index", ix.name}},
		})
		return
	}
	ix.docs[it.id] = &storedDoc{id: it.id, seqNo: ix.nextSeq, source: bytes.Clone(it.source), fields: fields}
	it.status, it.result, it.version, it.seqNo = http.StatusCreated, "created", 1, ix.nextSeq
	if old != nil {
		// Versions are not kept: an overwrite answers version 2 as a
		// first overwrite does in Elasticsearch.
		it.status, it.result, it.version = http.StatusOK, "updated", 2
	}
	ix.nextSeq++
}

// appendItemBody writes the result object of one item as Elasticsearch does.
func appendItemBody(b []byte, it *bulkItem) []byte {
	b = append(b, `{"_index":`...)
	b = appendString(b, it.concrete)
	b = append(b, `,"_id":`...)
	b = appendString(b, it.id)
	if it.err != nil {
		e := it.err.object()
		if (it.err.typ == "index_closed_exception" || it.err.typ == "index_not_found_exception") && len(it.err.extra) == 0 {
			e = append(e, kv{"index_uuid", "_na_"}, kv{"index", it.concrete})
		}
		errJSON, _ := json.Marshal(e)
		return fmt.Appendf(b, `,"status":%d,"error":%s}`, it.status, errJSON)
	}
	return fmt.Appendf(b, `,"_version":%d,"result":"%s","_shards":{"total":1,"successful":1,"failed":0},"_seq_no":%d,"_primary_term":1,"status":%d}`,
		it.version, it.result, it.seqNo, it.status)
}
