package esfake

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"
)

// index is a concrete index: a plain index or a data stream's backing
// index. It has a single shard, so sequence numbers are per index.
type index struct {
	name     string
	uuid     string
	stream   string // the data stream it backs, or ""
	mapping  *mapping
	settings map[string]any // flat keys, from the templates it was made from
	docs     map[string]*storedDoc
	nextSeq  int64
}

type storedDoc struct {
	id     string
	seqNo  int64
	source []byte
	fields map[string][]any // by field path: strings (keywords, words of text), float64 (numbers, dates, booleans)
}

// resolve turns an index expression (names, data streams, comma lists and
// * wildcards; empty or _all for everything) into concrete indices. A
// wildcard skips names that start with a dot unless it starts with one.
// Call with s.mu held.
func (s *Server) resolve(expr string, ignoreUnavailable bool) ([]*index, *esError) {
	if expr == "" || expr == "_all" {
		expr = "*"
	}
	var out []*index
	seen := map[*index]bool{}
	add := func(ix *index) {
		if !seen[ix] {
			seen[ix] = true
			out = append(out, ix)
		}
	}
	for _, part := range strings.Split(expr, ",") {
		switch part = strings.TrimSpace(part); {
		case part == "":
		case strings.Contains(part, "*"):
			for _, name := range sortedKeys(s.streams) {
				if globMatch(part, name) {
					add(s.streams[name])
				}
			}
			for _, name := range sortedKeys(s.indices) {
				if globMatch(part, name) && (!strings.HasPrefix(name, ".") || strings.HasPrefix(part, ".")) {
					add(s.indices[name])
				}
			}
		case s.streams[part] != nil:
			add(s.streams[part])
		case s.indices[part] != nil:
			add(s.indices[part])
		case !ignoreUnavailable:
			return nil, indexNotFound(part)
		}
	}
	return out, nil
}

// resolveRequest resolves the request's target with its
// ignore_unavailable parameter.
func (s *Server) resolveRequest(r *request) ([]*index, *esError) {
	return s.resolve(r.target, r.flag("ignore_unavailable"))
}

// writeTarget finds the index a write of op to name goes to, with
// Elasticsearch's rules for data streams. With create set, a missing
// index or data stream is made from the matching template; without,
// nothing changes and ix may be nil, but concrete still names the index
// the write would go to. Call with s.mu held (for writing if create).
func (s *Server) writeTarget(name, op string, create bool) (ix *index, concrete string, e *esError) {
	if ix := s.streams[name]; ix != nil {
		if op != "create" {
			return nil, name, onlyCreateInDataStreams()
		}
		return ix, ix.name, nil
	}
	if ix := s.indices[name]; ix != nil {
		if ix.stream != "" {
			return nil, name, illegalArgument("index request with op_type=%s targeting backing indices is disallowed, target corresponding data stream [%s] instead", op, ix.stream)
		}
		return ix, name, nil
	}
	if e := validateIndexName(name); e != nil {
		return nil, name, e
	}
	t := s.findTemplate(name)
	if t != nil && t.dataStream {
		if op != "create" {
			return nil, name, onlyCreateInDataStreams()
		}
		backing := fmt.Sprintf(".ds-%s-%s-%06d", name, time.Now().UTC().Format("2006.01.02"), 1)
		if !create {
			return nil, backing, nil
		}
		ix, e := s.createIndex(backing, t, name)
		if e != nil {
			return nil, name, e
		}
		s.streams[name] = ix
		return ix, backing, nil
	}
	if !create {
		return nil, name, nil
	}
	ix, e = s.createIndex(name, t, "")
	return ix, name, e
}

func onlyCreateInDataStreams() *esError {
	return illegalArgument("only write ops with an op_type of create are allowed in data streams")
}

// createIndex makes a concrete index from a template (which may be nil).
// Call with s.mu held for writing.
func (s *Server) createIndex(name string, t *indexTemplate, stream string) (*index, *esError) {
	mappings, settings := map[string]any{}, map[string]any{}
	if t != nil {
		mappings, settings = s.templatePart(t, "mappings"), flatten("", s.templatePart(t, "settings"))
	}
	m, e := newMapping(mappings, stream != "")
	if e != nil {
		return nil, e
	}
	ix := &index{name: name, uuid: newUUID(), stream: stream, mapping: m, settings: settings, docs: map[string]*storedDoc{}}
	s.indices[name] = ix
	return ix, nil
}

// validateIndexName applies Elasticsearch's main rules for index and data
// stream names.
func validateIndexName(name string) *esError {
	if name != "" && name == strings.ToLower(name) && !strings.ContainsAny(name, ` "*\<|,>/?#:`) && !strings.ContainsAny(name[:1], "_-+.") {
		return nil
	}
	return &esError{status: http.StatusBadRequest, typ: "invalid_index_name_exception", extra: obj{{"index_uuid", "_na_"}, {"index", name}},
		reason: fmt.Sprintf(`Invalid index name [%s], must be lowercase, must not start with '_', '-', '+' or '.' and must not contain [ , ", *, \, <, |, ,, >, /, ?, #, :]`, name)}
}

// sortedDocs lists an index's documents in the order they were written.
func (ix *index) sortedDocs() []*storedDoc {
	docs := make([]*storedDoc, 0, len(ix.docs))
	for _, d := range ix.docs {
		docs = append(docs, d)
	}
	sort.Slice(docs, func(i, j int) bool { return docs[i].seqNo < docs[j].seqNo })
	return docs
}

// handleRefresh accepts _refresh: documents are searchable as soon as
// they are written.
func (s *Server) handleRefresh(w http.ResponseWriter, r *request) {
	s.mu.RLock()
	ixs, e := s.resolveRequest(r)
	s.mu.RUnlock()
	if e != nil {
		s.fail(w, r, e)
		return
	}
	s.reply(w, r, http.StatusOK, obj{{"_shards", obj{{"total", len(ixs)}, {"successful", len(ixs)}, {"failed", 0}}}})
}

func (s *Server) handleMapping(w http.ResponseWriter, r *request) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ixs, e := s.resolveRequest(r)
	if e != nil {
		s.fail(w, r, e)
		return
	}
	out := map[string]any{}
	for _, ix := range ixs {
		out[ix.name] = map[string]any{"mappings": ix.mapping.render()}
	}
	s.reply(w, r, http.StatusOK, out)
}

// handleSettings answers GET /<target>/_settings: the settings each index
// took from its templates, and its shards.
func (s *Server) handleSettings(w http.ResponseWriter, r *request) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ixs, e := s.resolveRequest(r)
	if e != nil {
		s.fail(w, r, e)
		return
	}
	out := map[string]any{}
	for _, ix := range ixs {
		flat := map[string]any{"index.number_of_shards": "1", "index.number_of_replicas": "0", "index.uuid": ix.uuid, "index.provided_name": ix.name}
		for k, v := range ix.settings {
			flat[k] = fmt.Sprint(v) // Elasticsearch answers every setting as a string
		}
		nested := map[string]any{}
		for k, v := range flat {
			for i := strings.LastIndexByte(k, '.'); i >= 0; i = strings.LastIndexByte(k, '.') {
				k, v = k[:i], map[string]any{k[i+1:]: v}
			}
			mergeInto(nested, map[string]any{k: v})
		}
		out[ix.name] = map[string]any{"settings": nested}
	}
	s.reply(w, r, http.StatusOK, out)
}

// handleDataStream answers GET and DELETE /_data_stream/<names>.
func (s *Server) handleDataStream(w http.ResponseWriter, r *request) {
	if r.Method == http.MethodDelete {
		s.mu.Lock()
		defer s.mu.Unlock()
		names, ok := matchNames(r.name, sortedKeys(s.streams))
		if !ok {
			s.fail(w, r, indexNotFound(r.name))
			return
		}
		for _, n := range names {
			delete(s.indices, s.streams[n].name)
			delete(s.streams, n)
		}
		s.reply(w, r, http.StatusOK, obj{{"acknowledged", true}})
		return
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	names, ok := matchNames(r.name, sortedKeys(s.streams))
	if !ok {
		s.fail(w, r, indexNotFound(r.name))
		return
	}
	list := []obj{}
	for _, n := range names {
		ix, template := s.streams[n], ""
		if t := s.findTemplate(n); t != nil {
			template = t.name
		}
		list = append(list, obj{
			{"name", n},
			{"timestamp_field", obj{{"name", "@timestamp"}}},
			{"indices", []obj{{{"index_name", ix.name}, {"index_uuid", ix.uuid}}}},
			{"generation", 1},
			{"status", "GREEN"},
			{"template", template},
			{"hidden", false},
			{"system", false},
		})
	}
	s.reply(w, r, http.StatusOK, obj{{"data_streams", list}})
}

// mergeInto deep-merges src into dst: objects merge key by key, anything
// else in src replaces what dst has, as composable templates combine.
func mergeInto(dst, src map[string]any) {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			dm, ok := dst[k].(map[string]any)
			if !ok {
				dm = map[string]any{}
				dst[k] = dm
			}
			mergeInto(dm, sm)
			continue
		}
		dst[k] = v
	}
}

// flatten turns nested settings into dotted keys, with "index." in front
// of those that lack it, as Elasticsearch normalizes them.
func flatten(prefix string, m map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok {
			for sk, sv := range flatten(prefix+k+".", sub) {
				out[sk] = sv
			}
			continue
		}
		key := prefix + k
		if !strings.HasPrefix(key, "index.") {
			key = "index." + key
		}
		out[key] = v
	}
	return out
}
