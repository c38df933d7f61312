package esfake

import (
	"net/http"
	"slices"
	"strings"
)

// indexTemplate is a composable index template (PUT /_index_template/<name>).
type indexTemplate struct {
	name       string
	def        map[string]any // the body as given
	patterns   []string
	priority   int64
	composedOf []string
	dataStream bool
}

func (t *indexTemplate) matches(name string) bool {
	return slices.ContainsFunc(t.patterns, func(p string) bool { return globMatch(p, name) })
}

// builtinLogsTemplate is the "logs" template a default Elasticsearch 8
// has, so that names like logs-app-default become data streams even
// without a user template, and a user template for such names needs a
// priority above 100 to win. Its mappings are a small part of
// Elasticsearch's logs@mappings.
func builtinLogsTemplate() *indexTemplate {
	def := map[string]any{
		"index_patterns": []string{"logs-*-*"}, "priority": 100, "composed_of": []string{"logs@custom"},
		"ignore_missing_component_templates": []string{"logs@custom"}, "data_stream": map[string]any{}, "allow_auto_create": true,
		"_meta": map[string]any{"description": "default logs template installed by x-pack (approximated by esfake)", "managed": true},
		"template": map[string]any{"mappings": map[string]any{"properties": map[string]any{
			"@timestamp": map[string]any{"type": "date"}, "message": map[string]any{"type": "match_only_text"}}}},
	}
	return &indexTemplate{name: "logs", def: def, patterns: []string{"logs-*-*"}, priority: 100, composedOf: []string{"logs@custom"}, dataStream: true}
}

// findTemplate picks the template for a new index or data stream: the one
// with the highest priority among those whose patterns match.
func (s *Server) findTemplate(name string) *indexTemplate {
	var best *indexTemplate
	for _, tn := range sortedKeys(s.templates) {
		if t := s.templates[tn]; t.matches(name) && (best == nil || t.priority > best.priority) {
			best = t
		}
	}
	return best
}

// templatePart merges one part ("mappings" or "settings") of a template's
// component templates, in order, and then of the template itself.
func (s *Server) templatePart(t *indexTemplate, part string) map[string]any {
	out := map[string]any{}
	for _, cn := range append(slices.Clone(t.composedOf), "") {
		def := t.def
		if cn != "" {
			if s.components[cn] == nil {
				continue
			}
			def = s.components[cn]
		}
		tmpl, _ := def["template"].(map[string]any)
		if m, ok := tmpl[part].(map[string]any); ok {
			mergeInto(out, m)
		}
	}
	return out
}

// matchNames selects names by a comma list of names and * patterns. ok is
// false when a name without wildcard is missing.
func matchNames(expr string, names []string) (out []string, ok bool) {
	if expr == "" || expr == "_all" {
		expr = "*"
	}
	for _, part := range strings.Split(expr, ",") {
		found := false
		for _, n := range names {
			if globMatch(part, n) && !slices.Contains(out, n) {
				found = true
				out = append(out, n)
			}
		}
		if !found && !strings.Contains(part, "*") {
			return nil, false
		}
	}
	return out, true
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
			s.fail(w, r, newError(http.StatusNotFound, "index_template_missing_exception", "index_template [%s] missing", r.name))
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
			def := map[string]any{"composed_of": []string{}}
			mergeInto(def, s.templates[n].def)
			if ds, ok := def["data_stream"].(map[string]any); ok {
				def["data_stream"] = map[string]any{"hidden": false, "allow_custom_routing": false}
				mergeInto(def["data_stream"].(map[string]any), ds)
			}
			list = append(list, obj{{"name", n}, {"index_template", def}})
		}
		s.reply(w, r, http.StatusOK, obj{{"index_templates", list}})
	}
}

func (s *Server) putIndexTemplate(w http.ResponseWriter, r *request) {
	body, e := decodeBody(r.body)
	if e != nil {
		s.fail(w, r, e)
		return
	}
	t := &indexTemplate{name: r.name, def: body, patterns: stringList(body["index_patterns"]), composedOf: stringList(body["composed_of"])}
	for k, v := range body {
		switch k {
		case "priority":
			n, ok := asInt(v)
			if !ok || n < 0 {
				s.fail(w, r, validationFailed("index template priority must be >= 0"))
				return
			}
			t.priority = n
		case "data_stream":
			_, t.dataStream = v.(map[string]any)
		case "index_patterns", "composed_of", "template", "version", "_meta", "allow_auto_create", "ignore_missing_component_templates":
		default:
			s.fail(w, r, newError(http.StatusBadRequest, "x_content_parse_exception", "[1:2] [index_template] unknown field [%s]", k))
			return
		}
	}
	if len(t.patterns) == 0 {
		s.fail(w, r, illegalArgument("Required [index_patterns]"))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, exists := s.templates[t.name]; exists && r.flag("create") {
		s.fail(w, r, illegalArgument("index template [%s] already exists", t.name))
		return
	}
	var missing []string
	for _, cn := range t.composedOf {
		if s.components[cn] == nil && !slices.Contains(stringList(body["ignore_missing_component_templates"]), cn) {
			missing = append(missing, cn)
		}
	}
	if len(missing) > 0 {
		s.fail(w, r, newError(http.StatusBadRequest, "invalid_index_template_exception",
			"index_template [%s] invalid, cause [index template [%s] specifies component templates %s that do not exist]", t.name, t.name, javaList(missing)))
		return
	}
	for _, on := range sortedKeys(s.templates) {
		if o := s.templates[on]; on != t.name && o.priority == t.priority {
			for _, p := range t.patterns {
				if slices.ContainsFunc(o.patterns, func(op string) bool { return globsOverlap(p, op) }) {
					s.fail(w, r, illegalArgument("index template [%s] has index patterns %s matching patterns from existing templates [%s] with patterns (%s => %s) that have the same priority [%d], multiple index templates may not match during index creation, please use a different priority",
						t.name, javaList(t.patterns), on, on, javaList(o.patterns), t.priority))
					return
				}
			}
		}
	}
	if _, e := newMapping(s.templatePart(t, "mappings"), t.dataStream); e != nil {
		s.fail(w, r, e)
		return
	}
	s.templates[t.name] = t
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
		tmpl, ok := body["template"].(map[string]any)
		if !ok {
			s.fail(w, r, newError(http.StatusBadRequest, "x_content_parse_exception", "[1:2] Required [template]"))
			return
		}
		mappings, _ := tmpl["mappings"].(map[string]any)
		if _, e := newMapping(mappings, false); e != nil {
			s.fail(w, r, e)
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, exists := s.components[r.name]; exists && r.flag("create") {
			s.fail(w, r, illegalArgument("component template [%s] already exists", r.name))
			return
		}
		s.components[r.name] = body
		s.reply(w, r, http.StatusOK, obj{{"acknowledged", true}})
	case http.MethodDelete:
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.components[r.name] == nil {
			s.fail(w, r, resourceNotFound("component_template matching [%s] not found", r.name))
			return
		}
		for _, tn := range sortedKeys(s.templates) {
			if slices.Contains(s.templates[tn].composedOf, r.name) && tn != "logs" {
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
			list = append(list, obj{{"name", n}, {"component_template", s.components[n]}})
		}
		s.reply(w, r, http.StatusOK, obj{{"component_templates", list}})
	}
}

// javaList renders names as Java prints a list: [a, b].
func javaList(items []string) string { return "[" + strings.Join(items, ", ") + "]" }

// globsOverlap reports whether some name matches both * patterns.
func globsOverlap(a, b string) bool {
	switch {
	case a == "" || b == "":
		return strings.Trim(a+b, "*") == ""
	case a[0] == '*':
		return globsOverlap(a[1:], b) || globsOverlap(a, b[1:])
	case b[0] == '*':
		return globsOverlap(b, a)
	}
	return a[0] == b[0] && globsOverlap(a[1:], b[1:])
}
