package esfake

import (
	"cmp"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// matcher tells whether a document matches a query, and its score.
type matcher func(d *storedDoc) (bool, float64)

// compiler turns a query into a matcher for one index, whose mapping
// gives each field's kind. Errors of parsing_exception type are about the
// request; the others are raised "on the shard" and answered inside a
// search_phase_execution_exception, as Elasticsearch does.
type compiler struct{ m *mapping }

func parsingError(format string, args ...any) *esError {
	return newError(http.StatusBadRequest, "parsing_exception", format, args...)
}

func queryShard(format string, args ...any) *esError {
	return newError(http.StatusBadRequest, "query_shard_exception", format, args...)
}

// compile compiles match_all, match_none, match, term, terms, range and
// bool queries.
func (c compiler) compile(v any) (matcher, *esError) {
	q, ok := v.(map[string]any)
	if !ok || len(q) != 1 {
		return nil, parsingError("query malformed, must start with start_object and hold one query")
	}
	for typ, body := range q {
		switch typ {
		case "match_all":
			return func(*storedDoc) (bool, float64) { return true, 1 }, nil
		case "match_none":
			return func(*storedDoc) (bool, float64) { return false, 0 }, nil
		case "bool":
			return c.boolQuery(body)
		case "term", "terms", "match", "range":
			return c.fieldQuery(typ, body)
		default:
			return nil, parsingError("unknown query [%s]", typ)
		}
	}
	return nil, nil
}

// fieldQuery compiles a query on one field: {"term":{"f":v}},
// {"term":{"f":{"value":v}}}, {"terms":{"f":[...]}},
// {"match":{"f":"words"}}, {"match":{"f":{"query":"words","operator":"and"}}},
// {"range":{"f":{"gte":a,"lt":b}}}.
func (c compiler) fieldQuery(typ string, body any) (matcher, *esError) {
	m, ok := body.(map[string]any)
	if !ok || len(m) != 1 {
		return nil, parsingError("[%s] query malformed, one field expected", typ)
	}
	for path, spec := range m {
		params, _ := spec.(map[string]any)
		value := spec
		if params != nil {
			value = params["value"]
			if typ == "match" {
				value = params["query"]
			}
			for k := range params {
				if !slices.Contains(map[string][]string{"term": {"value", "boost"}, "match": {"query", "operator", "boost"},
					"range": {"gt", "gte", "lt", "lte", "boost"}, "terms": {}}[typ], k) {
					return nil, parsingError("[%s] query does not support [%s]", typ, k)
				}
			}
		}
		f := c.m.lookup(path)
		if path == "_id" {
			f = &field{typ: "_id", kind: kindKeyword}
		}
		if f == nil {
			return func(*storedDoc) (bool, float64) { return false, 0 }, nil // an unmapped field matches nothing
		}
		values := func(d *storedDoc) []any {
			if path == "_id" {
				return []any{d.id}
			}
			return d.fields[path]
		}
		var pred func(any) bool
		var e *esError
		switch typ {
		case "term":
			pred, e = equals(f, value)
		case "terms":
			list, ok := value.([]any)
			if !ok {
				return nil, parsingError("[terms] query does not support [%s]", path)
			}
			var preds []func(any) bool
			for _, v := range list {
				p, e := equals(f, v)
				if e != nil {
					return nil, e
				}
				preds = append(preds, p)
			}
			pred = func(v any) bool { return slices.ContainsFunc(preds, func(p func(any) bool) bool { return p(v) }) }
		case "match":
			if f.kind != kindText {
				pred, e = equals(f, value)
				break
			}
			want := words(scalarText(value))
			all := params != nil && params["operator"] == "and"
			return func(d *storedDoc) (bool, float64) {
				n := 0
				for _, w := range want {
					if slices.Contains(values(d), w) {
						n++
					}
				}
				return n > 0 && (!all || n == len(want)), float64(n)
			}, nil
		case "range":
			pred, e = rangePred(f, params)
		}
		if e != nil {
			return nil, e
		}
		return func(d *storedDoc) (bool, float64) { return slices.ContainsFunc(values(d), pred), 1 }, nil
	}
	return nil, nil
}

// equals compiles an exact match of a query value on a field.
func equals(f *field, value any) (func(any) bool, *esError) {
	switch f.kind {
	case kindText, kindKeyword, kindFlat:
		want := scalarText(value)
		return func(v any) bool { return v == want }, nil
	case kindObject:
		return func(any) bool { return false }, nil
	}
	n, e := queryNumber(f, value)
	if e != nil {
		return nil, e
	}
	return func(v any) bool { return v == n }, nil
}

// queryNumber reads a query value for a numeric, date or boolean field.
func queryNumber(f *field, value any) (float64, *esError) {
	if f.kind == kindDate {
		if s, ok := value.(string); ok {
			return dateMath(s, false)
		}
	}
	n, e := toNumber(f, value)
	if e != nil {
		return 0, queryShard("failed to create query: %s", e.reason)
	}
	return n, nil
}

// rangePred compiles the bounds of a range query: numbers, dates (with
// date math such as now-15m or now/d) and strings.
func rangePred(f *field, params map[string]any) (func(any) bool, *esError) {
	bounds := map[string]any{}
	for op, bound := range params {
		switch {
		case op == "boost" || bound == nil:
		case f.kind == kindText || f.kind == kindKeyword || f.kind == kindFlat:
			bounds[op] = scalarText(bound)
		default:
			var e *esError
			if s, isStr := bound.(string); isStr && f.kind == kindDate {
				bounds[op], e = dateMath(s, op == "gt" || op == "lte")
			} else {
				bounds[op], e = queryNumber(f, bound)
			}
			if e != nil {
				return nil, e
			}
		}
	}
	return func(v any) bool {
		for op, b := range bounds {
			c := compareKeys(v, b)
			if !map[string]bool{"gt": c > 0, "gte": c >= 0, "lt": c < 0, "lte": c <= 0}[op] {
				return false
			}
		}
		return true
	}, nil
}

// dateMath reads a date bound: a date, or now or <date>|| followed by
// +N<unit>, -N<unit> and /<unit> (y, M, w, d, h, H, m, s), in UTC.
// Rounding goes to the unit's start, or with roundUp (gt and lte) to its
// last millisecond, as Elasticsearch rounds.
func dateMath(expr string, roundUp bool) (float64, *esError) {
	bad := queryShard("failed to create query: failed to parse date field [%s] with format [strict_date_optional_time||epoch_millis]", expr)
	t, rest := time.Now().UTC(), strings.TrimPrefix(expr, "now")
	if !strings.HasPrefix(expr, "now") {
		anchor, math, found := strings.Cut(expr, "||")
		ms, ok := parseDate(anchor)
		if !ok || !found {
			return ms, map[bool]*esError{false: bad}[ok]
		}
		t, rest = time.UnixMilli(int64(ms)).UTC(), math
	}
	for rest != "" {
		m := dateMathStep.FindStringSubmatch(rest)
		if m == nil {
			return 0, bad
		}
		n, unit := 0, m[3][0]
		rest = rest[len(m[0]):]
		if m[1] == "" {
			if t = unitStart(t, unit); roundUp {
				t = addUnits(t, unit, 1).Add(-time.Millisecond)
			}
			continue
		}
		if n, _ = strconv.Atoi(m[2]); m[1] == "-" {
			n = -n
		}
		t = addUnits(t, unit, n)
	}
	return float64(t.UnixMilli()), nil
}

var (
	dateMathStep = regexp.MustCompile(`^(?:([+-])(\d+)|/)([yMwdhHms])`)
	clockUnits   = map[byte]time.Duration{'h': time.Hour, 'H': time.Hour, 'm': time.Minute, 's': time.Second}
)

func unitStart(t time.Time, unit byte) time.Time {
	y, mo, d := t.Date()
	switch unit {
	case 'y':
		return time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC)
	case 'M':
		return time.Date(y, mo, 1, 0, 0, 0, 0, time.UTC)
	case 'w':
		return time.Date(y, mo, d-(int(t.Weekday())+6)%7, 0, 0, 0, 0, time.UTC)
	case 'd':
		return time.Date(y, mo, d, 0, 0, 0, 0, time.UTC)
	}
	return t.Truncate(clockUnits[unit])
}

func addUnits(t time.Time, unit byte, n int) time.Time {
	switch unit {
	case 'y':
		return t.AddDate(n, 0, 0)
	case 'M':
		return t.AddDate(0, n, 0)
	case 'w':
		return t.AddDate(0, 0, 7*n)
	case 'd':
		return t.AddDate(0, 0, n)
	}
	return t.Add(time.Duration(n) * clockUnits[unit])
}

// boolQuery compiles must, filter, should (with minimum_should_match) and
// must_not. Only must and should add to the score.
func (c compiler) boolQuery(body any) (matcher, *esError) {
	m, ok := body.(map[string]any)
	if !ok {
		return nil, parsingError("[bool] query malformed, no start_object after query name")
	}
	clauses := map[string][]matcher{}
	minShould := -1
	for k, v := range m {
		switch k {
		case "must", "filter", "should", "must_not":
			list, isList := v.([]any)
			if !isList {
				list = []any{v}
			}
			for _, q := range list {
				cm, e := c.compile(q)
				if e != nil {
					return nil, e
				}
				clauses[k] = append(clauses[k], cm)
			}
		case "minimum_should_match":
			n, err := strconv.Atoi(scalarText(v))
			if err != nil {
				return nil, parsingError("[bool] minimum_should_match [%v] is not a number (esfake takes numbers only)", v)
			}
			minShould = n
		case "boost":
		default:
			return nil, parsingError("[bool] query does not support [%s]", k)
		}
	}
	if minShould < 0 {
		minShould = 0
		if len(clauses["must"])+len(clauses["filter"]) == 0 && len(clauses["should"]) > 0 {
			minShould = 1
		}
	}
	return func(d *storedDoc) (bool, float64) {
		score := 0.0
		for _, q := range clauses["must"] {
			ok, s := q(d)
			if !ok {
				return false, 0
			}
			score += s
		}
		for _, q := range clauses["filter"] {
			if ok, _ := q(d); !ok {
				return false, 0
			}
		}
		for _, q := range clauses["must_not"] {
			if ok, _ := q(d); ok {
				return false, 0
			}
		}
		n := 0
		for _, q := range clauses["should"] {
			if ok, s := q(d); ok {
				n++
				score += s
			}
		}
		return n >= minShould, score
	}, nil
}

// sortField is one sort key of a search.
type sortField struct {
	field string // a field path, _score or _doc
	desc  bool
}

// parseSort reads "f", {"f":"desc"} and {"f":{"order":"desc"}}, alone
// or in a list; _score sorts in descending order unless told.
func parseSort(v any) ([]sortField, *esError) {
	list, ok := v.([]any)
	if !ok {
		list = []any{v}
	}
	var out []sortField
	for _, item := range list {
		f := sortField{desc: item == "_score"}
		if name, ok := item.(string); ok {
			f.field = name
		}
		spec, _ := item.(map[string]any)
		for name, order := range spec {
			if params, ok := order.(map[string]any); ok && len(params) == 1 {
				order = params["order"]
			}
			if order != "asc" && order != "desc" {
				return nil, parsingError("[sort] of [%s]: esfake takes only an order, asc or desc", name)
			}
			f.field, f.desc = name, order == "desc"
		}
		if f.field == "" || len(spec) > 1 {
			return nil, parsingError("malformed sort")
		}
		out = append(out, f)
	}
	return out, nil
}

// hit is a matching document with its score and sort values.
type hit struct {
	ix    *index
	doc   *storedDoc
	score float64
	keys  []any
}

// searchRequest is a parsed search body with its URL parameters.
type searchRequest struct {
	query      any
	size, from int
	sort       []sortField
	source     bool
}

func parseSearch(r *request, counting bool) (*searchRequest, *esError) {
	body, e := decodeBody(r.body)
	if e != nil {
		return nil, e
	}
	sr := &searchRequest{size: 10, source: true, query: map[string]any{"match_all": map[string]any{}}}
	for k, v := range body {
		switch {
		case k != "query" && counting:
			return nil, parsingError("request does not support [%s]", k)
		case k == "query":
			sr.query = v
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
		case k == "_source":
			b, ok := v.(bool)
			if !ok {
				return nil, illegalArgument("esfake (a development stand-in for Elasticsearch) does not support _source filtering (only true and false)")
			}
			sr.source = b
		case k == "track_total_hits" || k == "timeout":
		default:
			kind := map[string]string{"json.Number": "VALUE_NUMBER", "string": "VALUE_STRING", "bool": "VALUE_BOOLEAN"}[fmt.Sprintf("%T", v)]
			return nil, parsingError("Unknown key for a %s in [%s].", cmp.Or(kind, "START_OBJECT"), k)
		}
	}
	if _, e := (compiler{m: &mapping{root: &field{}}}).compile(sr.query); e != nil {
		return nil, e // the request's own errors, whatever the indices
	}
	if sr.size < 0 || sr.from < 0 {
		k, n := "size", sr.size
		if sr.from < 0 {
			k, n = "from", sr.from
		}
		return nil, illegalArgument("[%s] parameter cannot be negative, found [%d]", k, n)
	}
	return sr, nil
}

// collect finds the matching documents of the indices, sorted.
func (s *Server) collect(ixs []*index, query any, sorts []sortField) ([]hit, *esError) {
	var hits []hit
	for _, ix := range ixs {
		q, e := compiler{m: ix.mapping}.compile(query)
		if e == nil {
			for _, f := range sorts {
				if e = checkSort(ix, f); e != nil {
					break
				}
			}
		}
		if e != nil {
			return nil, shardFailure(e, ix.name)
		}
		for _, d := range ix.sortedDocs() {
			if ok, score := q(d); ok {
				h := hit{ix: ix, doc: d, score: score}
				for _, f := range sorts {
					h.keys = append(h.keys, sortKey(d, f, score))
				}
				hits = append(hits, h)
			}
		}
	}
	if sorts == nil {
		sort.SliceStable(hits, func(i, j int) bool { return hits[i].score > hits[j].score })
		return hits, nil
	}
	sort.SliceStable(hits, func(i, j int) bool {
		for k, f := range sorts {
			if c := compareKeys(hits[i].keys[k], hits[j].keys[k]); c != 0 {
				if hits[i].keys[k] == nil || hits[j].keys[k] == nil {
					return c < 0 // missing values last, whatever the order
				}
				return (c < 0) != f.desc
			}
		}
		return false
	})
	return hits, nil
}

// checkSort refuses what Elasticsearch refuses to sort on.
func checkSort(ix *index, f sortField) *esError {
	if f.field == "_score" || f.field == "_doc" {
		return nil
	}
	m := ix.mapping.lookup(f.field)
	switch {
	case m == nil:
		return queryShard("No mapping found for [%s] in order to sort on", f.field)
	case m.kind == kindText || m.kind == kindObject:
		return illegalArgument("Text fields are not optimised for operations that require per-document field data like aggregations and sorting, so these operations are disabled by default. Please use a keyword field instead. Alternatively, set fielddata=true on [%s] in order to load field data by uninverting the inverted index. Note that this can use significant memory.", f.field)
	}
	return nil
}

// sortKey is a document's value for one sort field: the lowest for an
// ascending sort, the highest for a descending one; nil when it has none.
func sortKey(d *storedDoc, f sortField, score float64) any {
	switch f.field {
	case "_score":
		return score
	case "_doc":
		return float64(d.seqNo)
	}
	var best any
	for _, v := range d.fields[f.field] {
		if c := compareKeys(v, best); best == nil || (c < 0) != f.desc && c != 0 {
			best = v
		}
	}
	return best
}

// compareKeys orders sort values; nil (missing) sorts last either way.
func compareKeys(a, b any) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return 1
	case b == nil:
		return -1
	}
	if x, ok := a.(float64); ok {
		y, _ := b.(float64)
		return cmp.Compare(x, y)
	}
	return strings.Compare(a.(string), fmt.Sprint(b))
}

// handleSearch answers _search and _count.
func (s *Server) handleSearch(w http.ResponseWriter, r *request) {
	counting := strings.HasSuffix(r.URL.Path, "_count")
	sr, e := parseSearch(r, counting)
	if e != nil {
		s.fail(w, r, e)
		return
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	ixs, e := s.resolveRequest(r)
	var hits []hit
	if e == nil {
		hits, e = s.collect(ixs, sr.query, sr.sort)
	}
	if e != nil {
		s.fail(w, r, e)
		return
	}
	if counting {
		s.reply(w, r, http.StatusOK, obj{{"count", len(hits)}, {"_shards", shardsHeader(len(ixs))}})
		return
	}
	total := len(hits)
	hits = hits[min(sr.from, len(hits)):min(sr.from+sr.size, len(hits))]
	var maxScore any
	out := make([]obj, 0, len(hits))
	for _, h := range hits {
		var score any
		if sr.sort == nil {
			score = h.score
			if m, ok := maxScore.(float64); !ok || h.score > m {
				maxScore = h.score
			}
		}
		o := obj{{"_index", h.ix.name}, {"_id", h.doc.id}, {"_score", score}}
		if sr.source {
			o = append(o, kv{"_source", rawJSON(h.doc.source)})
		}
		if sr.sort != nil {
			keys := make([]any, len(h.keys))
			for i, k := range h.keys {
				keys[i] = k
				if k == nil {
					keys[i] = map[bool]any{true: math.MinInt64, false: math.MaxInt64}[sr.sort[i].desc]
				}
			}
			o = append(o, kv{"sort", keys})
		}
		out = append(out, o)
	}
	s.reply(w, r, http.StatusOK, obj{
		{"took", 0},
		{"timed_out", false},
		{"_shards", shardsHeader(len(ixs))},
		{"hits", obj{{"total", obj{{"value", total}, {"relation", "eq"}}}, {"max_score", maxScore}, {"hits", out}}},
	})
}

// rawJSON is stored JSON, marshalled as it is.
type rawJSON []byte

func (j rawJSON) MarshalJSON() ([]byte, error) { return j, nil }
