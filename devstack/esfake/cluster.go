package esfake

import (
	"fmt"
	"net/http"
	"strings"
)

// This file holds the cluster settings (GET and PUT /_cluster/settings)
// and the one esfake acts on: action.auto_create_index, which decides
// whether a write may create a missing index or data stream.

// autoCreateSetting is the cluster setting that allows or forbids creating
// indices and data streams on first write.
const autoCreateSetting = "action.auto_create_index"

// clusterSettings are the settings that esfake accepts in PUT
// /_cluster/settings, with their defaults.
var clusterSettings = map[string]string{autoCreateSetting: "true"}

// clusterSetting is the value of a cluster setting: transient over
// persistent over the default. Call with s.mu held.
func (s *Server) clusterSetting(key string) string {
	if v, ok := s.transient[key]; ok {
		return v
	}
	if v, ok := s.persistent[key]; ok {
		return v
	}
	return clusterSettings[key]
}

// autoCreate is a parsed action.auto_create_index: true, false, or a
// comma-separated list of patterns, each allowing (+, or no sign) or
// forbidding (-) the names it matches; the first pattern that matches
// decides, and a name no pattern matches may not be created.
type autoCreate struct {
	value    string
	enabled  bool
	patterns []autoCreatePattern
}

type autoCreatePattern struct {
	glob  string
	allow bool
}

// parseAutoCreate parses a value of action.auto_create_index as
// Elasticsearch does, with its errors.
func parseAutoCreate(value string) (autoCreate, *esError) {
	switch value {
	case "true":
		return autoCreate{value: value, enabled: true}, nil
	case "false":
		return autoCreate{value: value}, nil
	}
	bad := func(why string) *esError {
		e := illegalArgument("Can't parse [%s] for setting [%s] %s", value, autoCreateSetting, why)
		e.extra = obj{{"suppressed", []obj{illegalArgument("Failed to parse value [%s] as only [true] or [false] are allowed.", value).object()}}}
		return e
	}
	a := autoCreate{value: value, enabled: true}
	for _, p := range strings.Split(value, ",") {
		p = strings.TrimSpace(p)
		switch {
		case p == "":
			return a, bad("must be either [true, false, or a comma separated list of index patterns]")
		case p == "-" || p == "+":
			return a, bad("must contain an index name after [" + p + "]")
		case p[0] == '-':
			a.patterns = append(a.patterns, autoCreatePattern{glob: p[1:]})
		case p[0] == '+':
			a.patterns = append(a.patterns, autoCreatePattern{glob: p[1:], allow: true})
		default:
			a.patterns = append(a.patterns, autoCreatePattern{glob: p, allow: true})
		}
	}
	return a, nil
}

// mayAutoCreate returns nil when a write may create the missing index or
// data stream name, and otherwise the 404 index_not_found_exception that
// Elasticsearch answers each item of that write. A template's
// allow_auto_create overrides the cluster setting. Call with s.mu held.
func (s *Server) mayAutoCreate(name string, t *indexTemplate) *esError {
	if t != nil {
		for _, o := range t.other {
			if allow, ok := o.v.(bool); ok && o.k == "allow_auto_create" {
				if allow {
					return nil
				}
				// Elasticsearch names the patterns where the index goes.
				return indexNotFoundBecause(fmt.Sprintf("composable template %s forbids index auto creation", javaList(t.patterns)), "")
			}
		}
	}
	a, _ := parseAutoCreate(s.clusterSetting(autoCreateSetting)) // validated when set
	if !a.enabled {
		return indexNotFoundBecause(name, fmt.Sprintf("[%s] is [false]", autoCreateSetting))
	}
	if len(a.patterns) == 0 {
		return nil
	}
	for _, p := range a.patterns {
		if globMatch(p.glob, name) {
			if p.allow {
				return nil
			}
			return indexNotFoundBecause(name, fmt.Sprintf("[%s] contains [-%s] which forbids automatic creation of the index", autoCreateSetting, p.glob))
		}
	}
	return indexNotFoundBecause(name, fmt.Sprintf("[%s] ([%s]) doesn't match", autoCreateSetting, a.value))
}

// indexNotFoundBecause is the index_not_found_exception of a write that
// may not create index name, for the given reason ("" for none).
func indexNotFoundBecause(name, why string) *esError {
	reason := fmt.Sprintf("no such index [%s]", name)
	if why != "" {
		reason += " and " + why
	}
	return &esError{status: http.StatusNotFound, typ: "index_not_found_exception", reason: reason,
		extra: obj{{"index_uuid", "_na_"}, {"index", name}}}
}

// handleClusterSettings serves GET and PUT /_cluster/settings.
func (s *Server) handleClusterSettings(w http.ResponseWriter, r *request) {
	if r.Method == http.MethodGet {
		s.mu.RLock()
		defer s.mu.RUnlock()
		flat := r.flag("flat_settings")
		out := obj{{"persistent", renderFlat(s.persistent, flat)}, {"transient", renderFlat(s.transient, flat)}}
		if r.flag("include_defaults") {
			defaults := map[string]string{}
			for k, v := range clusterSettings {
				if _, set := s.persistent[k]; !set {
					if _, set := s.transient[k]; !set {
						defaults[k] = v
					}
				}
			}
			out = append(out, kv{"defaults", renderFlat(defaults, flat)})
		}
		s.reply(w, r, http.StatusOK, out)
		return
	}
	body, e := decodeBody(r.body)
	if e != nil {
		s.fail(w, r, e)
		return
	}
	changes := map[string]map[string]any{}
	for _, scope := range sortedKeys(body) {
		if scope != "persistent" && scope != "transient" {
			s.fail(w, r, newError(http.StatusBadRequest, "x_content_parse_exception", "[1:2] [cluster_update_settings_request] unknown field [%s]", scope))
			return
		}
		m, _ := body[scope].(map[string]any)
		changes[scope] = map[string]any{}
		for k, v := range flattenKeys("", m) {
			if _, known := clusterSettings[k]; !known {
				s.fail(w, r, unsupported("the %s cluster setting [%s] (only %s)", scope, k, autoCreateSetting))
				return
			}
			if v != nil {
				str := fmt.Sprint(v)
				if _, e := parseAutoCreate(str); e != nil {
					s.fail(w, r, e)
					return
				}
				v = str
			}
			changes[scope][k] = v
		}
	}
	if len(changes["persistent"])+len(changes["transient"]) == 0 {
		s.fail(w, r, validationFailed("no settings to update"))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	applied := map[string]map[string]string{"persistent": {}, "transient": {}}
	for scope, m := range changes {
		target := s.persistent
		if scope == "transient" {
			target = s.transient
		}
		for k, v := range m {
			if v == nil {
				delete(target, k)
				continue
			}
			target[k] = v.(string)
			applied[scope][k] = v.(string)
		}
	}
	s.reply(w, r, http.StatusOK, obj{{"acknowledged", true},
		{"persistent", renderFlat(applied["persistent"], false)}, {"transient", renderFlat(applied["transient"], false)}})
}

// flattenKeys gives nested settings as dotted keys.
func flattenKeys(prefix string, m map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok {
			for sk, sv := range flattenKeys(prefix+k+".", sub) {
				out[sk] = sv
			}
			continue
		}
		out[prefix+k] = v
	}
	return out
}

// renderFlat gives dotted settings as Elasticsearch shows them: nested
// objects, or with flat set the dotted keys.
func renderFlat(settings map[string]string, flat bool) map[string]any {
	out := map[string]any{}
	for k, v := range settings {
		if flat {
			out[k] = v
			continue
		}
		parts := strings.Split(k, ".")
		m := out
		for _, p := range parts[:len(parts)-1] {
			sub, ok := m[p].(map[string]any)
			if !ok {
				sub = map[string]any{}
				m[p] = sub
			}
			m = sub
		}
		m[parts[len(parts)-1]] = v
	}
	return out
}
