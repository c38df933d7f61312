package esfake

import (
	"encoding/json"
	"errors"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Limits Elasticsearch applies to every index unless its settings say
// otherwise.
const (
	maxTotalFields     = 1000 // index.mapping.total_fields.limit
	maxMappingDepth    = 20   // index.mapping.depth.limit
	dynamicIgnoreAbove = 256  // ignore_above of the keyword sub-field of dynamic strings
)

// valueKind groups field types by how their values are indexed and compared.
type valueKind int

const (
	kindObject    valueKind = iota // object and nested: holds properties
	kindText                       // analyzed into lower-case tokens
	kindKeyword                    // exact strings
	kindInt                        // long, integer, short, byte
	kindFloat                      // double, float, half_float, scaled_float
	kindDate                       // epoch milliseconds
	kindBool                       // 0 or 1
	kindIP                         // canonical address strings
	kindFlattened                  // an object indexed as keyword leaves
	kindStored                     // kept in _source only (binary)
)

var fieldKinds = map[string]valueKind{
	"object": kindObject, "nested": kindObject,
	"text": kindText, "match_only_text": kindText,
	"keyword": kindKeyword, "constant_keyword": kindKeyword, "wildcard": kindKeyword,
	"long": kindInt, "integer": kindInt, "short": kindInt, "byte": kindInt,
	"double": kindFloat, "float": kindFloat, "half_float": kindFloat, "scaled_float": kindFloat,
	"date": kindDate, "date_nanos": kindDate,
	"boolean":   kindBool,
	"ip":        kindIP,
	"flattened": kindFlattened,
	"binary":    kindStored,
}

// integerRanges are the bounds of the integer field types.
var integerRanges = map[string]struct {
	min, max float64
	article  string
}{
	"long":    {math.MinInt64, math.MaxInt64, "a long"},
	"integer": {math.MinInt32, math.MaxInt32, "an integer"},
	"short":   {math.MinInt16, math.MaxInt16, "a short"},
	"byte":    {math.MinInt8, math.MaxInt8, "a byte"},
}

// metadataFields may not appear at the top of a document.
var metadataFields = map[string]bool{
	"_id": true, "_index": true, "_source": true, "_routing": true, "_version": true,
	"_seq_no": true, "_primary_term": true, "_ignored": true, "_field_names": true,
	"_data_stream_timestamp": true, "_tier": true, "_doc_count": true, "_nested_path": true,
}

// mapper is one node of a mapping: an object holding properties, or a field.
type mapper struct {
	name   string // last element of the path
	path   string // dotted path from the root; "" for the root
	typ    string
	kind   valueKind
	parent *mapper

	// objects
	props   map[string]*mapper
	dynamic string // "true", "false", "strict" or "runtime"; "" inherits
	enabled bool

	// fields
	fields          map[string]*mapper // multi-fields, such as message.keyword
	ignoreAbove     int
	ignoreMalformed bool
	indexed         bool
	dates           *dateFormat
	formatSet       bool
	extra           map[string]any // accepted parameters without effect, shown by GET _mapping
}

// rootMapping is the whole mapping of one index.
type rootMapping struct {
	root             *mapper
	dynamicTemplates []*dynamicTemplate
	dateDetection    bool
	dynamicDates     []*dateFormat // dynamic_date_formats: what date detection tries, in order
	numericDetection bool
	dataStream       bool           // a data stream's backing index: @timestamp is required
	extra            map[string]any // _meta, _source and the like, shown by GET _mapping
	fieldCount       int
	mappingSettings
}

// mappingSettings are the index settings that change how documents are
// mapped.
type mappingSettings struct {
	fieldLimit        int  // index.mapping.total_fields.limit
	ignoreBeyondLimit bool // index.mapping.total_fields.ignore_dynamic_beyond_limit
	depthLimit        int  // index.mapping.depth.limit
	ignoreMalformed   bool // index.mapping.ignore_malformed
}

// mappingSettingsOf reads the mapping settings from index settings, given
// flat ("index.mapping.ignore_malformed") or nested.
func mappingSettingsOf(settings map[string]any) (mappingSettings, *esError) {
	ms := mappingSettings{fieldLimit: maxTotalFields, depthLimit: maxMappingDepth}
	flat := flattenSettings(settings)
	var e *esError
	for k, v := range flat {
		switch k {
		case "index.mapping.total_fields.limit":
			n, ok := asInt(v)
			if !ok || n < 0 {
				return ms, illegalArgument("Failed to parse value [%v] for setting [%s]", v, k)
			}
			ms.fieldLimit = int(n)
		case "index.mapping.depth.limit":
			n, ok := asInt(v)
			if !ok || n < 1 {
				return ms, illegalArgument("Failed to parse value [%v] for setting [%s]", v, k)
			}
			ms.depthLimit = int(n)
		case "index.mapping.total_fields.ignore_dynamic_beyond_limit":
			ms.ignoreBeyondLimit, e = asBool(v, k)
		case "index.mapping.ignore_malformed":
			ms.ignoreMalformed, e = asBool(v, k)
		default:
			if _, err := asBool(v, k); isBlockSetting(k) && err != nil {
				return ms, illegalArgument("Failed to parse value [%v] as only [true] or [false] are allowed.", v)
			}
		}
		if e != nil {
			return ms, e
		}
	}
	return ms, nil
}

// flattenSettings gives settings as dotted keys that start with "index.".
func flattenSettings(settings map[string]any) map[string]any {
	out := map[string]any{}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok {
				walk(prefix+k+".", sub)
				continue
			}
			key := prefix + k
			if !strings.HasPrefix(key, "index.") {
				key = "index." + key
			}
			out[key] = v
		}
	}
	walk("", settings)
	return out
}

// dynamicTemplate is one entry of "dynamic_templates".
type dynamicTemplate struct {
	name               string
	raw                map[string]any
	matchMappingType   []string
	unmatchMappingType []string
	match, unmatch     []string
	pathMatch          []string
	pathUnmatch        []string
	regex              bool
	mapping            map[string]any
}

// values are what a document holds for one field, ready to be compared.
type values struct {
	strs   []string  // text tokens, keywords, ips, flattened leaves
	ints   []int64   // integers, dates (epoch ms), booleans (0 or 1)
	floats []float64 // floating-point numbers
}

// newMapping builds an index mapping from its JSON definition (decoded with
// UseNumber). A data stream's mapping always has @timestamp as a date.
func newMapping(def map[string]any, dataStream bool, settings map[string]any) (*rootMapping, *esError) {
	ms, e := mappingSettingsOf(settings)
	if e != nil {
		return nil, e
	}
	rm := &rootMapping{
		root:            &mapper{typ: "object", kind: kindObject, enabled: true, indexed: true, props: map[string]*mapper{}},
		dateDetection:   true,
		dynamicDates:    defaultDynamicDates,
		dataStream:      dataStream,
		extra:           map[string]any{},
		mappingSettings: ms,
	}
	if inner, ok := def["_doc"].(map[string]any); ok && len(def) == 1 {
		def = inner // the type name older clients still send
	}
	for _, k := range sortedKeys(def) {
		v := def[k]
		var err *esError
		switch k {
		case "properties":
			err = parseProperties(rm.root, v)
		case "dynamic":
			rm.root.dynamic, err = parseDynamic(v)
		case "dynamic_templates":
			rm.dynamicTemplates, err = parseDynamicTemplates(v)
		case "date_detection":
			rm.dateDetection, err = asBool(v, k)
		case "numeric_detection":
			rm.numericDetection, err = asBool(v, k)
		case "dynamic_date_formats":
			if rm.dynamicDates, err = parseDynamicDateFormats(v); err == nil {
				rm.extra[k] = v
			}
		case "_meta", "_source", "_routing", "_data_stream_timestamp", "subobjects", "_field_names", "enabled":
			rm.extra[k] = v
		default:
			err = newError(400, "mapper_parsing_exception", "Root mapping definition has unsupported parameters:  [%s : %v]", k, v)
		}
		if err != nil {
			return nil, err
		}
	}
	delete(rm.extra, "_data_stream_timestamp")
	if dataStream {
		ts := rm.root.props["@timestamp"]
		switch {
		case ts == nil:
			rm.root.props["@timestamp"] = &mapper{name: "@timestamp", path: "@timestamp", typ: "date", kind: kindDate,
				parent: rm.root, enabled: true, indexed: true, dates: defaultDates}
		case ts.kind != kindDate:
			return nil, illegalArgument("data stream timestamp field [@timestamp] is of type [%s], but [date,date_nanos] is expected", ts.typ)
		}
	}
	rm.fieldCount = countFields(rm.root) - 1
	if rm.fieldCount > rm.fieldLimit {
		return nil, illegalArgument("Limit of total fields [%d] has been exceeded", rm.fieldLimit)
	}
	return rm, nil
}

func parseProperties(parent *mapper, v any) *esError {
	props, ok := v.(map[string]any)
	if !ok {
		return newError(400, "mapper_parsing_exception", "Expected map for property [properties] on field [%s] but got a %T", parent.name, v)
	}
	if parent.props == nil {
		parent.props = map[string]*mapper{}
	}
	for _, name := range sortedKeys(props) {
		def, ok := props[name].(map[string]any)
		if !ok {
			return newError(400, "mapper_parsing_exception", "Expected map for property [%s] on field [%s] but got a %T", name, parent.name, props[name])
		}
		target := parent
		parts := strings.Split(name, ".")
		for _, part := range parts[:len(parts)-1] { // "a.b": {...} means a: {properties: {b: {...}}}
			child := target.props[part]
			if child == nil {
				child = &mapper{name: part, path: joinPath(target.path, part), typ: "object", kind: kindObject,
					parent: target, enabled: true, indexed: true, props: map[string]*mapper{}}
				target.props[part] = child
			}
			if child.kind != kindObject {
				return newError(400, "mapper_parsing_exception", "field [%s] is of type [%s] and cannot hold [%s]", child.path, child.typ, name)
			}
			target = child
		}
		last := parts[len(parts)-1]
		m, err := parseField(last, joinPath(target.path, last), def, target)
		if err != nil {
			return err
		}
		if old := target.props[last]; old != nil && old.kind == kindObject && m.kind == kindObject {
			for k, c := range m.props {
				c.parent = old
				old.props[k] = c
			}
			continue
		}
		target.props[last] = m
	}
	return nil
}

// parseField builds the mapper of one field from its definition.
func parseField(name, path string, def map[string]any, parent *mapper) (*mapper, *esError) {
	typ := "object"
	if t, ok := def["type"]; ok {
		s, isString := t.(string)
		if !isString {
			return nil, newError(400, "mapper_parsing_exception", "type must be a string on field [%s]", name)
		}
		typ = s
	}
	kind, known := fieldKinds[typ]
	if !known {
		return nil, newError(400, "mapper_parsing_exception", "No handler for type [%s] declared on field [%s]", typ, name)
	}
	m := &mapper{name: name, path: path, typ: typ, kind: kind, parent: parent, enabled: true, indexed: true}
	if kind == kindObject {
		m.props = map[string]*mapper{}
	}
	for _, k := range sortedKeys(def) {
		v := def[k]
		var err *esError
		switch {
		case k == "type":
		case k == "properties" && kind == kindObject:
			err = parseProperties(m, v)
		case k == "dynamic" && kind == kindObject:
			m.dynamic, err = parseDynamic(v)
		case k == "enabled" && kind == kindObject:
			m.enabled, err = asBool(v, k)
		case k == "fields" && kind != kindObject:
			err = parseMultiFields(m, v)
		case k == "ignore_above" && kind != kindObject:
			n, ok := asInt(v)
			if !ok || n < 0 {
				err = newError(400, "mapper_parsing_exception", "[ignore_above] must be a non-negative number on field [%s]", name)
			}
			m.ignoreAbove = int(n)
		case k == "ignore_malformed" && kind != kindObject:
			m.ignoreMalformed, err = asBool(v, k)
		case k == "index" && kind != kindObject:
			m.indexed, err = asBool(v, k)
		case k == "format" && kind == kindDate:
			spec, _ := v.(string)
			f, ferr := newDateFormat(spec)
			if ferr != nil {
				err = newError(400, "mapper_parsing_exception", "Error parsing [format] on field [%s]: %v", name, ferr)
			}
			m.dates, m.formatSet = f, true
		case k == "properties" || k == "fields" || k == "dynamic" || k == "enabled":
			err = newError(400, "mapper_parsing_exception", "unknown parameter [%s] on mapper [%s] of type [%s]", k, name, typ)
		default:
			if m.extra == nil {
				m.extra = map[string]any{}
			}
			m.extra[k] = v
		}
		if err != nil {
			return nil, err
		}
	}
	if kind == kindDate && m.dates == nil {
		m.dates = defaultDates
	}
	return m, nil
}

func parseMultiFields(m *mapper, v any) *esError {
	defs, ok := v.(map[string]any)
	if !ok {
		return newError(400, "mapper_parsing_exception", "Expected map for property [fields] on field [%s]", m.name)
	}
	m.fields = map[string]*mapper{}
	for _, name := range sortedKeys(defs) {
		def, ok := defs[name].(map[string]any)
		if !ok {
			return newError(400, "mapper_parsing_exception", "Expected map for property [fields] on field [%s]", m.name)
		}
		sub, err := parseField(name, m.path+"."+name, def, m)
		if err != nil {
			return err
		}
		if sub.kind == kindObject {
			return newError(400, "mapper_parsing_exception", "Type [%s] cannot be used in multi field", sub.typ)
		}
		m.fields[name] = sub
	}
	return nil
}

func parseDynamic(v any) (string, *esError) {
	switch d := v.(type) {
	case bool:
		return strconv.FormatBool(d), nil
	case string:
		switch d {
		case "true", "false", "strict", "runtime":
			return d, nil
		}
	}
	return "", newError(400, "mapper_parsing_exception", "Could not convert [dynamic] to boolean: [%v]", v)
}

func parseDynamicTemplates(v any) ([]*dynamicTemplate, *esError) {
	list, ok := v.([]any)
	if !ok {
		return nil, newError(400, "mapper_parsing_exception", "Dynamic template syntax error. An array of named objects is expected.")
	}
	var out []*dynamicTemplate
	for _, item := range list {
		named, ok := item.(map[string]any)
		if !ok || len(named) != 1 {
			return nil, newError(400, "mapper_parsing_exception", "Dynamic template syntax error. An array of named objects is expected.")
		}
		for name, body := range named {
			def, ok := body.(map[string]any)
			if !ok {
				return nil, newError(400, "mapper_parsing_exception", "Dynamic template syntax error. An array of named objects is expected.")
			}
			t := &dynamicTemplate{name: name, raw: named}
			for k, v := range def {
				switch k {
				case "match_mapping_type":
					t.matchMappingType = stringList(v)
				case "unmatch_mapping_type":
					t.unmatchMappingType = stringList(v)
				case "match":
					t.match = stringList(v)
				case "unmatch":
					t.unmatch = stringList(v)
				case "path_match":
					t.pathMatch = stringList(v)
				case "path_unmatch":
					t.pathUnmatch = stringList(v)
				case "match_pattern":
					t.regex = v == "regex"
				case "mapping":
					t.mapping, _ = v.(map[string]any)
				case "runtime":
					return nil, unsupported("runtime fields (dynamic template [%s])", name)
				}
			}
			if t.mapping == nil {
				return nil, newError(400, "mapper_parsing_exception", "template [%s] must have either mapping or runtime set", name)
			}
			if t.regex {
				for _, p := range append(append(append(append([]string{}, t.match...), t.unmatch...), t.pathMatch...), t.pathUnmatch...) {
					if _, err := regexp.Compile(p); err != nil {
						return nil, newError(400, "mapper_parsing_exception", "invalid regex [%s] in dynamic template [%s]", p, name)
					}
				}
			}
			out = append(out, t)
		}
	}
	return out, nil
}

func (t *dynamicTemplate) matches(name, path, detected string) bool {
	if len(t.matchMappingType) > 0 && !contains(t.matchMappingType, "*") && !contains(t.matchMappingType, detected) {
		return false
	}
	if contains(t.unmatchMappingType, detected) {
		return false
	}
	match := func(patterns []string, s string) bool {
		for _, p := range patterns {
			if t.regex {
				if ok, _ := regexp.MatchString(p, s); ok {
					return true
				}
			} else if globMatch(p, s) {
				return true
			}
		}
		return false
	}
	if len(t.match) > 0 && !match(t.match, name) {
		return false
	}
	if len(t.pathMatch) > 0 && !match(t.pathMatch, path) {
		return false
	}
	return !match(t.unmatch, name) && !match(t.pathUnmatch, path)
}

// defaultDynamicType is what {dynamic_type} stands for in a dynamic template.
var defaultDynamicType = map[string]string{
	"string": "text", "long": "long", "double": "float", "boolean": "boolean", "date": "date", "object": "object",
}

// newDynamicMapper maps a field seen for the first time, through the first
// matching dynamic template or Elasticsearch's defaults. A detected date
// gets the format that recognised it (dates) unless its template names one.
func (rm *rootMapping) newDynamicMapper(name, path, detected string, dates *dateFormat, parent *mapper) (*mapper, *esError) {
	for _, t := range rm.dynamicTemplates {
		if !t.matches(name, path, detected) {
			continue
		}
		def := substitute(t.mapping, name, defaultDynamicType[detected]).(map[string]any)
		if _, ok := def["type"]; !ok {
			def["type"] = defaultDynamicType[detected]
		}
		m, e := parseField(name, path, def, parent)
		if e == nil && m.kind == kindDate && !m.formatSet && dates != nil {
			m.dates, m.formatSet = dates, dates.spec != defaultDateFormat
		}
		return m, e
	}
	m := &mapper{name: name, path: path, typ: defaultDynamicType[detected], parent: parent, enabled: true, indexed: true}
	m.kind = fieldKinds[m.typ]
	switch detected {
	case "object":
		m.props = map[string]*mapper{}
	case "string":
		m.fields = map[string]*mapper{"keyword": {name: "keyword", path: path + ".keyword", typ: "keyword",
			kind: kindKeyword, parent: m, enabled: true, indexed: true, ignoreAbove: dynamicIgnoreAbove}}
	case "date":
		m.dates = defaultDates
		if dates != nil {
			m.dates, m.formatSet = dates, dates.spec != defaultDateFormat
		}
	}
	return m, nil
}

// substitute copies a dynamic template's mapping, replacing {name} and
// {dynamic_type}.
func substitute(v any, name, dynType string) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = substitute(e, name, dynType)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = substitute(e, name, dynType)
		}
		return out
	case string:
		return strings.ReplaceAll(strings.ReplaceAll(x, "{name}", name), "{dynamic_type}", dynType)
	default:
		return v
	}
}

// lookup finds the mapper that indexes a dotted path: a field, a
// multi-field (message.keyword) or a key inside a flattened field.
func (rm *rootMapping) lookup(path string) *mapper {
	cur := rm.root
	parts := strings.Split(path, ".")
	for i, part := range parts {
		var next *mapper
		if cur.kind == kindObject {
			next = cur.props[part]
		} else {
			next = cur.fields[part]
		}
		if next == nil {
			return nil
		}
		if next.kind == kindFlattened && i < len(parts)-1 {
			return &mapper{name: path, path: path, typ: "keyword", kind: kindKeyword, indexed: true}
		}
		cur = next
	}
	return cur
}

func countFields(m *mapper) int {
	n := 1
	for _, c := range m.props {
		n += countFields(c)
	}
	for _, c := range m.fields {
		n += countFields(c)
	}
	return n
}

// render gives the mapping as GET _mapping shows it.
func (rm *rootMapping) render() map[string]any {
	out := rm.root.render()
	for k, v := range rm.extra {
		out[k] = v
	}
	if len(rm.dynamicTemplates) > 0 {
		var list []any
		for _, t := range rm.dynamicTemplates {
			list = append(list, t.raw)
		}
		out["dynamic_templates"] = list
	}
	if !rm.dateDetection {
		out["date_detection"] = false
	}
	if rm.numericDetection {
		out["numeric_detection"] = true
	}
	if rm.dataStream {
		out["_data_stream_timestamp"] = map[string]any{"enabled": true}
	}
	return out
}

func (m *mapper) render() map[string]any {
	out := map[string]any{}
	for k, v := range m.extra {
		out[k] = v
	}
	if m.kind == kindObject {
		if m.typ != "object" {
			out["type"] = m.typ
		}
		if m.dynamic != "" {
			out["dynamic"] = m.dynamic
		}
		if !m.enabled {
			out["enabled"] = false
		}
		if len(m.props) > 0 {
			props := map[string]any{}
			for name, c := range m.props {
				props[name] = c.render()
			}
			out["properties"] = props
		}
		return out
	}
	out["type"] = m.typ
	if m.ignoreAbove > 0 {
		out["ignore_above"] = m.ignoreAbove
	}
	if m.ignoreMalformed {
		out["ignore_malformed"] = true
	}
	if !m.indexed {
		out["index"] = false
	}
	if m.formatSet {
		out["format"] = m.dates.spec
	}
	if len(m.fields) > 0 {
		fields := map[string]any{}
		for name, c := range m.fields {
			fields[name] = c.render()
		}
		out["fields"] = fields
	}
	return out
}

// Small helpers for decoded JSON.

func asBool(v any, name string) (bool, *esError) {
	switch b := v.(type) {
	case bool:
		return b, nil
	case string:
		if b == "true" || b == "false" {
			return b == "true", nil
		}
	}
	return false, newError(400, "mapper_parsing_exception", "Failed to parse value [%v] as only [true] or [false] are allowed (parameter [%s])", v, name)
}

func asInt(v any) (int64, bool) {
	switch n := v.(type) {
	case json.Number:
		i, err := n.Int64()
		return i, err == nil
	case int:
		return int64(n), true
	case int64:
		return n, true
	case float64:
		return int64(n), n == math.Trunc(n)
	case string:
		i, err := strconv.ParseInt(n, 10, 64)
		return i, err == nil
	}
	return 0, false
}

func stringList(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		var out []string
		for _, e := range x {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

func isNumeric(s string) bool {
	_, err := strconv.ParseFloat(s, 64)
	return err == nil || errors.Is(err, strconv.ErrRange)
}

func joinPath(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// globMatch matches s against a pattern in which * stands for any run of
// characters, the only wildcard Elasticsearch's simple patterns have.
func globMatch(pattern, s string) bool {
	star := strings.IndexByte(pattern, '*')
	if star < 0 {
		return pattern == s
	}
	if !strings.HasPrefix(s, pattern[:star]) {
		return false
	}
	s, pattern = s[star:], pattern[star+1:]
	if pattern == "" {
		return true
	}
	for i := 0; i <= len(s); i++ {
		if globMatch(pattern, s[i:]) {
			return true
		}
	}
	return false
}
