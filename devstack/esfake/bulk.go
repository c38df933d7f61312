package esfake

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"
)

// maxIDBytes is the longest document id Elasticsearch accepts.
const maxIDBytes = 512

// bulkItem is one action of a bulk request and, once applied, its result.
type bulkItem struct {
	op     string // create, index, delete or update
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
	term     int64 // the primary term it was written in
}

func (it *bulkItem) fail(e *esError) {
	it.err, it.status = e, e.status
}

// parseBulk reads an NDJSON bulk body: action lines, each but delete
// followed by a source line (a last action without one is dropped, as
// Elasticsearch does). Whatever Elasticsearch refuses as a whole
// (malformed action lines, a missing final newline, missing indices, ids
// too long) is an error for the whole request; an empty _id and problems
// with one document's source are left for that item.
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
	line := 0
	rest := body
	nextLine := func() ([]byte, bool) {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			return nil, false
		}
		l := rest[:i]
		rest = rest[i+1:]
		line++
		return bytes.TrimSuffix(l, []byte{'\r'}), true
	}
	for {
		l, ok := nextLine()
		if !ok {
			break
		}
		if len(bytes.TrimSpace(l)) == 0 {
			continue
		}
		it, e := parseAction(l, line, defaultIndex)
		if e != nil {
			return nil, e
		}
		if it.op != "delete" {
			src, ok := nextLine()
			if !ok {
				break
			}
			it.source = src
		}
		items = append(items, it)
	}
	if len(items) == 0 {
		return nil, validationFailed("no requests added")
	}
	var problems []string
	for _, it := range items {
		switch {
		case it.index == "":
			problems = append(problems, "index is missing")
		case len(it.id) > maxIDBytes:
			problems = append(problems, fmt.Sprintf("id [%s] is too long, must be no longer than %d bytes but was: %d", it.id, maxIDBytes, len(it.id)))
		case it.op == "delete" && it.id == "":
			problems = append(problems, "id is missing")
		}
	}
	if len(problems) > 0 {
		return nil, validationFailed(problems...)
	}
	for i := range items {
		if it := &items[i]; it.hasID && it.id == "" && it.err == nil {
			// Refused when the item is routed, so for that item alone.
			it.fail(illegalArgument("if _id is specified it must not be empty"))
		}
	}
	return items, nil
}

// parseAction reads one action line such as {"create":{"_index":"x","_id":"1"}}.
func parseAction(line []byte, n int, defaultIndex string) (bulkItem, *esError) {
	it := bulkItem{index: defaultIndex}
	if parseSimpleAction(line, &it) {
		return it, nil
	}
	it = bulkItem{index: defaultIndex}
	malformed := func(format string, args ...any) *esError {
		return illegalArgument("Malformed action/metadata line [%d], "+format, append([]any{n}, args...)...)
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	token := func() (any, *esError) {
		tok, err := dec.Token()
		if err != nil {
			return nil, actionSyntax(n, dec, err)
		}
		return tok, nil
	}
	tok, e := token()
	if e != nil {
		return it, e
	}
	if tok != json.Delim('{') {
		return it, malformed("expected START_OBJECT or END_OBJECT but found [%s]", tokenName(tok))
	}
	if tok, e = token(); e != nil {
		return it, e
	}
	op, ok := tok.(string)
	if !ok {
		return it, malformed("expected FIELD_NAME but found [%s]", tokenName(tok))
	}
	switch op {
	case "create", "index", "delete", "update":
		it.op = op
	default:
		return it, malformed("expected one of [create, delete, index, update] but found [%s]", op)
	}
	if tok, e = token(); e != nil {
		return it, e
	}
	if tok != json.Delim('{') {
		return it, malformed("expected START_OBJECT but found [%s]", tokenName(tok))
	}
	for dec.More() {
		if tok, e = token(); e != nil {
			return it, e
		}
		key, _ := tok.(string)
		if tok, e = token(); e != nil {
			return it, e
		}
		if d, ok := tok.(json.Delim); ok {
			if (key == "_source" || key == "dynamic_templates") && d == '{' {
				if e := skipTokens(dec, n); e != nil {
					return it, e
				}
				continue
			}
			return it, malformed("expected a simple value for field [%s] but found [%s]", key, tokenName(tok))
		}
		switch key {
		case "_index":
			it.index = scalarText(tok)
		case "_id":
			if tok != nil {
				it.id, it.hasID = scalarText(tok), true
			}
		case "routing", "require_alias", "require_data_stream", "list_executed_pipelines", "retry_on_conflict",
			"pipeline", "version", "version_type", "if_seq_no", "if_primary_term":
			if e := checkItemParam(key, tok); e != nil {
				it.err = e
			}
		default:
			return it, illegalArgument("Action/metadata line [%d] contains an unknown parameter [%s]", n, key)
		}
	}
	for range 2 { // the closing braces of the metadata and the action
		if tok, e = token(); e != nil {
			return it, e
		}
		if tok != json.Delim('}') {
			return it, malformed("expected END_OBJECT but found [%s]", tokenName(tok))
		}
	}
	if tok, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			return it, actionSyntax(n, dec, err)
		}
		return it, malformed("expected END_OBJECT but found [%s]", tokenName(tok))
	}
	return it, nil
}

// parseSimpleAction reads, without a JSON decoder, the action lines that
// clients send almost always: an op with _index and _id given as plain
// strings. It reports false for anything else, which parseAction then
// reads (and reports errors for) in full.
func parseSimpleAction(line []byte, it *bulkItem) bool {
	i := 0
	ws := func() {
		for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
			i++
		}
	}
	lit := func(c byte) bool {
		ws()
		if i < len(line) && line[i] == c {
			i++
			return true
		}
		return false
	}
	str := func() ([]byte, bool) {
		if !lit('"') {
			return nil, false
		}
		start := i
		for i < len(line) && line[i] != '"' {
			if line[i] == '\\' || line[i] < 0x20 {
				return nil, false
			}
			i++
		}
		if i == len(line) || !utf8.Valid(line[start:i]) {
			return nil, false
		}
		i++
		return line[start : i-1], true
	}
	if !lit('{') {
		return false
	}
	op, ok := str()
	if !ok || !lit(':') || !lit('{') {
		return false
	}
	switch string(op) {
	case "create", "index", "delete", "update":
		it.op = string(op)
	default:
		return false
	}
	var seenIndex, seenID bool
	if !lit('}') {
		for {
			key, ok := str()
			if !ok || !lit(':') {
				return false
			}
			val, ok := str()
			if !ok {
				return false
			}
			switch {
			case string(key) == "_index" && !seenIndex:
				it.index, seenIndex = string(val), true
			case string(key) == "_id" && !seenID:
				it.id, it.hasID, seenID = string(val), true, true
			default:
				return false
			}
			if lit('}') {
				break
			}
			if !lit(',') {
				return false
			}
		}
	}
	if !lit('}') {
		return false
	}
	ws()
	return i == len(line)
}

// checkItemParam refuses per-item options whose effect esfake does not
// implement, so that a test never passes by accident.
func checkItemParam(key string, v any) *esError {
	switch key {
	case "pipeline":
		if s := scalarText(v); s != "_none" {
			return illegalArgument("pipeline with id [%s] does not exist", s)
		}
	case "require_alias":
		if scalarText(v) == "true" {
			return unsupported("aliases (require_alias)")
		}
	case "version", "version_type", "if_seq_no", "if_primary_term":
		return unsupported("optimistic concurrency control ([%s])", key)
	}
	return nil
}

func skipTokens(dec *json.Decoder, line int) *esError {
	for depth := 1; depth > 0; {
		tok, err := dec.Token()
		if err != nil {
			return actionSyntax(line, dec, err)
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
	return nil
}

func actionSyntax(line int, dec *json.Decoder, err error) *esError {
	col := dec.InputOffset() + 1
	var se *json.SyntaxError
	if errors.As(err, &se) {
		col = se.Offset
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		msg = "Unexpected end-of-input"
	}
	return newError(http.StatusBadRequest, "x_content_parse_exception", "[%d:%d] %s", line, col, msg)
}

// tokenName names a JSON token as Elasticsearch's parser does.
func tokenName(tok any) string {
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			return "START_OBJECT"
		case '}':
			return "END_OBJECT"
		case '[':
			return "START_ARRAY"
		default:
			return "END_ARRAY"
		}
	case string:
		return "VALUE_STRING"
	case json.Number:
		return "VALUE_NUMBER"
	case bool:
		return "VALUE_BOOLEAN"
	default:
		return "VALUE_NULL"
	}
}

// refreshParam reads ?refresh: forced reports true or an empty value.
func refreshParam(r *request) (forced bool, e *esError) {
	if !r.params.Has("refresh") {
		return false, nil
	}
	switch v := r.params.Get("refresh"); v {
	case "", "true":
		return true, nil
	case "false", "wait_for":
		return false, nil
	default:
		return false, illegalArgument("Unknown value for refresh: [%s].", v)
	}
}

func (s *Server) handleBulk(w http.ResponseWriter, r *request) {
	start := time.Now()
	if status, ok := s.takeBulkFault(); ok {
		s.fail(w, r, injectedFault(status))
		return
	}
	forced, e := refreshParam(r)
	if e != nil {
		s.fail(w, r, e)
		return
	}
	if p := r.params.Get("pipeline"); p != "" && p != "_none" {
		s.fail(w, r, illegalArgument("pipeline with id [%s] does not exist", p))
		return
	}
	if r.flag("require_alias") {
		s.fail(w, r, unsupported("aliases (require_alias)"))
		return
	}
	items, e := parseBulk(r.body, r.target)
	if e != nil {
		s.fail(w, r, e)
		return
	}
	s.apply(items)

	b := make([]byte, 0, 64+len(items)*256)
	b = append(b, `{"errors":`...)
	failed := false
	for i := range items {
		if items[i].err != nil {
			failed = true
			break
		}
	}
	if failed {
		b = append(b, "true"...)
	} else {
		b = append(b, "false"...)
	}
	b = append(b, `,"took":`...)
	b = appendInt(b, time.Since(start).Milliseconds())
	b = append(b, `,"items":[`...)
	for i := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"`...)
		b = append(b, items[i].op...)
		b = append(b, `":`...)
		b = appendItemBody(b, &items[i], forced)
		b = append(b, '}')
	}
	b = append(b, "]}"...)
	s.reply(w, r, http.StatusOK, b)
}

// apply performs the items of a parsed bulk request, in order.
func (s *Server) apply(items []bulkItem) {
	for i := range items {
		it := &items[i]
		if it.op == "update" && it.err == nil {
			it.fail(unsupported("the bulk [update] action"))
		}
		if (it.op == "index" || it.op == "create") && !it.hasID {
			it.id = s.newDocID()
		}
	}
	if hook := s.rejectHook(); hook != nil {
		for i := range items {
			it := &items[i]
			if it.err != nil || it.op == "delete" || it.op == "update" {
				continue
			}
			if status, typ, reason, reject := hook(it.index, it.id, it.source); reject {
				if status < 400 || status > 599 {
					status = http.StatusBadRequest
				}
				if typ == "" {
					typ = "illegal_argument_exception"
					if status == http.StatusTooManyRequests {
						typ = "es_rejected_execution_exception"
					}
				}
				it.fail(&esError{status: status, typ: typ, reason: reason})
			}
		}
	}
	if s.discard {
		s.applyDiscard(items)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range items {
		it := &items[i]
		if it.err != nil {
			_, it.concrete, _ = s.writeTarget(it.index, it.op, false)
			continue
		}
		ix, concrete, e := s.writeTarget(it.index, it.op, true)
		it.concrete = concrete
		if e == nil && ix.closed {
			// Found when the request's names are resolved: the item
			// names what it asked for.
			e, it.concrete = indexClosed(ix), it.index
		}
		if e == nil {
			e = blocked(levelWrite, ix)
		}
		if e != nil {
			it.fail(e)
			continue
		}
		if it.op == "delete" {
			ix.deleteDoc(it)
		} else {
			ix.storeDoc(it)
		}
	}
}

// storeDoc indexes an item's document: the mapping is checked first, then
// a create of an existing id is a version conflict.
func (ix *index) storeDoc(it *bulkItem) {
	p, e := ix.mapping.parseDocument(it.source, it.id)
	if e != nil {
		it.fail(e)
		return
	}
	p.commit() // as in Elasticsearch, the mapping update stays even if the write then conflicts
	old := ix.docs[it.id]
	if old != nil && it.op == "create" {
		it.fail(&esError{
			status: http.StatusConflict,
			typ:    "version_conflict_engine_exception",
			reason: fmt.Sprintf("[%s]: version conflict, document already exists (current version [%d])", it.id, old.version),
			extra:  obj{{"index_uuid", ix.uuid}, {"shard", "0"}, {"index", ix.name}},
		})
		return
	}
	d := &storedDoc{id: it.id, seqNo: ix.nextSeq, term: ix.term, version: 1, source: bytes.Clone(it.source), fields: p.fields}
	ix.nextSeq++
	it.status, it.result = http.StatusCreated, "created"
	if old != nil {
		d.version = old.version + 1
		it.status, it.result = http.StatusOK, "updated"
	}
	ix.docs[it.id] = d
	it.version, it.seqNo, it.term = d.version, d.seqNo, d.term
}

func (ix *index) deleteDoc(it *bulkItem) {
	it.seqNo, it.term = ix.nextSeq, ix.term
	ix.nextSeq++
	old := ix.docs[it.id]
	if old == nil {
		it.status, it.result, it.version = http.StatusNotFound, "not_found", 1
		return
	}
	delete(ix.docs, it.id)
	it.status, it.result, it.version = http.StatusOK, "deleted", old.version+1
}

// applyDiscard answers items as if they were written, keeping nothing.
func (s *Server) applyDiscard(items []bulkItem) {
	type target struct {
		concrete string
		e        *esError
	}
	targets := map[[2]string]target{}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for i := range items {
		it := &items[i]
		key := [2]string{it.op, it.index}
		t, ok := targets[key]
		if !ok {
			_, t.concrete, t.e = s.writeTarget(it.index, it.op, false)
			targets[key] = t
		}
		it.concrete = t.concrete
		switch {
		case it.err != nil:
		case t.e != nil:
			it.fail(t.e)
		case it.op == "delete":
			it.status, it.result, it.version = http.StatusNotFound, "not_found", 1
			it.seqNo, it.term = s.discardSeq.Add(1)-1, 1
		case !isJSONObject(it.source):
			it.fail(newError(http.StatusBadRequest, "document_parsing_exception", "[1:1] failed to parse: the source is not a valid JSON object"))
		default:
			it.status, it.result, it.version = http.StatusCreated, "created", 1
			it.seqNo, it.term = s.discardSeq.Add(1)-1, 1
		}
	}
}

func isJSONObject(b []byte) bool {
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) > 0 && b[0] == '{' && json.Valid(b)
}

// appendItemBody writes the result object of one item as Elasticsearch does.
func appendItemBody(b []byte, it *bulkItem, forcedRefresh bool) []byte {
	b = append(b, `{"_index":`...)
	b = appendString(b, it.concrete)
	b = append(b, `,"_id":`...)
	if it.id == "" && !it.hasID {
		b = append(b, "null"...)
	} else {
		b = appendString(b, it.id)
	}
	if it.err != nil {
		b = append(b, `,"status":`...)
		b = appendInt(b, int64(it.status))
		b = append(b, `,"error":`...)
		errJSON, _ := json.Marshal(it.err.object())
		b = append(b, errJSON...)
		return append(b, '}')
	}
	b = append(b, `,"_version":`...)
	b = appendInt(b, it.version)
	b = append(b, `,"result":"`...)
	b = append(b, it.result...)
	b = append(b, '"')
	if forcedRefresh {
		b = append(b, `,"forced_refresh":true`...)
	}
	b = append(b, `,"_shards":{"total":1,"successful":1,"failed":0},"_seq_no":`...)
	b = appendInt(b, it.seqNo)
	b = append(b, `,"_primary_term":`...)
	b = appendInt(b, it.term)
	b = append(b, `,"status":`...)
	b = appendInt(b, int64(it.status))
	return append(b, '}')
}

// handleDoc serves the single-document API: GET, HEAD, PUT, POST and
// DELETE /<index>/_doc/<id>, POST /<index>/_doc and /<index>/_create/<id>.
func (s *Server) handleDoc(w http.ResponseWriter, r *request) {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		s.getDoc(w, r)
		return
	}
	for _, k := range []string{"version", "version_type", "if_seq_no", "if_primary_term"} {
		if r.params.Has(k) {
			s.fail(w, r, unsupported("optimistic concurrency control ([%s])", k))
			return
		}
	}
	if p := r.params.Get("pipeline"); p != "" && p != "_none" {
		s.fail(w, r, illegalArgument("pipeline with id [%s] does not exist", p))
		return
	}
	forced, e := refreshParam(r)
	if e != nil {
		s.fail(w, r, e)
		return
	}
	it := bulkItem{index: r.target, id: r.name, hasID: r.name != ""}
	switch {
	case r.Method == http.MethodDelete:
		it.op = "delete"
	case strings.Contains(r.URL.Path, "/_create/") || !it.hasID:
		it.op = "create" // POST /<index>/_doc without an id creates, also in data streams
	default:
		it.op = "index"
		switch r.params.Get("op_type") {
		case "create":
			it.op = "create"
		case "", "index":
		default:
			s.fail(w, r, illegalArgument("opType must be 'create' or 'index', found: [%s]", r.params.Get("op_type")))
			return
		}
	}
	if it.op != "delete" {
		it.source = bytes.TrimSpace(r.body)
		if len(it.source) == 0 {
			s.fail(w, r, validationFailed("source is missing"))
			return
		}
		if bytes.ContainsAny(it.source, "\n") {
			it.source = compactJSON(it.source)
		}
	}
	items := []bulkItem{it}
	s.apply(items)
	res := &items[0]
	if res.err != nil {
		s.fail(w, r, res.err)
		return
	}
	b := appendItemBody(nil, res, forced)
	// The single-document API has no "status" key; drop it.
	if i := bytes.LastIndex(b, []byte(`,"status":`)); i >= 0 {
		b = append(b[:i], '}')
	}
	s.reply(w, r, res.status, b)
}

// compactJSON puts a multi-line JSON document on one line so that error
// positions read like a bulk source line; invalid JSON is left alone for
// the document parser to report.
func compactJSON(b []byte) []byte {
	var buf bytes.Buffer
	if json.Compact(&buf, b) != nil {
		return b
	}
	return buf.Bytes()
}

func (s *Server) getDoc(w http.ResponseWriter, r *request) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.streams[r.target] != nil {
		s.fail(w, r, illegalArgument("The provided expression [%s] matches a data stream, specify the corresponding concrete indices instead.", r.target))
		return
	}
	ix := s.indices[r.target]
	if ix == nil {
		s.fail(w, r, indexNotFound(r.target))
		return
	}
	if ix.closed {
		s.fail(w, r, indexClosed(ix))
		return
	}
	if e := blocked(levelRead, ix); e != nil {
		s.fail(w, r, e)
		return
	}
	d := ix.docs[r.name]
	if d == nil {
		s.reply(w, r, http.StatusNotFound, obj{{"_index", ix.name}, {"_id", r.name}, {"found", false}})
		return
	}
	s.reply(w, r, http.StatusOK, obj{
		{"_index", ix.name}, {"_id", d.id}, {"_version", d.version}, {"_seq_no", d.seqNo},
		{"_primary_term", d.term}, {"found", true}, {"_source", json.RawMessage(d.source)},
	})
}
