package esfake

import (
	"net/http"
	"strconv"
	"strings"
)

// indexTemplate is a composable index template (PUT /_index_template/<name>).
type indexTemplate struct {
	name        string
	patterns    []string
	priority    int64
	prioritySet bool
	composedOf  []string
	template    map[string]any // settings, mappings, aliases, as given
	dataStream  map[string]any // nil unless the template makes data streams
	version     any
	meta        any
	other       obj // further accepted keys, echoed back
}

// componentTemplate is a building block of index templates
// (PUT /_component_template/<name>).
type componentTemplate struct {
	name     string
	template map[string]any
	version  any
	meta     any
}

func (t *indexTemplate) matches(name string) bool {
	for _, p := range t.patterns {
		if globMatch(p, name) {
			return true
		}
	}
	return false
}

func (t *indexTemplate) render() obj {
	o := obj{{"index_patterns", t.patterns}}
	if t.template != nil {
		o = append(o, kv{"template", t.template})
	}
	o = append(o, kv{"composed_of", t.composedOf})
	if t.prioritySet {
		o = append(o, kv{"priority", t.priority})
	}
	if t.version != nil {
		o = append(o, kv{"version", t.version})
	}
	if t.meta != nil {
		o = append(o, kv{"_meta", t.meta})
	}
	if t.dataStream != nil {
		ds := map[string]any{"hidden": false, "allow_custom_routing": false}
		mergeInto(ds, t.dataStream)
		o = append(o, kv{"data_stream", ds})
	}
	return append(o, t.other...)
}

// installBuiltins adds the "logs" template a default Elasticsearch 8
// has, so that names like logs-app-default become data streams even
// without a user template, and a user template for such names needs a
// priority above 100 to win. Its mappings and settings approximate
// Elasticsearch's logs@mappings, logs@settings and ecs@mappings: strings
// become keywords, message is match_only_text, and malformed values and
// fields beyond the limit are ignored instead of failing the document.
// A component template named logs@custom is applied when it exists.
func (s *Server) installBuiltins() {
	s.templates["logs"] = &indexTemplate{
		name:        "logs",
		patterns:    []string{"logs-*-*"},
		priority:    100,
		prioritySet: true,
		composedOf:  []string{"logs@custom"},
		dataStream:  map[string]any{},
		version:     1,
		meta: map[string]any{
			"description": "default logs template installed by x-pack (approximated by esfake)",
			"managed":     true,
		},
		template: map[string]any{
			"settings": map[string]any{"index": map[string]any{"mapping": map[string]any{
				"ignore_malformed": true,
				"total_fields":     map[string]any{"ignore_dynamic_beyond_limit": true},
			}}},
			"mappings": map[string]any{
				"date_detection": false,
				"dynamic_templates": []any{
					map[string]any{"ecs_message_match_only_text": map[string]any{
						"path_match": []any{"message", "*.message"}, "unmatch_mapping_type": "object",
						"mapping": map[string]any{"type": "match_only_text"}}},
					map[string]any{"all_strings_to_keywords": map[string]any{
						"match_mapping_type": "string",
						"mapping":            map[string]any{"type": "keyword", "ignore_above": 1024}}},
				},
				"properties": map[string]any{
					"@timestamp": map[string]any{"type": "date"},
					"data_stream": map[string]any{"properties": map[string]any{
						"type":      map[string]any{"type": "constant_keyword"},
						"dataset":   map[string]any{"type": "constant_keyword"},
						"namespace": map[string]any{"type": "constant_keyword"},
					}},
				},
			},
		},
		other: obj{
			{"allow_auto_create", true},
			{"ignore_missing_component_templates", []string{"logs@custom"}},
		},
	}
}

// findTemplate picks the template for a new index or data stream: the one
// with the highest priority among those whose patterns match.
func (s *Server) findTemplate(name string) *indexTemplate {
	var best *indexTemplate
	for _, tn := range sortedKeys(s.templates) {
		t := s.templates[tn]
		if t.matches(name) && (best == nil || t.priority > best.priority) {
			best = t
		}
	}
	return best
}

// streamsOnlyMatchedBy lists the data streams that no template but the
// named ones matches: Elasticsearch 8 refuses to remove templates that
// data streams depend on alone. Call with s.mu held.
func (s *Server) streamsOnlyMatchedBy(names []string) []string {
	var out []string
	for _, dn := range sortedKeys(s.streams) {
		matched, other := false, false
		for tn, t := range s.templates {
			if t.matches(dn) {
				if contains(names, tn) {
					matched = true
				} else {
					other = true
				}
			}
		}
		if matched && !other {
			out = append(out, dn)
		}
	}
	return out
}

// unreferencedStreams lists the data streams whose names no template with
// a data stream section would now be chosen for. Call with s.mu held.
func (s *Server) unreferencedStreams() []string {
	var out []string
	for _, dn := range sortedKeys(s.streams) {
		if t := s.findTemplate(dn); t == nil || t.dataStream == nil {
			out = append(out, dn)
		}
	}
	return out
}

// templatePart merges one part ("mappings" or "settings") of a template's
// component templates, in order, and then of the template itself.
func (s *Server) templatePart(t *indexTemplate, part string) map[string]any {
	out := map[string]any{}
	for _, cn := range t.composedOf {
		if c := s.components[cn]; c != nil {
			if m, ok := c.template[part].(map[string]any); ok {
				mergeInto(out, m)
			}
		}
	}
	if m, ok := t.template[part].(map[string]any); ok {
		mergeInto(out, m)
	}
	return out
}

func (s *Server) handleIndexTemplate(w http.ResponseWriter, r *request) {
	switch r.Method {
	case http.MethodPut, http.MethodPost:
		s.putIndexTemplate(w, r)
	case http.MethodDelete:
		s.mu.Lock()
		defer s.mu.Unlock()
		names, _ := matchNames(r.name, sortedKeys(s.templates))
		if len(names) == 0 {
			if r.name == "*" || r.name == "_all" {
				s.reply(w, r, http.StatusOK, obj{{"acknowledged", true}})
				return
			}
			s.fail(w, r, newError(http.StatusNotFound, "index_template_missing_exception", "index_template [%s] missing", r.name))
			return
		}
		if inUse := s.streamsOnlyMatchedBy(names); len(inUse) > 0 {
			s.fail(w, r, illegalArgument("unable to remove composable templates %s as they are in use by a data streams %s", javaList(names), javaList(inUse)))
			return
		}
		for _, n := range names {
			delete(s.templates, n)
		}
		s.reply(w, r, http.StatusOK, obj{{"acknowledged", true}})
	default:
		s.mu.RLock()
		defer s.mu.RUnlock()
		names, ok := matchNames(r.name, sortedKeys(s.templates))
		if !ok {
			s.fail(w, r, resourceNotFound("index template matching [%s] not found", r.name))
			return
		}
		list := []obj{}
		for _, n := range names {
			list = append(list, obj{{"name", n}, {"index_template", s.templates[n].render()}})
		}
		s.reply(w, r, http.StatusOK, obj{{"index_templates", list}})
	}
}

// matchNames selects names by a comma list of names and * patterns. ok is
// false when a name without wildcard is missing.
func matchNames(expr string, names []string) (out []string, ok bool) {
	if expr == "" || expr == "*" || expr == "_all" {
		return names, true
	}
	seen := map[string]bool{}
	for _, part := range strings.Split(expr, ",") {
		found := false
		for _, n := range names {
			if globMatch(part, n) {
				found = true
				if !seen[n] {
					seen[n] = true
					out = append(out, n)
				}
			}
		}
		if !found && !strings.Contains(part, "*") {
			return nil, false
		}
	}
	return out, true
}

func (s *Server) putIndexTemplate(w http.ResponseWriter, r *request) {
	body, e := decodeBody(r.body)
	if e != nil {
		s.fail(w, r, e)
		return
	}
	t := &indexTemplate{name: r.name, composedOf: []string{}}
	for _, k := range sortedKeys(body) {
		v := body[k]
		switch k {
		case "index_patterns":
			t.patterns = stringList(v)
		case "template":
			m, ok := v.(map[string]any)
			if !ok {
				s.fail(w, r, newError(400, "x_content_parse_exception", "[index_template] failed to parse field [template]"))
				return
			}
			for tk, tv := range m {
				switch tk {
				case "settings", "mappings", "lifecycle", "data_stream_options":
				case "aliases":
					if am, _ := tv.(map[string]any); len(am) > 0 {
						s.fail(w, r, unsupported("aliases (index template [%s])", r.name))
						return
					}
				default:
					s.fail(w, r, newError(400, "x_content_parse_exception", "[template] unknown field [%s]", tk))
					return
				}
			}
			t.template = m
		case "composed_of":
			t.composedOf = stringList(v)
		case "priority":
			n, ok := asInt(v)
			if !ok || n < 0 {
				s.fail(w, r, validationFailed("index template priority must be >= 0"))
				return
			}
			t.priority, t.prioritySet = n, true
		case "version":
			t.version = v
		case "_meta":
			t.meta = v
		case "data_stream":
			m, ok := v.(map[string]any)
			if !ok {
				s.fail(w, r, newError(400, "x_content_parse_exception", "[index_template] failed to parse field [data_stream]"))
				return
			}
			t.dataStream = m
		case "allow_auto_create", "ignore_missing_component_templates", "deprecated":
			t.other = append(t.other, kv{k, v})
		default:
			s.fail(w, r, newError(400, "x_content_parse_exception", "[1:2] [index_template] unknown field [%s]", k))
			return
		}
	}
	if len(t.patterns) == 0 {
		s.fail(w, r, illegalArgument("Required [index_patterns]"))
		return
	}
	var ignoreMissing []string
	for _, o := range t.other {
		if o.k == "ignore_missing_component_templates" {
			ignoreMissing = stringList(o.v)
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if _, exists := s.templates[t.name]; exists && r.flag("create") {
		s.fail(w, r, illegalArgument("index template [%s] already exists", t.name))
		return
	}
	var missing []string
	for _, cn := range t.composedOf {
		if s.components[cn] == nil && !contains(ignoreMissing, cn) {
			missing = append(missing, cn)
		}
	}
	if len(missing) > 0 {
		s.fail(w, r, newError(400, "invalid_index_template_exception",
			"index_template [%s] invalid, cause [index template [%s] specifies component templates %s that do not exist]",
			t.name, t.name, javaList(missing)))
		return
	}
	for _, on := range sortedKeys(s.templates) {
		o := s.templates[on]
		if on == t.name || o.priority != t.priority {
			continue
		}
		for _, p := range t.patterns {
			for _, op := range o.patterns {
				if globsOverlap(p, op) {
					s.fail(w, r, illegalArgument("index template [%s] has index patterns %s matching patterns from existing templates [%s] with patterns (%s => %s) that have the same priority [%d], multiple index templates may not match during index creation, please use a different priority",
						t.name, javaList(t.patterns), on, on, javaList(o.patterns), t.priority))
					return
				}
			}
		}
	}
	if _, e := newMapping(s.templatePart(t, "mappings"), t.dataStream != nil, flattenSettings(s.templatePart(t, "settings"))); e != nil {
		if e.typ == "mapper_parsing_exception" {
			e = mapperParsing(e)
		}
		s.fail(w, r, e)
		return
	}
	// A template may not leave existing data streams without a data
	// stream template, as when it outranks theirs without "data_stream".
	before := s.unreferencedStreams()
	old := s.templates[t.name]
	s.templates[t.name] = t
	if after := s.unreferencedStreams(); len(after) > len(before) {
		if old != nil {
			s.templates[t.name] = old
		} else {
			delete(s.templates, t.name)
		}
		var newly []string
		for _, dn := range after {
			if !contains(before, dn) {
				newly = append(newly, dn)
			}
		}
		priority, noDataStream := "null", ""
		if t.prioritySet {
			priority = strconv.FormatInt(t.priority, 10)
		}
		if t.dataStream == nil {
			noDataStream = "and no data stream configuration "
		}
		s.fail(w, r, illegalArgument("composable template [%s] with index patterns %s, priority [%s] %swould cause data streams %s to no longer match a data stream template",
			t.name, javaList(t.patterns), priority, noDataStream, javaList(newly)))
		return
	}
	s.reply(w, r, http.StatusOK, obj{{"acknowledged", true}})
}

func (s *Server) handleComponentTemplate(w http.ResponseWriter, r *request) {
	switch r.Method {
	case http.MethodPut, http.MethodPost:
		body, e := decodeBody(r.body)
		if e != nil {
			s.fail(w, r, e)
			return
		}
		c := &componentTemplate{name: r.name}
		for _, k := range sortedKeys(body) {
			switch k {
			case "template":
				c.template, _ = body[k].(map[string]any)
			case "version":
				c.version = body[k]
			case "_meta":
				c.meta = body[k]
			case "deprecated":
			default:
				s.fail(w, r, newError(400, "x_content_parse_exception", "[1:2] [component_template] unknown field [%s]", k))
				return
			}
		}
		if c.template == nil {
			s.fail(w, r, newError(400, "x_content_parse_exception", "[1:2] Required [template]"))
			return
		}
		mappings, _ := c.template["mappings"].(map[string]any)
		settings, _ := c.template["settings"].(map[string]any)
		if _, e := newMapping(mappings, false, flattenSettings(settings)); e != nil {
			if e.typ == "mapper_parsing_exception" {
				e = mapperParsing(e)
			}
			s.fail(w, r, e)
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, exists := s.components[c.name]; exists && r.flag("create") {
			s.fail(w, r, illegalArgument("component template [%s] already exists", c.name))
			return
		}
		s.components[c.name] = c
		s.reply(w, r, http.StatusOK, obj{{"acknowledged", true}})
	case http.MethodDelete:
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.components[r.name] == nil {
			s.fail(w, r, resourceNotFound("component_template matching [%s] not found", r.name))
			return
		}
		for _, tn := range sortedKeys(s.templates) {
			if contains(s.templates[tn].composedOf, r.name) && !(tn == "logs" && r.name == "logs@custom") {
				s.fail(w, r, illegalArgument("component templates [%s] cannot be removed as they are still in use by index templates [%s]", r.name, tn))
				return
			}
		}
		delete(s.components, r.name)
		s.reply(w, r, http.StatusOK, obj{{"acknowledged", true}})
	default:
		s.mu.RLock()
		defer s.mu.RUnlock()
		names, ok := matchNames(r.name, sortedKeys(s.components))
		if !ok {
			s.fail(w, r, resourceNotFound("component template matching [%s] not found", r.name))
			return
		}
		list := []obj{}
		for _, n := range names {
			c := s.components[n]
			ct := obj{{"template", c.template}}
			if c.version != nil {
				ct = append(ct, kv{"version", c.version})
			}
			if c.meta != nil {
				ct = append(ct, kv{"_meta", c.meta})
			}
			list = append(list, obj{{"name", n}, {"component_template", ct}})
		}
		s.reply(w, r, http.StatusOK, obj{{"component_templates", list}})
	}
}

// javaList renders names as Java prints a list: [a, b].
func javaList(items []string) string { return "[" + strings.Join(items, ", ") + "]" }

// globsOverlap reports whether some name matches both * patterns.
func globsOverlap(a, b string) bool {
	memo := map[[2]int]bool{}
	var f func(i, j int) bool
	f = func(i, j int) bool {
		key := [2]int{i, j}
		if v, ok := memo[key]; ok {
			return v
		}
		var res bool
		switch {
		case i == len(a) && j == len(b):
			res = true
		case i < len(a) && a[i] == '*':
			res = f(i+1, j) || (j < len(b) && f(i, j+1))
		case j < len(b) && b[j] == '*':
			res = f(i, j+1) || (i < len(a) && f(i+1, j))
		case i < len(a) && j < len(b):
			res = a[i] == b[j] && f(i+1, j+1)
		}
		memo[key] = res
		return res
	}
	return f(0, 0)
}
