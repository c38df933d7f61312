package esfake

import (
	"encoding/json"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// A query is a parsed clause of the query DSL. It is compiled against each
// index it runs on, since the meaning of a value depends on the field's
// type in that index's mapping.
type query interface {
	compile(c *compileCtx) (matcher, *esError)
}

// matcher tells whether a document matches, and with what score.
type matcher func(d *storedDoc) (bool, float64)

type compileCtx struct {
	ix  *index
	now time.Time
}

func matchNothing(*storedDoc) (bool, float64) { return false, 0 }

// supportedQueries is named in the error for any other query type.
const supportedQueries = "match_all, match_none, match, term, terms, range, bool, exists, ids, prefix, constant_score"

// parseQuery parses one query clause: an object with a single key, the
// query type.
func parseQuery(v any) (query, *esError) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, parsingError("[_na] query malformed, must start with start_object")
	}
	if len(m) == 0 {
		return nil, parsingError("query malformed, empty clause found")
	}
	if len(m) > 1 {
		keys := sortedKeys(m)
		return nil, parsingError("[%s] malformed query, expected [END_OBJECT] but found [FIELD_NAME]", keys[0])
	}
	for typ, body := range m {
		switch typ {
		case "match_all":
			b, e := boostOf(typ, body)
			return matchAllQuery{boost: b}, e
		case "match_none":
			return matchNoneQuery{}, nil
		case "term", "prefix":
			return parseTermLike(typ, body)
		case "terms":
			return parseTerms(body)
		case "match":
			return parseMatch(body)
		case "range":
			return parseRange(body)
		case "bool":
			return parseBool(body)
		case "exists":
			o, ok := body.(map[string]any)
			f, _ := o["field"].(string)
			if !ok || f == "" {
				return nil, parsingError("[exists] must be provided with a [field]")
			}
			return existsQuery{field: f}, nil
		case "ids":
			o, _ := body.(map[string]any)
			values, ok := o["values"].([]any)
			if !ok {
				return nil, parsingError("[ids] query malformed, no [values] given")
			}
			q := idsQuery{ids: map[string]bool{}}
			for _, v := range values {
				q.ids[scalarText(v)] = true
			}
			return q, nil
		case "constant_score":
			o, _ := body.(map[string]any)
			if o["filter"] == nil {
				return nil, parsingError("[constant_score] requires a 'filter' element")
			}
			inner, e := parseQuery(o["filter"])
			if e != nil {
				return nil, e
			}
			b, e := boostOf(typ, body)
			return constantScoreQuery{filter: inner, boost: b}, e
		default:
			return nil, parsingError("unknown query [%s]: esfake (a development stand-in for Elasticsearch) supports only %s", typ, supportedQueries)
		}
	}
	panic("unreachable")
}

func boostOf(typ string, body any) (float64, *esError) {
	o, ok := body.(map[string]any)
	if !ok {
		return 0, parsingError("[%s] query malformed, no start_object after query name", typ)
	}
	b, ok := o["boost"]
	if !ok {
		return 1, nil
	}
	f, err := strconv.ParseFloat(scalarText(b), 64)
	if err != nil {
		return 0, parsingError("[%s] failed to parse [boost]", typ)
	}
	return f, nil
}

// fieldClause reads the {"field": value} or {"field": {...params}} form.
func fieldClause(typ string, body any) (field string, value any, params map[string]any, e *esError) {
	o, ok := body.(map[string]any)
	if !ok {
		return "", nil, nil, parsingError("[%s] query malformed, no start_object after query name", typ)
	}
	params = map[string]any{}
	for k, v := range o {
		if k == "boost" || k == "_name" {
			params[k] = v
			continue
		}
		if field != "" {
			return "", nil, nil, parsingError("[%s] query doesn't support multiple fields, found [%s] and [%s]", typ, field, k)
		}
		field, value = k, v
	}
	if field == "" {
		return "", nil, nil, parsingError("[%s] query requires a field", typ)
	}
	if inner, ok := value.(map[string]any); ok {
		for k, v := range inner {
			params[k] = v
		}
		value = nil
		for _, k := range []string{"value", "query"} {
			if v, ok := inner[k]; ok {
				value = v
			}
		}
	}
	return field, value, params, nil
}

func paramBoost(typ string, params map[string]any) (float64, *esError) {
	return boostOf(typ, params)
}

type matchAllQuery struct{ boost float64 }

func (q matchAllQuery) compile(*compileCtx) (matcher, *esError) {
	return func(*storedDoc) (bool, float64) { return true, q.boost }, nil
}

type matchNoneQuery struct{}

func (matchNoneQuery) compile(*compileCtx) (matcher, *esError) { return matchNothing, nil }

// termQuery is term or prefix.
type termQuery struct {
	typ             string
	field           string
	value           any
	caseInsensitive bool
	boost           float64
}

func parseTermLike(typ string, body any) (query, *esError) {
	field, value, params, e := fieldClause(typ, body)
	if e != nil {
		return nil, e
	}
	if value == nil {
		return nil, parsingError("[%s] query malformed, no value given for field [%s]", typ, field)
	}
	q := termQuery{typ: typ, field: field, value: value}
	if q.boost, e = paramBoost(typ, params); e != nil {
		return nil, e
	}
	q.caseInsensitive = params["case_insensitive"] == true
	return q, nil
}

func (q termQuery) compile(c *compileCtx) (matcher, *esError) {
	if q.field == "_id" {
		want := scalarText(q.value)
		return idMatcher(q.boost, func(id string) bool {
			if q.typ == "prefix" {
				return strings.HasPrefix(id, want)
			}
			return id == want
		}), nil
	}
	m := c.ix.mapping.lookup(q.field)
	if m == nil {
		return matchNothing, nil
	}
	var pred func(*values) bool
	if q.typ == "prefix" {
		switch m.kind {
		case kindKeyword, kindText, kindFlattened:
		default:
			return nil, queryShard("Can only use prefix queries on keyword and text fields - not on [%s] which is of type [%s]", q.field, m.typ)
		}
		prefix := scalarText(q.value)
		pred = func(v *values) bool {
			for _, s := range v.strs {
				if strings.HasPrefix(s, prefix) || (q.caseInsensitive && strings.HasPrefix(strings.ToLower(s), strings.ToLower(prefix))) {
					return true
				}
			}
			return false
		}
	} else {
		var e *esError
		if pred, e = c.equals(m, q.value, q.caseInsensitive); e != nil {
			return nil, e
		}
	}
	return fieldMatcher(m.path, pred, q.boost), nil
}

// idMatcher matches documents by their _id, which is not a mapped field.
func idMatcher(boost float64, ok func(id string) bool) matcher {
	return func(d *storedDoc) (bool, float64) {
		if ok(d.id) {
			return true, boost
		}
		return false, 0
	}
}

// fieldMatcher matches documents whose values of one field satisfy pred.
func fieldMatcher(path string, pred func(*values) bool, boost float64) matcher {
	return func(d *storedDoc) (bool, float64) {
		v := d.fields[path]
		if v == nil || !pred(v) {
			return false, 0
		}
		return true, boost
	}
}

// equals builds the test of term semantics: the field holds this value,
// read as the field's type reads it (no analysis, even on text fields).
func (c *compileCtx) equals(m *mapper, value any, caseInsensitive bool) (func(*values) bool, *esError) {
	switch m.kind {
	case kindKeyword, kindText, kindFlattened:
		want := scalarText(value)
		return func(v *values) bool {
			for _, s := range v.strs {
				if s == want || (caseInsensitive && strings.EqualFold(s, want)) {
					return true
				}
			}
			return false
		}, nil
	case kindIP:
		s := scalarText(value)
		if strings.Contains(s, "/") {
			prefix, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, queryShard("'%s' is not an IP string literal.", s)
			}
			return func(v *values) bool {
				for _, ip := range v.strs {
					if a, err := netip.ParseAddr(ip); err == nil && prefix.Contains(a) {
						return true
					}
				}
				return false
			}, nil
		}
		ip, e := toIP(s)
		if e != nil {
			return nil, queryShard("%s", e.reason)
		}
		return func(v *values) bool { return contains(v.strs, ip) }, nil
	case kindInt:
		lo, hi, e := c.numericBounds(m, value, value, true, true)
		if e != nil {
			return nil, e
		}
		return intRange(lo, hi), nil
	case kindFloat:
		f, e := queryFloat(m, value)
		if e != nil {
			return nil, e
		}
		return func(v *values) bool {
			for _, x := range v.floats {
				if x == f {
					return true
				}
			}
			return false
		}, nil
	case kindDate:
		lo, e := c.dateBound(m, value, "", "", false)
		if e != nil {
			return nil, e
		}
		hi, e := c.dateBound(m, value, "", "", true)
		if e != nil {
			return nil, e
		}
		return intRange(lo, hi), nil
	case kindBool:
		b, ok, e := toBool(value)
		if e != nil || !ok {
			return nil, queryShard("Can't parse boolean value [%s], expected [true] or [false]", scalarText(value))
		}
		want := boolInt(b)
		return intRange(want, want), nil
	}
	return func(*values) bool { return false }, nil
}

func intRange(lo, hi int64) func(*values) bool {
	return func(v *values) bool {
		for _, x := range v.ints {
			if x >= lo && x <= hi {
				return true
			}
		}
		return false
	}
}

func queryShard(format string, args ...any) *esError {
	return newError(400, "query_shard_exception", "failed to create query: "+format, args...)
}

func queryFloat(m *mapper, value any) (float64, *esError) {
	f, err := strconv.ParseFloat(strings.TrimSpace(scalarText(value)), 64)
	if err != nil {
		return 0, queryShard("For input string: \"%s\"", scalarText(value))
	}
	if m.typ == "float" || m.typ == "half_float" {
		f = float64(float32(f))
	}
	return f, nil
}

// numericBounds reads integer range bounds; a fraction rounds inward, as
// Elasticsearch does for integer fields. A missing bound is open.
func (c *compileCtx) numericBounds(m *mapper, lower, upper any, incLower, incUpper bool) (lo, hi int64, e *esError) {
	lo, hi = math.MinInt64, math.MaxInt64
	if lower != nil {
		s := strings.TrimSpace(scalarText(lower))
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			lo = n
			if !incLower {
				if n == math.MaxInt64 {
					return 1, 0, nil
				}
				lo = n + 1
			}
		} else if f, err := strconv.ParseFloat(s, 64); err == nil {
			lo = clampInt(math.Ceil(f))
			if !incLower && float64(lo) == f {
				lo++
			}
		} else {
			return 0, 0, queryShard("For input string: \"%s\"", s)
		}
	}
	if upper != nil {
		s := strings.TrimSpace(scalarText(upper))
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			hi = n
			if !incUpper {
				if n == math.MinInt64 {
					return 1, 0, nil
				}
				hi = n - 1
			}
		} else if f, err := strconv.ParseFloat(s, 64); err == nil {
			hi = clampInt(math.Floor(f))
			if !incUpper && float64(hi) == f {
				hi--
			}
		} else {
			return 0, 0, queryShard("For input string: \"%s\"", s)
		}
	}
	return lo, hi, nil
}

func clampInt(f float64) int64 {
	switch {
	case f >= math.MaxInt64:
		return math.MaxInt64
	case f <= math.MinInt64:
		return math.MinInt64
	}
	return int64(f)
}

// dateBound evaluates a date in a query, with the query's format and
// time_zone if given, else the field's format.
func (c *compileCtx) dateBound(m *mapper, value any, format, tz string, up bool) (int64, *esError) {
	f := m.dates
	if format != "" {
		var err error
		if f, err = newDateFormat(format); err != nil {
			return 0, queryShard("%v", err)
		}
	}
	loc := time.UTC
	if tz != "" {
		z, ok := parseZone(tz)
		if !ok {
			l, err := time.LoadLocation(tz)
			if err != nil {
				return 0, queryShard("unknown time_zone [%s]", tz)
			}
			z = l
		}
		loc = z
	}
	if n, ok := value.(json.Number); ok && format == "" {
		if ms, ok := epochParserMillis(string(n)); ok {
			return ms, nil
		}
	}
	ms, e := dateMath(scalarText(value), f, loc, c.now, up)
	if e != nil {
		return 0, e
	}
	return ms, nil
}

func epochParserMillis(s string) (int64, bool) {
	t, _, ok := epochParser(1)(s, time.UTC)
	if !ok {
		return 0, false
	}
	return t.UnixMilli(), true
}

type termsQuery struct {
	field  string
	values []any
	boost  float64
}

func parseTerms(body any) (query, *esError) {
	o, ok := body.(map[string]any)
	if !ok {
		return nil, parsingError("[terms] query malformed, no start_object after query name")
	}
	q := termsQuery{boost: 1}
	for k, v := range o {
		switch k {
		case "boost":
			b, e := boostOf("terms", o)
			if e != nil {
				return nil, e
			}
			q.boost = b
		case "_name":
		default:
			if q.field != "" {
				return nil, parsingError("[terms] query does not support multiple fields")
			}
			list, ok := v.([]any)
			if !ok {
				return nil, unsupported("the terms lookup form of the [terms] query (field [%s])", k)
			}
			q.field, q.values = k, list
		}
	}
	if q.field == "" {
		return nil, parsingError("[terms] query requires a field")
	}
	return q, nil
}

func (q termsQuery) compile(c *compileCtx) (matcher, *esError) {
	if q.field == "_id" {
		ids := map[string]bool{}
		for _, v := range q.values {
			ids[scalarText(v)] = true
		}
		return idMatcher(q.boost, func(id string) bool { return ids[id] }), nil
	}
	m := c.ix.mapping.lookup(q.field)
	if m == nil {
		return matchNothing, nil
	}
	preds := make([]func(*values) bool, 0, len(q.values))
	for _, v := range q.values {
		p, e := c.equals(m, v, false)
		if e != nil {
			return nil, e
		}
		preds = append(preds, p)
	}
	return fieldMatcher(m.path, func(v *values) bool {
		for _, p := range preds {
			if p(v) {
				return true
			}
		}
		return false
	}, q.boost), nil
}

type matchQuery struct {
	field string
	text  any
	and   bool
	boost float64
}

func parseMatch(body any) (query, *esError) {
	field, value, params, e := fieldClause("match", body)
	if e != nil {
		return nil, e
	}
	if value == nil {
		return nil, parsingError("[match] requires query value")
	}
	q := matchQuery{field: field, text: value}
	if q.boost, e = paramBoost("match", params); e != nil {
		return nil, e
	}
	for k, v := range params {
		switch k {
		case "query", "boost", "_name", "lenient", "analyzer", "auto_generate_synonyms_phrase_query", "zero_terms_query":
		case "operator":
			switch strings.ToLower(scalarText(v)) {
			case "and":
				q.and = true
			case "or":
			default:
				return nil, parsingError("[match] query does not support [operator] value [%v]", v)
			}
		default:
			return nil, unsupported("the [%s] parameter of the [match] query", k)
		}
	}
	return q, nil
}

func (q matchQuery) compile(c *compileCtx) (matcher, *esError) {
	m := c.ix.mapping.lookup(q.field)
	if m == nil {
		return matchNothing, nil
	}
	if m.kind != kindText {
		pred, e := c.equals(m, q.text, false)
		if e != nil {
			return nil, e
		}
		return fieldMatcher(m.path, pred, q.boost), nil
	}
	tokens := analyze(scalarText(q.text))
	if len(tokens) == 0 {
		return matchNothing, nil
	}
	return func(d *storedDoc) (bool, float64) {
		v := d.fields[m.path]
		if v == nil {
			return false, 0
		}
		matched := 0
		for _, t := range tokens {
			if contains(v.strs, t) {
				matched++
			}
		}
		if matched == 0 || (q.and && matched < len(tokens)) {
			return false, 0
		}
		return true, q.boost * float64(matched)
	}, nil
}

type rangeQuery struct {
	field            string
	lower, upper     any
	incLower         bool
	incUpper         bool
	format, timeZone string
	boost            float64
}

func parseRange(body any) (query, *esError) {
	field, _, params, e := fieldClause("range", body)
	if e != nil {
		return nil, e
	}
	q := rangeQuery{field: field, incLower: true, incUpper: true}
	if q.boost, e = paramBoost("range", params); e != nil {
		return nil, e
	}
	for k, v := range params {
		switch k {
		case "gte":
			q.lower, q.incLower = v, true
		case "gt":
			q.lower, q.incLower = v, false
		case "lte":
			q.upper, q.incUpper = v, true
		case "lt":
			q.upper, q.incUpper = v, false
		case "from":
			q.lower = v
		case "to":
			q.upper = v
		case "include_lower":
			q.incLower = v == true
		case "include_upper":
			q.incUpper = v == true
		case "format":
			q.format = scalarText(v)
		case "time_zone":
			q.timeZone = scalarText(v)
		case "boost", "_name", "relation":
		default:
			return nil, parsingError("[range] query does not support [%s]", k)
		}
	}
	return q, nil
}

func (q rangeQuery) compile(c *compileCtx) (matcher, *esError) {
	m := c.ix.mapping.lookup(q.field)
	if m == nil {
		return matchNothing, nil
	}
	var pred func(*values) bool
	switch m.kind {
	case kindInt:
		lo, hi, e := c.numericBounds(m, q.lower, q.upper, q.incLower, q.incUpper)
		if e != nil {
			return nil, e
		}
		pred = intRange(lo, hi)
	case kindBool:
		lo, hi := int64(0), int64(1)
		if q.lower != nil {
			b, _, _ := toBool(q.lower)
			lo = boolInt(b)
			if !q.incLower {
				lo++
			}
		}
		if q.upper != nil {
			b, _, _ := toBool(q.upper)
			hi = boolInt(b)
			if !q.incUpper {
				hi--
			}
		}
		pred = intRange(lo, hi)
	case kindDate:
		// gt and lte round up, gte and lt round down, as in Elasticsearch.
		lo, hi := int64(math.MinInt64), int64(math.MaxInt64)
		if q.lower != nil {
			ms, e := c.dateBound(m, q.lower, q.format, q.timeZone, !q.incLower)
			if e != nil {
				return nil, e
			}
			lo = ms
			if !q.incLower {
				lo++
			}
		}
		if q.upper != nil {
			ms, e := c.dateBound(m, q.upper, q.format, q.timeZone, q.incUpper)
			if e != nil {
				return nil, e
			}
			hi = ms
			if !q.incUpper {
				hi--
			}
		}
		pred = intRange(lo, hi)
	case kindFloat:
		lo, hi := math.Inf(-1), math.Inf(1)
		var e *esError
		if q.lower != nil {
			if lo, e = queryFloat(m, q.lower); e != nil {
				return nil, e
			}
		}
		if q.upper != nil {
			if hi, e = queryFloat(m, q.upper); e != nil {
				return nil, e
			}
		}
		pred = func(v *values) bool {
			for _, x := range v.floats {
				if (x > lo || (q.incLower && x == lo)) && (x < hi || (q.incUpper && x == hi)) {
					return true
				}
			}
			return false
		}
	case kindIP:
		var lo, hi netip.Addr
		var err error
		if q.lower != nil {
			if lo, err = netip.ParseAddr(scalarText(q.lower)); err != nil {
				return nil, queryShard("'%s' is not an IP string literal.", scalarText(q.lower))
			}
		}
		if q.upper != nil {
			if hi, err = netip.ParseAddr(scalarText(q.upper)); err != nil {
				return nil, queryShard("'%s' is not an IP string literal.", scalarText(q.upper))
			}
		}
		pred = func(v *values) bool {
			for _, s := range v.strs {
				a, err := netip.ParseAddr(s)
				if err != nil {
					continue
				}
				if lo.IsValid() && (a.Compare(lo) < 0 || (!q.incLower && a.Compare(lo) == 0)) {
					continue
				}
				if hi.IsValid() && (a.Compare(hi) > 0 || (!q.incUpper && a.Compare(hi) == 0)) {
					continue
				}
				return true
			}
			return false
		}
	case kindKeyword, kindText, kindFlattened:
		lower, upper := "", ""
		if q.lower != nil {
			lower = scalarText(q.lower)
		}
		if q.upper != nil {
			upper = scalarText(q.upper)
		}
		pred = func(v *values) bool {
			for _, s := range v.strs {
				if q.lower != nil && (s < lower || (!q.incLower && s == lower)) {
					continue
				}
				if q.upper != nil && (s > upper || (!q.incUpper && s == upper)) {
					continue
				}
				return true
			}
			return false
		}
	default:
		return nil, queryShard("Field [%s] of type [%s] does not support range queries", q.field, m.typ)
	}
	return fieldMatcher(m.path, pred, q.boost), nil
}

type boolQuery struct {
	must, filter, should, mustNot []query
	minShould                     any
	boost                         float64
}

func parseBool(body any) (query, *esError) {
	o, ok := body.(map[string]any)
	if !ok {
		return nil, parsingError("[bool] query malformed, no start_object after query name")
	}
	q := boolQuery{boost: 1}
	for _, k := range sortedKeys(o) {
		v := o[k]
		switch k {
		case "must", "filter", "should", "must_not":
			var clauses []any
			switch x := v.(type) {
			case []any:
				clauses = x
			case map[string]any:
				clauses = []any{x}
			default:
				return nil, parsingError("[bool] query does not support [%s]", k)
			}
			for _, cl := range clauses {
				sub, e := parseQuery(cl)
				if e != nil {
					return nil, e
				}
				switch k {
				case "must":
					q.must = append(q.must, sub)
				case "filter":
					q.filter = append(q.filter, sub)
				case "should":
					q.should = append(q.should, sub)
				default:
					q.mustNot = append(q.mustNot, sub)
				}
			}
		case "minimum_should_match":
			q.minShould = v
		case "boost":
			b, e := boostOf("bool", o)
			if e != nil {
				return nil, e
			}
			q.boost = b
		case "_name", "adjust_pure_negative":
		default:
			return nil, parsingError("[bool] query does not support [%s]", k)
		}
	}
	return q, nil
}

// minimumShouldMatch resolves a minimum_should_match spec ("2", "-1",
// "75%", "-25%") against n optional clauses.
func minimumShouldMatch(spec any, n int) (int, *esError) {
	s := strings.TrimSpace(scalarText(spec))
	bad := parsingError("[bool] query does not support minimum_should_match [%s]", s)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var k int
	if strings.HasSuffix(s, "%") {
		p, err := strconv.Atoi(strings.TrimSuffix(s, "%"))
		if err != nil {
			return 0, bad
		}
		k = n * p / 100
	} else {
		var err error
		if k, err = strconv.Atoi(s); err != nil {
			return 0, bad
		}
	}
	if neg {
		k = n - k
	}
	return max(k, 0), nil
}

func (q boolQuery) compile(c *compileCtx) (matcher, *esError) {
	compileAll := func(qs []query) ([]matcher, *esError) {
		out := make([]matcher, len(qs))
		for i, sub := range qs {
			m, e := sub.compile(c)
			if e != nil {
				return nil, e
			}
			out[i] = m
		}
		return out, nil
	}
	must, e := compileAll(q.must)
	if e != nil {
		return nil, e
	}
	filter, e := compileAll(q.filter)
	if e != nil {
		return nil, e
	}
	should, e := compileAll(q.should)
	if e != nil {
		return nil, e
	}
	mustNot, e := compileAll(q.mustNot)
	if e != nil {
		return nil, e
	}
	need := 0
	if len(should) > 0 && len(must) == 0 && len(filter) == 0 {
		need = 1
	}
	if q.minShould != nil {
		if need, e = minimumShouldMatch(q.minShould, len(should)); e != nil {
			return nil, e
		}
	}
	empty := len(must)+len(filter)+len(should)+len(mustNot) == 0
	return func(d *storedDoc) (bool, float64) {
		if empty {
			return true, q.boost
		}
		score := 0.0
		for _, m := range must {
			ok, s := m(d)
			if !ok {
				return false, 0
			}
			score += s
		}
		for _, m := range filter {
			if ok, _ := m(d); !ok {
				return false, 0
			}
		}
		for _, m := range mustNot {
			if ok, _ := m(d); ok {
				return false, 0
			}
		}
		matched := 0
		for _, m := range should {
			if ok, s := m(d); ok {
				matched++
				score += s
			}
		}
		if matched < need {
			return false, 0
		}
		return true, score * q.boost
	}, nil
}

type existsQuery struct{ field string }

func (q existsQuery) compile(c *compileCtx) (matcher, *esError) {
	m := c.ix.mapping.lookup(q.field)
	if m == nil {
		return matchNothing, nil
	}
	var paths []string
	var walk func(m *mapper)
	walk = func(m *mapper) {
		if m.kind != kindObject {
			paths = append(paths, m.path)
		}
		for _, c := range m.props {
			walk(c)
		}
	}
	walk(m)
	return func(d *storedDoc) (bool, float64) {
		for _, p := range paths {
			if v := d.fields[p]; v != nil && len(v.strs)+len(v.ints)+len(v.floats) > 0 {
				return true, 1
			}
		}
		return false, 0
	}, nil
}

type idsQuery struct{ ids map[string]bool }

func (q idsQuery) compile(*compileCtx) (matcher, *esError) {
	return func(d *storedDoc) (bool, float64) { return q.ids[d.id], 1 }, nil
}

type constantScoreQuery struct {
	filter query
	boost  float64
}

func (q constantScoreQuery) compile(c *compileCtx) (matcher, *esError) {
	inner, e := q.filter.compile(c)
	if e != nil {
		return nil, e
	}
	return func(d *storedDoc) (bool, float64) {
		ok, _ := inner(d)
		return ok, q.boost
	}, nil
}
