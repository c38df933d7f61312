package esfake

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// docParser reads one document against an index mapping. It collects the
// values to search on and the dynamic mappings the document introduces;
// the mapping itself changes only when commit is called, so a document
// that fails leaves no trace.
type docParser struct {
	rm        *rootMapping
	raw       []byte
	id        string
	dec       *json.Decoder
	fields    map[string]*values
	added     []*mapper
	overlay   map[*mapper]map[string]*mapper // dynamic children not yet committed
	newFields int
	end       int // offset of the closing brace of the last object read
}

// parseDocument checks a document's source against the mapping.
func (rm *rootMapping) parseDocument(raw []byte, id string) (*docParser, *esError) {
	p := &docParser{rm: rm, raw: raw, id: id, fields: map[string]*values{}}
	p.dec = json.NewDecoder(bytes.NewReader(raw))
	p.dec.UseNumber()
	tok, err := p.dec.Token()
	if errors.Is(err, io.EOF) {
		return nil, newError(400, "document_parsing_exception", "failed to parse, document is empty")
	}
	if err != nil {
		return nil, p.syntax(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, p.failParse(0, "root of the document must be a JSON object", nil)
	}
	if e := p.object(rm.root); e != nil {
		return nil, e
	}
	if _, err := p.dec.Token(); !errors.Is(err, io.EOF) {
		return nil, p.failParse(int(p.dec.InputOffset()), "unexpected content after the end of the document", nil)
	}
	if p.newFields > 0 && rm.fieldCount+p.newFields > rm.fieldLimit {
		msg := fmt.Sprintf("Limit of total fields [%d] has been exceeded while adding new fields [%d]", rm.fieldLimit, p.newFields)
		return nil, p.failParse(p.end, msg, illegalArgument("%s", msg))
	}
	if rm.dataStream {
		switch n := len(intsOf(p.fields["@timestamp"])); {
		case n == 0:
			msg := "data stream timestamp field [@timestamp] is missing"
			return nil, p.failParse(p.end, msg, illegalArgument("%s", msg))
		case n > 1:
			msg := "data stream timestamp field [@timestamp] encountered multiple values"
			return nil, p.failParse(p.end, msg, illegalArgument("%s", msg))
		}
	}
	return p, nil
}

func intsOf(v *values) []int64 {
	if v == nil {
		return nil
	}
	return v.ints
}

// commit adds the document's dynamic mappings to the index mapping.
func (p *docParser) commit() {
	for _, m := range p.added {
		if m.parent.props == nil {
			m.parent.props = map[string]*mapper{}
		}
		m.parent.props[m.name] = m
	}
	p.rm.fieldCount += p.newFields
}

// pos is the offset of the next token: the decoder stops right after the
// previous one, before any separator.
func (p *docParser) pos() int {
	i := int(p.dec.InputOffset())
	for i < len(p.raw) {
		switch p.raw[i] {
		case ' ', '\t', '\r', '\n', ':', ',':
			i++
		default:
			return i
		}
	}
	return i
}

func (p *docParser) object(obj *mapper) *esError {
	var seen map[string]bool
	for p.dec.More() {
		keyPos := p.pos()
		tok, err := p.dec.Token()
		if err != nil {
			return p.syntax(err)
		}
		key, _ := tok.(string)
		if seen == nil {
			seen = map[string]bool{}
		}
		if seen[key] {
			return p.failParse(keyPos, fmt.Sprintf("Duplicate field '%s'", key), nil)
		}
		seen[key] = true
		if e := p.field(obj, key, keyPos); e != nil {
			return e
		}
	}
	end := p.pos()
	if _, err := p.dec.Token(); err != nil {
		return p.syntax(err)
	}
	p.end = end
	return nil
}

// field reads the value of key inside object obj. Dotted keys ("host.name")
// address the same field as nested objects do, as in Elasticsearch 8.
func (p *docParser) field(obj *mapper, key string, keyPos int) *esError {
	if obj == p.rm.root && metadataFields[key] {
		return p.failAt(keyPos, fmt.Sprintf("Field [%s] is a metadata field and cannot be added inside a document. Use the index API request parameters.", key))
	}
	if strings.TrimSpace(key) == "" {
		return p.failAt(keyPos, "field name cannot be an empty string")
	}
	parts := strings.Split(key, ".")
	for _, part := range parts {
		if part == "" {
			return p.failAt(keyPos, fmt.Sprintf("field name [%s] cannot contain empty parts between dots", key))
		}
	}
	parent := obj
	for i, part := range parts[:len(parts)-1] {
		child := p.child(parent, part)
		if child == nil {
			c, skip, e := p.dynamic(parent, part, "object", nil, keyPos)
			if e != nil {
				return e
			}
			if skip {
				return p.skipValue()
			}
			child = c
		}
		switch child.kind {
		case kindObject:
			if !child.enabled {
				return p.skipValue()
			}
			parent = child
		case kindFlattened:
			tok, err := p.dec.Token()
			if err != nil {
				return p.syntax(err)
			}
			return p.flattened(child, child.path+"."+strings.Join(parts[i+1:], "."), tok)
		default:
			return p.failAt(keyPos, fmt.Sprintf("Could not dynamically add mapping for field [%s]. Existing mapping for [%s] must be of type object but found [%s].",
				joinPath(obj.path, key), child.path, child.typ))
		}
	}
	pos := p.pos()
	tok, err := p.dec.Token()
	if err != nil {
		return p.syntax(err)
	}
	return p.value(parent, parts[len(parts)-1], tok, pos)
}

// value indexes one JSON value (already read as tok, found at pos) of the
// field name inside object parent.
func (p *docParser) value(parent *mapper, name string, tok any, pos int) *esError {
	if tok == nil {
		return nil // null is no value, and maps nothing
	}
	if d, ok := tok.(json.Delim); ok && d == '[' {
		for p.dec.More() {
			epos := p.pos()
			etok, err := p.dec.Token()
			if err != nil {
				return p.syntax(err)
			}
			if e := p.value(parent, name, etok, epos); e != nil {
				return e
			}
		}
		if _, err := p.dec.Token(); err != nil {
			return p.syntax(err)
		}
		return nil
	}
	m := p.child(parent, name)
	if m == nil {
		detected, dates := p.detect(tok)
		nm, skip, e := p.dynamic(parent, name, detected, dates, pos)
		if e != nil {
			return e
		}
		if skip {
			if _, isObject := tok.(json.Delim); isObject {
				return p.skipRest()
			}
			return nil
		}
		m = nm
	}
	if _, isObject := tok.(json.Delim); isObject {
		switch m.kind {
		case kindObject:
			if !m.enabled {
				return p.skipRest()
			}
			return p.object(m)
		case kindFlattened:
			return p.flattened(m, m.path, tok)
		default:
			raw, e := p.captureRest(pos)
			if e != nil {
				return e
			}
			if p.ignoresMalformed(m) {
				return nil
			}
			return p.fieldError(m, pos, javaPreview(raw),
				&esError{typ: "illegal_state_exception", reason: fmt.Sprintf("Can't get text on a START_OBJECT at 1:%d", pos+1)})
		}
	}
	switch m.kind {
	case kindObject:
		return p.failAt(pos, fmt.Sprintf("object mapping for [%s] tried to parse field [%s] as object, but found a concrete value", m.path, name))
	case kindFlattened:
		return p.flattened(m, m.path, tok)
	}
	return p.leaf(m, tok, pos)
}

// leaf indexes a scalar into a field and its multi-fields.
func (p *docParser) leaf(m *mapper, tok any, pos int) *esError {
	var cause *esError
	switch m.kind {
	case kindText:
		if m.indexed {
			p.values(m.path).strs = append(p.values(m.path).strs, analyze(scalarText(tok))...)
		}
	case kindKeyword:
		s := scalarText(tok)
		if m.indexed && (m.ignoreAbove == 0 || utf8.RuneCountInString(s) <= m.ignoreAbove) {
			if len(s) > maxTermBytes {
				cause = immenseTerm(m.path, s)
				break
			}
			v := p.values(m.path)
			v.strs = append(v.strs, s)
		}
	case kindInt:
		var n int64
		var ok bool
		if n, ok, cause = toInt(tok, m.typ); ok && m.indexed {
			v := p.values(m.path)
			v.ints = append(v.ints, n)
		}
	case kindFloat:
		var f float64
		var ok bool
		if f, ok, cause = toFloat(tok, m.typ); ok && m.indexed {
			v := p.values(m.path)
			v.floats = append(v.floats, f)
		}
	case kindDate:
		var ms int64
		if ms, cause = toDate(tok, m.dates); cause == nil && m.indexed {
			v := p.values(m.path)
			v.ints = append(v.ints, ms)
		}
	case kindBool:
		var b, ok bool
		if b, ok, cause = toBool(tok); ok && m.indexed {
			v := p.values(m.path)
			v.ints = append(v.ints, boolInt(b))
		}
	case kindIP:
		var ip string
		if ip, cause = toIP(tok); cause == nil && m.indexed {
			v := p.values(m.path)
			v.strs = append(v.strs, ip)
		}
	}
	if cause != nil {
		if p.ignoresMalformed(m) {
			return nil
		}
		return p.fieldError(m, pos, scalarText(tok), cause)
	}
	if len(m.fields) == 1 { // the common case: message.keyword
		for _, sub := range m.fields {
			return p.leaf(sub, tok, pos)
		}
	}
	for _, name := range sortedKeys(m.fields) {
		if e := p.leaf(m.fields[name], tok, pos); e != nil {
			return e
		}
	}
	return nil
}

// ignoresMalformed reports whether a value that does not fit m is dropped
// rather than failing the document: the field's ignore_malformed, or the
// index setting for the types that support it.
func (p *docParser) ignoresMalformed(m *mapper) bool {
	if m.ignoreMalformed {
		return true
	}
	switch m.kind {
	case kindInt, kindFloat, kindDate, kindBool, kindIP:
		return p.rm.ignoreMalformed
	}
	return false
}

// flattened indexes a value inside a flattened field: every leaf is a
// keyword of the field itself and of its dotted key.
func (p *docParser) flattened(m *mapper, key string, tok any) *esError {
	switch d := tok.(type) {
	case nil:
		return nil
	case json.Delim:
		for p.dec.More() {
			sub := key
			if d == '{' {
				k, err := p.dec.Token()
				if err != nil {
					return p.syntax(err)
				}
				sub = key + "." + k.(string)
			}
			t, err := p.dec.Token()
			if err != nil {
				return p.syntax(err)
			}
			if e := p.flattened(m, sub, t); e != nil {
				return e
			}
		}
		if _, err := p.dec.Token(); err != nil {
			return p.syntax(err)
		}
		return nil
	default:
		s := scalarText(tok)
		v := p.values(m.path)
		v.strs = append(v.strs, s)
		if key != m.path {
			kv := p.values(key)
			kv.strs = append(kv.strs, s)
		}
		return nil
	}
}

// dynamic maps a field seen for the first time, as the dynamic setting of
// its object allows; dates is the format that detected a date. skip
// reports that the value is to be left unindexed.
func (p *docParser) dynamic(parent *mapper, name, detected string, dates *dateFormat, pos int) (m *mapper, skip bool, e *esError) {
	switch dynamicMode(parent) {
	case "strict":
		within := parent.path
		if within == "" {
			within = "_doc"
		}
		return nil, false, newError(400, "strict_dynamic_mapping_exception",
			"[1:%d] mapping set to strict, dynamic introduction of [%s] within [%s] is not allowed", pos+1, name, within)
	case "false":
		return nil, true, nil
	}
	path := joinPath(parent.path, name)
	if detected == "object" && strings.Count(path, ".")+1 > p.rm.depthLimit {
		msg := fmt.Sprintf("Limit of mapping depth [%d] has been exceeded due to object field [%s]", p.rm.depthLimit, path)
		return nil, false, p.failParse(pos, msg, illegalArgument("%s", msg))
	}
	m, e = p.rm.newDynamicMapper(name, path, detected, dates, parent)
	if e != nil {
		return nil, false, e
	}
	if n := countFields(m); p.rm.ignoreBeyondLimit && p.rm.fieldCount+p.newFields+n > p.rm.fieldLimit {
		return nil, true, nil // left in _source only, as Elasticsearch does with this setting
	}
	if p.overlay == nil {
		p.overlay = map[*mapper]map[string]*mapper{}
	}
	if p.overlay[parent] == nil {
		p.overlay[parent] = map[string]*mapper{}
	}
	p.overlay[parent][name] = m
	p.added = append(p.added, m)
	p.newFields += countFields(m)
	return m, false, nil
}

func dynamicMode(m *mapper) string {
	for ; m != nil; m = m.parent {
		switch m.dynamic {
		case "":
			continue
		case "runtime":
			return "true"
		default:
			return m.dynamic
		}
	}
	return "true"
}

// detect names the JSON type of a first value as dynamic templates do,
// and for a date the dynamic date format that recognised it.
func (p *docParser) detect(tok any) (string, *dateFormat) {
	switch v := tok.(type) {
	case string:
		numeric := isNumeric(v)
		if numeric && p.rm.numericDetection {
			if _, err := strconv.ParseInt(v, 10, 64); err == nil {
				return "long", nil
			}
			return "double", nil
		}
		if !numeric && p.rm.dateDetection { // pure numbers are never taken for dates
			for _, f := range p.rm.dynamicDates {
				if _, _, ok := f.parse(v, time.UTC); ok {
					return "date", f
				}
			}
		}
		return "string", nil
	case json.Number:
		if strings.ContainsAny(string(v), ".eE") {
			return "double", nil
		}
		return "long", nil
	case bool:
		return "boolean", nil
	default:
		return "object", nil
	}
}

func (p *docParser) child(parent *mapper, name string) *mapper {
	if m := parent.props[name]; m != nil {
		return m
	}
	return p.overlay[parent][name]
}

func (p *docParser) values(path string) *values {
	v := p.fields[path]
	if v == nil {
		v = &values{}
		p.fields[path] = v
	}
	return v
}

// skipValue reads and drops the next value.
func (p *docParser) skipValue() *esError {
	tok, err := p.dec.Token()
	if err != nil {
		return p.syntax(err)
	}
	if _, ok := tok.(json.Delim); ok {
		return p.skipRest()
	}
	return nil
}

// skipRest reads up to the end of the object or array just opened.
func (p *docParser) skipRest() *esError {
	for depth := 1; depth > 0; {
		tok, err := p.dec.Token()
		if err != nil {
			return p.syntax(err)
		}
		if d, ok := tok.(json.Delim); ok {
			if d == '{' || d == '[' {
				depth++
			} else {
				depth--
			}
		}
	}
	return nil
}

// captureRest skips the object opened at start and returns its JSON.
func (p *docParser) captureRest(start int) ([]byte, *esError) {
	if e := p.skipRest(); e != nil {
		return nil, e
	}
	return p.raw[start:int(p.dec.InputOffset())], nil
}

func (p *docParser) failAt(pos int, msg string) *esError {
	return newError(400, "document_parsing_exception", "[1:%d] %s", pos+1, msg)
}

func (p *docParser) failParse(pos int, msg string, cause *esError) *esError {
	e := newError(400, "document_parsing_exception", "[1:%d] failed to parse: %s", pos+1, msg)
	e.causedBy = cause
	return e
}

// maxTermBytes is the longest term Lucene indexes: a keyword value longer
// than this in UTF-8 fails its document, unless ignore_above skips it.
const maxTermBytes = 32766

// immenseTerm is the error for a keyword value over maxTermBytes, with its
// first 30 bytes as Java prints a byte array.
func immenseTerm(field, value string) *esError {
	prefix := make([]string, 30)
	for i := range prefix {
		prefix[i] = strconv.Itoa(int(int8(value[i])))
	}
	return illegalArgument("Document contains at least one immense term in field=\"%s\" (whose UTF8 encoding is longer than the max length %d), all of which were skipped. Please correct the analyzer to not produce such terms. The prefix of the first immense term is: '[%s]...'",
		field, maxTermBytes, strings.Join(prefix, ", "))
}

func (p *docParser) fieldError(m *mapper, pos int, preview string, cause *esError) *esError {
	e := newError(400, "document_parsing_exception",
		"[1:%d] failed to parse field [%s] of type [%s] in document with id '%s'. Preview of field's value: '%s'",
		pos+1, m.path, m.typ, p.id, preview)
	e.causedBy = cause
	return e
}

func (p *docParser) syntax(err error) *esError {
	pos := int(p.dec.InputOffset())
	msg := err.Error()
	var se *json.SyntaxError
	if errors.As(err, &se) {
		pos = int(se.Offset) - 1
		msg = strings.TrimPrefix(msg, "json: ")
	} else if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		pos, msg = len(p.raw), "Unexpected end-of-input"
	}
	return p.failParse(pos, msg, newError(400, "x_content_parse_exception", "[1:%d] %s", pos+1, msg))
}

// Conversions of JSON scalars to field values. A nil cause with ok false
// means the value counts as null (an empty string for numbers).

func toInt(tok any, typ string) (n int64, ok bool, cause *esError) {
	s, cause := numericText(tok)
	if cause != nil || s == "" {
		return 0, false, cause
	}
	r := integerRanges[typ]
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		if float64(i) < r.min || float64(i) > r.max {
			return 0, false, illegalArgument("Value [%s] is out of range for %s", s, r.article)
		}
		return i, true, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) || math.IsNaN(f) {
		return 0, false, illegalArgument("For input string: \"%s\"", s)
	}
	f = math.Trunc(f) // coerce, as Elasticsearch does by default
	if f < r.min || f >= r.max+1 {
		return 0, false, illegalArgument("Value [%s] is out of range for %s", s, r.article)
	}
	return int64(f), true, nil
}

func toFloat(tok any, typ string) (f float64, ok bool, cause *esError) {
	s, cause := numericText(tok)
	if cause != nil || s == "" {
		return 0, false, cause
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, false, illegalArgument("For input string: \"%s\"", s)
	}
	if typ == "float" || typ == "half_float" {
		f = float64(float32(f))
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false, illegalArgument("[%s] supports only finite values, but got [%s]", typ, s)
	}
	return f, true, nil
}

func numericText(tok any) (string, *esError) {
	switch v := tok.(type) {
	case json.Number:
		return string(v), nil
	case string:
		return strings.TrimSpace(v), nil
	case bool:
		return "", newError(400, "x_content_parse_exception", "Current token (VALUE_%s) not numeric, can not use numeric value accessors", strings.ToUpper(strconv.FormatBool(v)))
	}
	return "", illegalArgument("unexpected value")
}

func toDate(tok any, f *dateFormat) (int64, *esError) {
	var s string
	switch v := tok.(type) {
	case string:
		s = v
	case json.Number:
		s = string(v)
	default:
		s = scalarText(tok)
	}
	ms, ok := f.millis(s)
	if !ok {
		return 0, f.parseError("", s)
	}
	return ms, nil
}

func toBool(tok any) (b, ok bool, cause *esError) {
	switch v := tok.(type) {
	case bool:
		return v, true, nil
	case string:
		switch v {
		case "true":
			return true, true, nil
		case "false":
			return false, true, nil
		case "":
			return false, false, nil
		}
	}
	return false, false, illegalArgument("Failed to parse value [%s] as only [true] or [false] are allowed.", scalarText(tok))
}

func toIP(tok any) (string, *esError) {
	s, isString := tok.(string)
	if isString {
		if a, err := netip.ParseAddr(s); err == nil {
			return a.Unmap().String(), nil
		}
	}
	return "", illegalArgument("'%s' is not an IP string literal.", scalarText(tok))
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func scalarText(tok any) string {
	switch v := tok.(type) {
	case string:
		return v
	case json.Number:
		return string(v)
	case bool:
		return strconv.FormatBool(v)
	case nil:
		return "null"
	}
	return fmt.Sprint(tok)
}

// analyze splits text into lower-case tokens at every character that is not
// a letter, a digit or an underscore: a rough standard analyzer.
func analyze(s string) []string {
	tokens := strings.FieldsFunc(s, func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '_'
	})
	for i, t := range tokens {
		tokens[i] = strings.ToLower(t)
	}
	return tokens
}

// javaPreview renders a JSON object the way Elasticsearch previews an object
// value in errors (Java's Map.toString: {a=1, b={c=x}}).
func javaPreview(raw []byte) string {
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return string(raw)
	}
	var b strings.Builder
	var write func(v any)
	write = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			b.WriteByte('{')
			for i, k := range sortedKeys(x) {
				if i > 0 {
					b.WriteString(", ")
				}
				b.WriteString(k)
				b.WriteByte('=')
				write(x[k])
			}
			b.WriteByte('}')
		case []any:
			b.WriteByte('[')
			for i, e := range x {
				if i > 0 {
					b.WriteString(", ")
				}
				write(e)
			}
			b.WriteByte(']')
		default:
			b.WriteString(scalarText(v))
		}
	}
	write(v)
	return b.String()
}
