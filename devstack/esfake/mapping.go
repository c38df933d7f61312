package esfake

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// kind is how a field's values are indexed and compared.
type kind int

const (
	kindObject  kind = iota
	kindText         // words, lower-cased
	kindKeyword      // the whole string
	kindInteger      // a number without fraction, within the type's range
	kindFloat
	kindDate    // epoch milliseconds
	kindBoolean // 1 or 0
	kindFlat    // flattened: every leaf a keyword, under its dotted path and the field's own
)

var fieldKinds = map[string]kind{
	"object": kindObject, "nested": kindObject,
	"text": kindText, "match_only_text": kindText,
	"keyword": kindKeyword, "constant_keyword": kindKeyword, "wildcard": kindKeyword,
	"long": kindInteger, "integer": kindInteger, "short": kindInteger, "byte": kindInteger,
	"double": kindFloat, "float": kindFloat, "half_float": kindFloat, "scaled_float": kindFloat,
	"date": kindDate, "date_nanos": kindDate,
	"boolean":   kindBoolean,
	"flattened": kindFlat,
}

// field is one mapped field or object.
type field struct {
	typ         string // "" for an object given by its properties
	kind        kind
	props       map[string]*field // of an object
	fields      map[string]*field // multi-fields, such as msg.keyword
	dynamic     string            // of an object: "true" (also ""), "false" or "strict"
	ignoreAbove int64             // keywords longer are kept in _source only
	params      map[string]any    // every parameter as given, rendered back
}

// mapping is an index's mapping: the root object.
type mapping struct {
	root   *field
	stream bool // a data stream's: @timestamp is a required date
}

// newMapping parses a mappings definition, as a template or an index
// holds it.
func newMapping(def map[string]any, stream bool) (*mapping, *esError) {
	root, e := parseField("_doc", def)
	if e != nil {
		return nil, e
	}
	if stream && root.props["@timestamp"] == nil {
		root.props["@timestamp"] = &field{typ: "date", kind: kindDate, params: map[string]any{"type": "date"}}
	}
	return &mapping{root: root, stream: stream}, nil
}

func mappingError(format string, args ...any) *esError {
	cause := newError(http.StatusBadRequest, "mapper_parsing_exception", format, args...)
	return &esError{status: http.StatusBadRequest, typ: "mapper_parsing_exception",
		reason: "Failed to parse mapping: " + cause.reason, causedBy: cause, rootCause: cause}
}

func parseField(name string, def map[string]any) (*field, *esError) {
	f := &field{params: def, props: map[string]*field{}, fields: map[string]*field{}, dynamic: fmt.Sprint(def["dynamic"])}
	if t, ok := def["type"]; ok {
		f.typ = fmt.Sprint(t)
		k, known := fieldKinds[f.typ]
		if !known {
			return nil, mappingError("No handler for type [%s] declared on field [%s]", f.typ, name)
		}
		f.kind = k
	}
	f.ignoreAbove, _ = asInt(def["ignore_above"])
	for key, into := range map[string]map[string]*field{"properties": f.props, "fields": f.fields} {
		subs, _ := def[key].(map[string]any)
		for sub, sd := range subs {
			d, ok := sd.(map[string]any)
			if !ok {
				return nil, mappingError("Expected map for property [%s] on field [%s] but got a %T", key, sub, sd)
			}
			m, e := parseField(sub, d)
			if e != nil {
				return nil, e
			}
			into[sub] = m
		}
	}
	return f, nil
}

// lookup finds the field at a dotted path, multi-fields included; nil
// when it is not mapped. For a path inside a flattened field it returns
// that field.
func (m *mapping) lookup(path string) *field {
	f := m.root
	for _, part := range strings.Split(path, ".") {
		switch {
		case f.kind == kindFlat:
			return f
		case f.props[part] != nil:
			f = f.props[part]
		case f.fields[part] != nil:
			f = f.fields[part]
		default:
			return nil
		}
	}
	return f
}

func (m *mapping) render() map[string]any {
	out := renderField(m.root)
	if m.stream {
		out["_data_stream_timestamp"] = map[string]any{"enabled": true}
	}
	return out
}

func renderField(f *field) map[string]any {
	out := map[string]any{}
	maps.Copy(out, f.params)
	if len(f.props) > 0 {
		props := map[string]any{}
		for name, p := range f.props {
			props[name] = renderField(p)
		}
		out["properties"] = props
	}
	return out
}

// docParser indexes one document: it checks every value against the
// mapping, maps new fields dynamically and collects the values to search.
type docParser struct {
	id     string
	fields map[string][]any
	added  []func() // undoes the dynamic mappings of this document
}

// parseDocument parses a document's source for the index. On success the
// document's new fields stay in the mapping; on failure the mapping is as
// it was, and the error is Elasticsearch's 400 for the document.
func (m *mapping) parseDocument(source []byte, id string) (map[string][]any, *esError) {
	dec := json.NewDecoder(bytes.NewReader(source))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil || doc == nil || !json.Valid(source) {
		return nil, newError(http.StatusBadRequest, "document_parsing_exception", "failed to parse: the source of document with id '%s' is not one JSON object", id)
	}
	p := &docParser{id: id, fields: map[string][]any{}}
	e := p.object(m.root, "", doc)
	if e == nil && m.stream && len(p.fields["@timestamp"]) != 1 {
		e = newError(http.StatusBadRequest, "document_parsing_exception", "data stream timestamp field [@timestamp] is missing or has more than one value")
	}
	if e != nil {
		for i := len(p.added) - 1; i >= 0; i-- {
			p.added[i]()
		}
		return nil, e
	}
	return p.fields, nil
}

func (p *docParser) object(obj *field, prefix string, doc map[string]any) *esError {
	for name, v := range doc {
		path := prefix + name
		if prefix == "" && strings.Contains(" _id _index _source _routing _seq_no _primary_term _version _ignored ", " "+name+" ") {
			return newError(http.StatusBadRequest, "document_parsing_exception",
				"Field [%s] is a metadata field and cannot be added inside a document. Use the index API request parameters.", path)
		}
		if e := p.value(obj, name, path, v); e != nil {
			return e
		}
	}
	return nil
}

func (p *docParser) value(parent *field, name, path string, v any) *esError {
	if list, ok := v.([]any); ok {
		for _, item := range list {
			if e := p.value(parent, name, path, item); e != nil {
				return e
			}
		}
		return nil
	}
	if v == nil {
		return nil
	}
	f := parent.props[name]
	if f == nil {
		switch parent.dynamic {
		case "false":
			return nil
		case "strict":
			return newError(http.StatusBadRequest, "strict_dynamic_mapping_exception", "mapping set to strict, dynamic introduction of [%s] is not allowed", path)
		}
		f = dynamicField(v)
		parent.props[name] = f
		p.added = append(p.added, func() { delete(parent.props, name) })
	}
	if sub, ok := v.(map[string]any); ok && f.kind == kindObject {
		return p.object(f, path+".", sub)
	}
	if f.kind == kindObject {
		return newError(http.StatusBadRequest, "document_parsing_exception",
			"object mapping for [%s] tried to parse field [%s] as object, but found a concrete value", path, name)
	}
	if f.kind == kindFlat {
		return p.flat(path, path, v)
	}
	if e := p.leaf(f, path, v); e != nil {
		return e
	}
	for sub, mf := range f.fields {
		if e := p.leaf(mf, path+"."+sub, v); e != nil {
			return e
		}
	}
	return nil
}

// flat indexes the leaves of a flattened field as keywords, each under
// its dotted path and under the field itself.
func (p *docParser) flat(root, path string, v any) *esError {
	switch v := v.(type) {
	case map[string]any:
		for k, sub := range v {
			if e := p.flat(root, path+"."+k, sub); e != nil {
				return e
			}
		}
	case []any:
		for _, sub := range v {
			if e := p.flat(root, path, sub); e != nil {
				return e
			}
		}
	case nil:
	default:
		s := fmt.Sprint(v)
		p.fields[path] = append(p.fields[path], s)
		if path != root {
			p.fields[root] = append(p.fields[root], s)
		}
	}
	return nil
}

// leaf checks one value against its field and indexes it.
func (p *docParser) leaf(f *field, path string, v any) *esError {
	if _, isObj := v.(map[string]any); isObj && f.kind != kindFlat {
		return p.fieldError(f, path, v, newError(http.StatusBadRequest, "illegal_argument_exception",
			"Can't get text on a START_OBJECT"))
	}
	switch f.kind {
	case kindText:
		p.fields[path] = append(p.fields[path], words(scalarText(v))...)
	case kindKeyword:
		if s := scalarText(v); f.ignoreAbove == 0 || int64(len([]rune(s))) <= f.ignoreAbove {
			p.fields[path] = append(p.fields[path], s)
		}
	case kindInteger, kindFloat, kindBoolean, kindDate:
		n, cause := toNumber(f, v)
		if cause != nil {
			return p.fieldError(f, path, v, cause)
		}
		p.fields[path] = append(p.fields[path], n)
	}
	return nil
}

// fieldError is the document_parsing_exception of a value that does not
// fit its field.
func (p *docParser) fieldError(f *field, path string, v any, cause *esError) *esError {
	return &esError{status: http.StatusBadRequest, typ: "document_parsing_exception", causedBy: cause,
		reason: fmt.Sprintf("failed to parse field [%s] of type [%s] in document with id '%s'. Preview of field's value: '%s'", path, f.typ, p.id, scalarText(v))}
}

// toNumber converts a value for a numeric, date or boolean field, with
// Elasticsearch's coercion: numbers in strings, fractions truncated for
// integer types, epoch milliseconds for dates.
func toNumber(f *field, v any) (float64, *esError) {
	text := scalarText(v)
	switch f.kind {
	case kindBoolean:
		switch text {
		case "true":
			return 1, nil
		case "false", "":
			return 0, nil
		}
		return 0, illegalArgument("Failed to parse value [%s] as only [true] or [false] are allowed.", text)
	case kindDate:
		if ms, ok := parseDate(text); ok {
			return ms, nil
		}
		return 0, illegalArgument("failed to parse date field [%s] with format [strict_date_optional_time||epoch_millis]", text)
	}
	if _, isBool := v.(bool); isBool {
		return 0, illegalArgument("Current token (VALUE_%s) not numeric, can not use numeric value accessors", strings.ToUpper(text))
	}
	n, err := strconv.ParseFloat(strings.TrimSpace(text), 64)
	if err != nil || math.IsInf(n, 0) || math.IsNaN(n) {
		return 0, illegalArgument("For input string: \"%s\"", text)
	}
	if f.kind == kindInteger {
		n = math.Trunc(n)
	}
	return n, nil
}

// dynamicField maps a new field from its first value, as Elasticsearch's
// dynamic mapping does: a string becomes a date when it is one (ISO 8601)
// or else text with a keyword sub-field; a whole number long, a fraction
// float; then boolean and object.
func dynamicField(v any) *field {
	if list, ok := v.([]any); ok {
		for _, item := range list {
			if item != nil {
				return dynamicField(item)
			}
		}
	}
	typed := func(typ string) *field {
		return &field{typ: typ, kind: fieldKinds[typ], params: map[string]any{"type": typ}}
	}
	switch v := v.(type) {
	case map[string]any:
		return &field{props: map[string]*field{}, params: map[string]any{}}
	case bool:
		return typed("boolean")
	case json.Number:
		if _, err := v.Int64(); err == nil {
			return typed("long")
		}
		return typed("float")
	case string:
		if _, ok := parseISODate(v); ok {
			return typed("date")
		}
	}
	f := typed("text")
	kw := &field{typ: "keyword", kind: kindKeyword, ignoreAbove: 256, params: map[string]any{"type": "keyword", "ignore_above": 256}}
	f.fields = map[string]*field{"keyword": kw}
	f.params["fields"] = map[string]any{"keyword": kw.params}
	return f
}

// parseDate reads a date as strict_date_optional_time||epoch_millis.
func parseDate(s string) (float64, bool) {
	if ms, ok := parseISODate(s); ok {
		return ms, true
	}
	n, err := strconv.ParseFloat(s, 64)
	return math.Trunc(n), err == nil
}

// isoLayouts are the forms of strict_date_optional_time that logs use.
var isoLayouts = []string{"2006-01-02T15:04:05.999999999Z07:00", "2006-01-02T15:04:05.999999999", "2006-01-02T15:04Z07:00",
	"2006-01-02T15:04", "2006-01-02", "2006-01", "2006"}

func parseISODate(s string) (float64, bool) {
	if len(s) < 4 || s[0] < '0' || s[0] > '9' || (len(s) == 4 && strings.Trim(s, "0123456789") == "") {
		return 0, false // a bare number is epoch_millis, not a year
	}
	for _, layout := range isoLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return float64(t.UnixMilli()), true
		}
	}
	return 0, false
}

// words splits text as the standard analyzer roughly does: lower-cased
// runs of letters, digits and underscores.
func words(s string) []any {
	var out []any
	for _, w := range strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '_'
	}) {
		out = append(out, w)
	}
	return out
}

// scalarText is a JSON scalar as Elasticsearch reads it into a string.
func scalarText(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

func asInt(v any) (int64, bool) {
	n, _ := v.(json.Number)
	i, err := n.Int64()
	return i, err == nil
}

// stringList reads a string or a list of strings.
func stringList(v any) []string {
	if s, ok := v.(string); ok {
		return []string{s}
	}
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, s := range list {
		out = append(out, fmt.Sprint(s))
	}
	return out
}
