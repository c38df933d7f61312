package esfake

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// index is one concrete index: a plain index or a data stream's backing
// index. It has a single shard, so sequence numbers are per index.
type index struct {
	name     string
	uuid     string
	stream   string // the data stream it backs, or ""
	closed   bool   // closed with POST /<index>/_close: no writes, searches or counts
	created  time.Time
	mapping  *rootMapping
	settings map[string]any // as given when the index was created
	docs     map[string]*storedDoc
	nextSeq  int64
	term     int64 // the primary term: 1, and one more at each close and open
}

type storedDoc struct {
	id      string
	seqNo   int64
	term    int64
	version int64
	source  []byte
	fields  map[string]*values
}

type dataStream struct {
	name     string
	template string
	hidden   bool
	indices  []*index // backing indices, oldest first; the last one takes writes
	// generation counts the backing indices ever made, deleted ones too.
	generation int
}

func (d *dataStream) writeIndex() *index { return d.indices[len(d.indices)-1] }

// hidden reports whether wildcards skip an index unless they start with a
// dot, as for backing indices.
func hidden(name string) bool { return strings.HasPrefix(name, ".") }

type readOptions struct {
	ignoreUnavailable bool
	allowNoIndices    bool
	// forbidClosed is for searches, counts and refreshes: a closed index
	// that the expression names (or whose data stream it names) fails the
	// request with index_closed_exception, unless ignoreUnavailable skips
	// it; wildcards skip closed indices.
	forbidClosed bool
}

func readOptionsOf(r *request) readOptions {
	o := readOptions{allowNoIndices: true}
	if v := r.params.Get("ignore_unavailable"); v != "" {
		o.ignoreUnavailable = v != "false"
	}
	if v := r.params.Get("allow_no_indices"); v != "" {
		o.allowNoIndices = v != "false"
	}
	return o
}

// searchOptionsOf are the options of a search, count or refresh, which
// closed indices fail.
func searchOptionsOf(r *request) readOptions {
	o := readOptionsOf(r)
	o.forbidClosed = true
	return o
}

// resolveRead turns an index expression (names, data streams, comma lists,
// * wildcards and -exclusions; empty or _all for everything) into concrete
// indices, as searches see them. Call with s.mu held.
func (s *Server) resolveRead(expr string, o readOptions) ([]*index, *esError) {
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
	var closed *index // the first closed index named
	named := func(ix *index) {
		if ix.closed && o.forbidClosed {
			if closed == nil && !o.ignoreUnavailable {
				closed = ix
			}
			return
		}
		add(ix)
	}
	matched := func(ix *index) {
		if !ix.closed || !o.forbidClosed {
			add(ix)
		}
	}
	for _, part := range strings.Split(expr, ",") {
		part = strings.TrimSpace(part)
		switch {
		case part == "":
			continue
		case strings.HasPrefix(part, "-") && len(out) > 0:
			pattern := part[1:]
			kept := out[:0]
			for _, ix := range out {
				if globMatch(pattern, ix.name) || (ix.stream != "" && globMatch(pattern, ix.stream)) {
					delete(seen, ix)
					continue
				}
				kept = append(kept, ix)
			}
			out = kept
		case strings.Contains(part, "*"):
			showHidden := strings.HasPrefix(part, ".")
			for _, name := range sortedKeys(s.streams) {
				ds := s.streams[name]
				if globMatch(part, name) && (!ds.hidden || showHidden) {
					for _, ix := range ds.indices {
						matched(ix)
					}
				}
			}
			for _, name := range sortedKeys(s.indices) {
				if globMatch(part, name) && (!hidden(name) || showHidden) {
					matched(s.indices[name])
				}
			}
		default:
			if ds := s.streams[part]; ds != nil {
				for _, ix := range ds.indices {
					named(ix)
				}
			} else if ix := s.indices[part]; ix != nil {
				named(ix)
			} else if !o.ignoreUnavailable {
				return nil, indexNotFound(part)
			}
		}
	}
	if closed != nil {
		return nil, indexClosed(closed)
	}
	if len(out) == 0 && !o.allowNoIndices {
		return nil, indexNotFound(expr)
	}
	return out, nil
}

// writeTarget finds the index a write of op to name goes to, with
// Elasticsearch's rules for data streams. With create set, a missing
// index or data stream is created (from the matching template); without,
// nothing changes and ix may be nil, but concrete still names the index
// the write would go to. Call with s.mu held (for writing if create).
func (s *Server) writeTarget(name, op string, create bool) (ix *index, concrete string, e *esError) {
	if ds := s.streams[name]; ds != nil {
		if op != "create" {
			return nil, name, onlyCreateInDataStreams()
		}
		return ds.writeIndex(), ds.writeIndex().name, nil
	}
	if ix := s.indices[name]; ix != nil {
		if ix.stream != "" && op != "delete" {
			if op == "create" {
				return nil, name, illegalArgument("index request with op_type=create targeting backing indices is disallowed, target corresponding data stream [%s] instead", ix.stream)
			}
			return nil, name, illegalArgument("index request with op_type=index and no if_primary_term and if_seq_no set targeting backing indices is disallowed, target corresponding data stream [%s] instead", ix.stream)
		}
		return ix, name, nil
	}
	if op == "delete" {
		return nil, name, indexNotFound(name)
	}
	t := s.findTemplate(name)
	if create {
		if e := s.mayAutoCreate(name, t); e != nil {
			return nil, name, e
		}
	}
	if e := validateIndexName(name); e != nil {
		return nil, name, e
	}
	if t != nil && t.dataStream != nil {
		if op != "create" {
			return nil, name, onlyCreateInDataStreams()
		}
		if !create {
			return nil, backingIndexName(name, s.now(), 1), nil
		}
		ds, e := s.createDataStream(name, t)
		if e != nil {
			return nil, name, e
		}
		return ds.writeIndex(), ds.writeIndex().name, nil
	}
	if !create {
		return nil, name, nil
	}
	ix, e = s.createIndex(name, t, "", nil, nil)
	if e != nil {
		return nil, name, e
	}
	return ix, name, nil
}

func onlyCreateInDataStreams() *esError {
	return illegalArgument("only write ops with an op_type of create are allowed in data streams")
}

func backingIndexName(stream string, now time.Time, generation int) string {
	return fmt.Sprintf(".ds-%s-%s-%06d", stream, now.UTC().Format("2006.01.02"), generation)
}

// createIndex makes a concrete index whose mapping merges the template's
// with the given one. Call with s.mu held for writing.
func (s *Server) createIndex(name string, t *indexTemplate, stream string, mappings, settings map[string]any) (*index, *esError) {
	mergedMappings, mergedSettings := map[string]any{}, map[string]any{}
	if t != nil {
		mergeInto(mergedMappings, s.templatePart(t, "mappings"))
		mergeInto(mergedSettings, flattenSettings(s.templatePart(t, "settings")))
	}
	mergeInto(mergedMappings, mappings)
	mergeInto(mergedSettings, flattenSettings(settings))
	rm, e := newMapping(mergedMappings, stream != "", mergedSettings)
	if e != nil {
		if e.typ == "mapper_parsing_exception" {
			e = mapperParsing(e)
		}
		return nil, e
	}
	ix := &index{name: name, uuid: newUUID(), stream: stream, created: s.now(), mapping: rm,
		settings: mergedSettings, docs: map[string]*storedDoc{}, term: 1}
	s.indices[name] = ix
	return ix, nil
}

// createDataStream makes a data stream and its first backing index.
func (s *Server) createDataStream(name string, t *indexTemplate) (*dataStream, *esError) {
	ix, e := s.createIndex(backingIndexName(name, s.now(), 1), t, name, nil, nil)
	if e != nil {
		return nil, e
	}
	hiddenStream, _ := t.dataStream["hidden"].(bool)
	ds := &dataStream{name: name, template: t.name, hidden: hiddenStream, indices: []*index{ix}, generation: 1}
	s.streams[name] = ds
	return ds, nil
}

// validateIndexName applies Elasticsearch's rules for index and data
// stream names.
func validateIndexName(name string) *esError {
	bad := func(why string) *esError {
		return &esError{status: 400, typ: "invalid_index_name_exception",
			reason: fmt.Sprintf("Invalid index name [%s], %s", name, why),
			extra:  obj{{"index_uuid", "_na_"}, {"index", name}}}
	}
	switch {
	case name == "":
		return bad("must not be empty")
	case name == "." || name == "..":
		return bad("must not be '.' or '..'")
	case strings.ContainsAny(name, ` "*\<|,>/?`):
		return bad(`must not contain the following characters [ , ", *, \, <, |, ,, >, /, ?]`)
	case strings.Contains(name, "#"):
		return bad("must not contain '#'")
	case strings.Contains(name, ":"):
		return bad("must not contain ':'")
	case strings.IndexAny(name[:1], "_-+") == 0:
		return bad("must not start with '_', '-', or '+'")
	case strings.ToLower(name) != name:
		return bad("must be lowercase")
	case len(name) > 255:
		return bad(fmt.Sprintf("index name is too long, (%d > 255)", len(name)))
	}
	return nil
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
