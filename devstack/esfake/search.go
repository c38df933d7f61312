package esfake

import (
	"encoding/json"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// searchRequest is a parsed _search body merged with its URL parameters.
type searchRequest struct {
	query       query
	size, from  int
	sort        []sortField
	trackTotal  int // hits counted exactly up to this; -1 counts all, 0 reports no total
	totalAsInt  bool
	searchAfter []any
	source      bool
	version     bool
	seqNo       bool
	trackScores bool
	minScore    *float64
}

type sortField struct {
	field        string // a field path, _score or _doc
	desc         bool
	missingFirst bool
	unmappedType string
	mode         string // min or max; "" picks by order
}

// Search body keys that Elasticsearch has and esfake leaves out.
var unsupportedSearchKeys = map[string]bool{
	"aggs": true, "aggregations": true, "highlight": true, "collapse": true, "pit": true,
	"runtime_mappings": true, "script_fields": true, "post_filter": true, "suggest": true, "knn": true,
	"rescore": true, "fields": true, "docvalue_fields": true, "stored_fields": true, "indices_boost": true,
	"slice": true, "ext": true, "retriever": true, "rank": true, "terminate_after": true, "explain": true,
}

func parseSearch(r *request) (*searchRequest, *esError) {
	body, e := decodeBody(r.body)
	if e != nil {
		return nil, e
	}
	sr := &searchRequest{size: 10, trackTotal: maxResultWindow, source: true}
	for _, k := range sortedKeys(body) {
		v := body[k]
		switch {
		case k == "query":
			if sr.query, e = parseQuery(v); e != nil {
				return nil, e
			}
		case k == "size" || k == "from":
			n, ok := asInt(v)
			if !ok {
				return nil, parsingError("[%s] must be a number", k)
			}
			if k == "size" {
				sr.size = int(n)
			} else {
				sr.from = int(n)
			}
		case k == "sort":
			if sr.sort, e = parseSort(v); e != nil {
				return nil, e
			}
		case k == "track_total_hits":
			if sr.trackTotal, e = parseTrackTotal(scalarText(v)); e != nil {
				return nil, e
			}
		case k == "search_after":
			list, ok := v.([]any)
			if !ok {
				return nil, parsingError("[search_after] must be an array")
			}
			sr.searchAfter = list
		case k == "_source":
			b, ok := v.(bool)
			if !ok {
				return nil, unsupported("_source filtering (only true and false)")
			}
			sr.source = b
		case k == "version" || k == "seq_no_primary_term" || k == "track_scores":
			b, _ := v.(bool)
			switch k {
			case "version":
				sr.version = b
			case "seq_no_primary_term":
				sr.seqNo = b
			default:
				sr.trackScores = b
			}
		case k == "min_score":
			f, err := strconv.ParseFloat(scalarText(v), 64)
			if err != nil {
				return nil, parsingError("[min_score] must be a number")
			}
			sr.minScore = &f
		case k == "timeout" || k == "profile" || k == "stats":
		case unsupportedSearchKeys[k]:
			return nil, unsupported("[%s] in search requests", k)
		default:
			return nil, parsingError("Unknown key for a %s in [%s].", valueTokenName(v), k)
		}
	}
	if e := searchParams(r, sr); e != nil {
		return nil, e
	}
	if sr.query == nil {
		sr.query = matchAllQuery{boost: 1}
	}
	if sr.size < 0 {
		return nil, illegalArgument("[size] parameter cannot be negative, found [%d]", sr.size)
	}
	if sr.from < 0 {
		return nil, illegalArgument("[from] parameter cannot be negative, found [%d]", sr.from)
	}
	if len(sr.searchAfter) > 0 && len(sr.searchAfter) != len(sr.sort) {
		return nil, illegalArgument("search_after has %d value(s) but sort has %d.", len(sr.searchAfter), len(sr.sort))
	}
	return sr, nil
}

// searchParams applies the URL parameters of a search, which win over
// the body as in Elasticsearch.
func searchParams(r *request, sr *searchRequest) *esError {
	for _, k := range []string{"q", "scroll", "stored_fields", "docvalue_fields", "terminate_after",
		"_source_includes", "_source_excludes", "suggest_field", "suggest_text"} {
		if r.params.Has(k) {
			return unsupported("the [%s] parameter", k)
		}
	}
	if r.flag("explain") {
		return unsupported("the [explain] parameter")
	}
	for _, k := range []string{"size", "from"} {
		if v := r.params.Get(k); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				return illegalArgument("Failed to parse int parameter [%s] with value [%s]", k, v)
			}
			if k == "size" {
				sr.size = n
			} else {
				sr.from = n
			}
		}
	}
	if v := r.params.Get("sort"); v != "" {
		sr.sort = nil
		for _, part := range strings.Split(v, ",") {
			f := sortField{field: part}
			if i := strings.LastIndexByte(part, ':'); i >= 0 {
				f.field = part[:i]
				switch part[i+1:] {
				case "asc":
				case "desc":
					f.desc = true
				default:
					return illegalArgument("Unknown sort order [%s]", part[i+1:])
				}
			} else {
				f.desc = f.field == "_score"
			}
			sr.sort = append(sr.sort, f)
		}
	}
	if v := r.params.Get("track_total_hits"); v != "" {
		n, e := parseTrackTotal(v)
		if e != nil {
			return e
		}
		sr.trackTotal = n
	}
	if r.flag("rest_total_hits_as_int") {
		sr.totalAsInt, sr.trackTotal = true, -1
	}
	if v, ok := r.params["_source"]; ok {
		switch v[0] {
		case "true", "":
			sr.source = true
		case "false":
			sr.source = false
		default:
			return unsupported("_source filtering (only true and false)")
		}
	}
	if r.params.Has("version") {
		sr.version = r.flag("version")
	}
	if r.params.Has("seq_no_primary_term") {
		sr.seqNo = r.flag("seq_no_primary_term")
	}
	if r.params.Has("track_scores") {
		sr.trackScores = r.flag("track_scores")
	}
	return nil
}

func parseTrackTotal(v string) (int, *esError) {
	switch v {
	case "true":
		return -1, nil
	case "false":
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < -1 {
		return 0, illegalArgument("[track_total_hits] must be true, false or a non-negative number, got [%s]", v)
	}
	if n == 0 {
		return 0, nil
	}
	return n, nil
}

func valueTokenName(v any) string {
	switch v.(type) {
	case map[string]any:
		return "START_OBJECT"
	case []any:
		return "START_ARRAY"
	}
	return tokenName(v)
}

// parseSort reads the sort forms: "f", {"f":"desc"}, {"f":{"order":...}}
// and arrays of them.
func parseSort(v any) ([]sortField, *esError) {
	var list []any
	switch x := v.(type) {
	case []any:
		list = x
	default:
		list = []any{x}
	}
	var out []sortField
	for _, item := range list {
		switch x := item.(type) {
		case string:
			out = append(out, sortField{field: x, desc: x == "_score"})
		case map[string]any:
			for _, field := range sortedKeys(x) {
				f := sortField{field: field, desc: field == "_score"}
				switch spec := x[field].(type) {
				case string:
					if e := setOrder(&f, spec); e != nil {
						return nil, e
					}
				case map[string]any:
					for _, k := range sortedKeys(spec) {
						sv := scalarText(spec[k])
						switch k {
						case "order":
							if e := setOrder(&f, sv); e != nil {
								return nil, e
							}
						case "missing":
							switch sv {
							case "_last":
							case "_first":
								f.missingFirst = true
							default:
								return nil, unsupported("a custom [missing] sort value [%s] (only _first and _last)", sv)
							}
						case "unmapped_type":
							f.unmappedType = sv
						case "mode":
							if sv != "min" && sv != "max" {
								return nil, unsupported("sort mode [%s] (only min and max)", sv)
							}
							f.mode = sv
						case "format", "numeric_type":
						default:
							return nil, parsingError("[field_sort] unknown field [%s]", k)
						}
					}
				default:
					return nil, parsingError("[sort] malformed for field [%s]", field)
				}
				out = append(out, f)
			}
		default:
			return nil, parsingError("[sort] malformed")
		}
	}
	return out, nil
}

func setOrder(f *sortField, order string) *esError {
	switch order {
	case "asc":
		f.desc = false
	case "desc":
		f.desc = true
	default:
		return illegalArgument("Unknown SortOrder [%s]", order)
	}
	return nil
}

// sortKey is one sort value of a hit, comparable with others of its field.
type sortKey struct {
	missing bool
	kind    valueKind // kindInt, kindFloat or kindKeyword
	i       int64
	f       float64
	s       string
}

type hit struct {
	ix    *index
	doc   *storedDoc
	order int // position of the index in the request, for stable ties
	score float64
	keys  []sortKey
}

// sorter computes the sort keys of one index's documents.
type sorter struct {
	fields []sortField
	kinds  []valueKind
	paths  []string
}

func newSorter(fields []sortField, ix *index) (*sorter, *esError) {
	so := &sorter{fields: fields, kinds: make([]valueKind, len(fields)), paths: make([]string, len(fields))}
	for i, f := range fields {
		switch f.field {
		case "_score":
			so.kinds[i] = kindFloat
			continue
		case "_doc":
			so.kinds[i] = kindInt
			continue
		}
		m := ix.mapping.lookup(f.field)
		if m == nil {
			if f.unmappedType == "" {
				// A sort is not a query: no "failed to create query" prefix.
				return nil, newError(400, "query_shard_exception", "No mapping found for [%s] in order to sort on", f.field)
			}
			k, ok := fieldKinds[f.unmappedType]
			if !ok {
				return nil, illegalArgument("No mapper found for type [%s]", f.unmappedType)
			}
			so.kinds[i] = sortKind(k)
			continue
		}
		switch m.kind {
		case kindText:
			return nil, illegalArgument("Fielddata is disabled on [%s] in [%s]. Text fields are not optimised for operations that require per-document field data like aggregations and sorting, so these operations are disabled by default. Please use a keyword field instead. Alternatively, set fielddata=true on [%s] in order to load field data by uninverting the inverted index. Note that this can use significant memory.", f.field, ix.name, f.field)
		case kindObject, kindStored:
			return nil, illegalArgument("Field [%s] of type [%s] is not supported for sorting", f.field, m.typ)
		}
		so.kinds[i], so.paths[i] = sortKind(m.kind), m.path
	}
	return so, nil
}

func sortKind(k valueKind) valueKind {
	switch k {
	case kindInt, kindDate, kindBool:
		return kindInt
	case kindFloat:
		return kindFloat
	}
	return kindKeyword
}

func (so *sorter) keys(d *storedDoc, score float64) []sortKey {
	keys := make([]sortKey, len(so.fields))
	for i, f := range so.fields {
		k := sortKey{kind: so.kinds[i]}
		switch f.field {
		case "_score":
			k.f = score
		case "_doc":
			k.i = d.seqNo
		default:
			useMax := f.desc
			if f.mode != "" {
				useMax = f.mode == "max"
			}
			v := d.fields[so.paths[i]]
			k.missing = true
			if v != nil {
				switch k.kind {
				case kindInt:
					for j, x := range v.ints {
						if j == 0 || (useMax && x > k.i) || (!useMax && x < k.i) {
							k.i, k.missing = x, false
						}
					}
				case kindFloat:
					for j, x := range v.floats {
						if j == 0 || (useMax && x > k.f) || (!useMax && x < k.f) {
							k.f, k.missing = x, false
						}
					}
				default:
					for j, x := range v.strs {
						if j == 0 || (useMax && x > k.s) || (!useMax && x < k.s) {
							k.s, k.missing = x, false
						}
					}
				}
			}
		}
		keys[i] = k
	}
	return keys
}

// compareKeys orders two hits by the sort fields: negative when a comes first.
func compareKeys(fields []sortField, a, b []sortKey) int {
	for i, f := range fields {
		x, y := a[i], b[i]
		if x.missing || y.missing {
			if x.missing && y.missing {
				continue
			}
			// missing values go last unless missing is _first, whatever the order
			if x.missing != f.missingFirst {
				return 1
			}
			return -1
		}
		c := 0
		switch {
		case x.kind == kindInt:
			c = cmpOrdered(x.i, y.i)
		case x.kind == kindFloat:
			c = cmpOrdered(x.f, y.f)
		default:
			c = strings.Compare(x.s, y.s)
		}
		if f.desc {
			c = -c
		}
		if c != 0 {
			return c
		}
	}
	return 0
}

func cmpOrdered[T int64 | float64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// render gives a hit's sort values as Elasticsearch returns them.
func (k sortKey) render(f sortField) any {
	if k.missing {
		last := !f.missingFirst
		high := last != f.desc // where a missing value sits in ascending terms
		switch k.kind {
		case kindInt:
			if high {
				return int64(math.MaxInt64)
			}
			return int64(math.MinInt64)
		case kindFloat:
			if high {
				return "Infinity"
			}
			return "-Infinity"
		}
		return nil
	}
	switch k.kind {
	case kindInt:
		return k.i
	case kindFloat:
		return k.f
	}
	return k.s
}

// afterKeys turns search_after values into sort keys.
func afterKeys(fields []sortField, kinds []valueKind, values []any) ([]sortKey, *esError) {
	keys := make([]sortKey, len(fields))
	for i := range fields {
		k := sortKey{kind: kinds[i]}
		v := values[i]
		if v == nil {
			k.missing = true
			keys[i] = k
			continue
		}
		s := scalarText(v)
		var err error
		switch k.kind {
		case kindInt:
			k.i, err = strconv.ParseInt(s, 10, 64)
		case kindFloat:
			k.f, err = strconv.ParseFloat(s, 64)
		default:
			k.s = s
		}
		if err != nil {
			return nil, illegalArgument("Failed to parse search_after value [%s] for field [%s]", s, fields[i].field)
		}
		keys[i] = k
	}
	return keys, nil
}

// collect runs a query over indices and returns the matching hits.
func (s *Server) collect(ixs []*index, q query, sr *searchRequest) ([]hit, bool, *esError) {
	now := s.now()
	scored := sr == nil || len(sr.sort) == 0 || sr.trackScores
	var hits []hit
	for order, ix := range ixs {
		m, e := q.compile(&compileCtx{ix: ix, now: now})
		if e != nil {
			return nil, false, shardFailure(e, ix.name)
		}
		var so *sorter
		var after []sortKey
		if sr != nil && len(sr.sort) > 0 {
			if so, e = newSorter(sr.sort, ix); e != nil {
				return nil, false, shardFailure(e, ix.name)
			}
			for _, f := range sr.sort {
				if f.field == "_score" {
					scored = true
				}
			}
			if len(sr.searchAfter) > 0 {
				if after, e = afterKeys(sr.sort, so.kinds, sr.searchAfter); e != nil {
					return nil, false, shardFailure(e, ix.name)
				}
			}
		}
		for _, d := range ix.sortedDocs() {
			ok, score := m(d)
			if !ok {
				continue
			}
			if sr != nil && sr.minScore != nil && score < *sr.minScore {
				continue
			}
			h := hit{ix: ix, doc: d, order: order, score: score}
			if so != nil {
				h.keys = so.keys(d, score)
				if after != nil && compareKeys(sr.sort, h.keys, after) <= 0 {
					continue
				}
			}
			hits = append(hits, h)
		}
	}
	return hits, scored, nil
}

func (s *Server) handleSearch(w http.ResponseWriter, r *request) {
	start := time.Now()
	sr, e := parseSearch(r)
	if e != nil {
		s.fail(w, r, e)
		return
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	ixs, e := s.resolveRead(r.target, searchOptionsOf(r))
	if e == nil {
		e = blocked(levelRead, ixs...)
	}
	if e != nil {
		s.fail(w, r, e)
		return
	}
	if sr.from+sr.size > maxResultWindow {
		e := illegalArgument("Result window is too large, from + size must be less than or equal to: [%d] but was [%d]. See the scroll api for a more efficient way to request large data sets. This limit can be set by changing the [index.max_result_window] index level setting.", maxResultWindow, sr.from+sr.size)
		if len(ixs) > 0 {
			e = shardFailure(e, ixs[0].name)
		}
		s.fail(w, r, e)
		return
	}
	hits, scored, e := s.collect(ixs, sr.query, sr)
	if e != nil {
		s.fail(w, r, e)
		return
	}
	sort.SliceStable(hits, func(i, j int) bool {
		a, b := hits[i], hits[j]
		if len(sr.sort) > 0 {
			if c := compareKeys(sr.sort, a.keys, b.keys); c != 0 {
				return c < 0
			}
		} else if a.score != b.score {
			return a.score > b.score
		}
		if a.order != b.order {
			return a.order < b.order
		}
		return a.doc.seqNo < b.doc.seqNo
	})

	var maxScore any
	if scored && len(hits) > 0 {
		best := hits[0].score
		for _, h := range hits {
			best = math.Max(best, h.score)
		}
		maxScore = best
	}
	total := len(hits)
	page := hits[min(sr.from, total):min(sr.from+sr.size, total)]
	rendered := make([]obj, 0, len(page))
	for _, h := range page {
		o := obj{{"_index", h.ix.name}, {"_id", h.doc.id}}
		if sr.version {
			o = append(o, kv{"_version", h.doc.version})
		}
		if sr.seqNo {
			o = append(o, kv{"_seq_no", h.doc.seqNo}, kv{"_primary_term", h.doc.term})
		}
		if scored {
			o = append(o, kv{"_score", h.score})
		} else {
			o = append(o, kv{"_score", nil})
		}
		if sr.source {
			o = append(o, kv{"_source", json.RawMessage(h.doc.source)})
		}
		if len(sr.sort) > 0 {
			vals := make([]any, len(sr.sort))
			for i, k := range h.keys {
				vals[i] = k.render(sr.sort[i])
			}
			o = append(o, kv{"sort", vals})
		}
		rendered = append(rendered, o)
	}
	hitsObj := obj{}
	switch {
	case sr.totalAsInt:
		hitsObj = append(hitsObj, kv{"total", total})
	case sr.trackTotal < 0 || (sr.trackTotal > 0 && total <= sr.trackTotal):
		hitsObj = append(hitsObj, kv{"total", obj{{"value", total}, {"relation", "eq"}}})
	case sr.trackTotal > 0:
		hitsObj = append(hitsObj, kv{"total", obj{{"value", sr.trackTotal}, {"relation", "gte"}}})
	}
	hitsObj = append(hitsObj, kv{"max_score", maxScore}, kv{"hits", rendered})
	s.reply(w, r, http.StatusOK, obj{
		{"took", time.Since(start).Milliseconds()},
		{"timed_out", false},
		{"_shards", shardsHeader(len(ixs))},
		{"hits", hitsObj},
	})
}

func (s *Server) handleCount(w http.ResponseWriter, r *request) {
	for _, k := range []string{"q", "min_score", "terminate_after"} {
		if r.params.Has(k) {
			s.fail(w, r, unsupported("the [%s] parameter", k))
			return
		}
	}
	body, e := decodeBody(r.body)
	if e != nil {
		s.fail(w, r, e)
		return
	}
	var q query = matchAllQuery{boost: 1}
	for k, v := range body {
		if k != "query" {
			s.fail(w, r, parsingError("request does not support [%s]", k))
			return
		}
		if q, e = parseQuery(v); e != nil {
			s.fail(w, r, e)
			return
		}
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	ixs, e := s.resolveRead(r.target, searchOptionsOf(r))
	if e == nil {
		e = blocked(levelRead, ixs...)
	}
	if e != nil {
		s.fail(w, r, e)
		return
	}
	hits, _, e := s.collect(ixs, q, nil)
	if e != nil {
		s.fail(w, r, e)
		return
	}
	s.reply(w, r, http.StatusOK, obj{{"count", len(hits)}, {"_shards", shardsHeader(len(ixs))}})
}
