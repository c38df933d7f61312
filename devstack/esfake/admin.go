package esfake

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// This file holds the handlers for data streams and indices: create,
// inspect and delete them, their mappings, and refresh.

// dataStreamInfo renders a data stream as GET /_data_stream shows it.
func (s *Server) dataStreamInfo(ds *dataStream) obj {
	indices := make([]obj, len(ds.indices))
	for i, ix := range ds.indices {
		indices[i] = obj{{"index_name", ix.name}, {"index_uuid", ix.uuid}, {"prefer_ilm", true}, {"managed_by", "Unmanaged"}}
	}
	return obj{
		{"name", ds.name},
		{"timestamp_field", obj{{"name", "@timestamp"}}},
		{"indices", indices},
		{"generation", ds.generation},
		{"status", "GREEN"},
		{"template", s.streamTemplateName(ds)},
		{"next_generation_managed_by", "Unmanaged"},
		{"prefer_ilm", true},
		{"hidden", ds.hidden},
		{"system", false},
		{"allow_custom_routing", false},
		{"replicated", false},
		{"rollover_on_write", false},
	}
}

// streamTemplateName names the template a data stream matches now, as
// Elasticsearch reports it; the one it was made from if none does.
func (s *Server) streamTemplateName(ds *dataStream) string {
	if t := s.findTemplate(ds.name); t != nil {
		return t.name
	}
	return ds.template
}

func (s *Server) handleDataStream(w http.ResponseWriter, r *request) {
	switch r.Method {
	case http.MethodPut:
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.streams[r.name] != nil {
			s.fail(w, r, resourceExists("data_stream [%s] already exists", r.name))
			return
		}
		if s.indices[r.name] != nil {
			s.fail(w, r, resourceExists("index [%s/%s] already exists", r.name, s.indices[r.name].uuid))
			return
		}
		if e := validateIndexName(r.name); e != nil {
			s.fail(w, r, e)
			return
		}
		t := s.findTemplate(r.name)
		if t == nil || t.dataStream == nil {
			s.fail(w, r, illegalArgument("no matching index template found for data stream [%s]", r.name))
			return
		}
		if _, e := s.createDataStream(r.name, t); e != nil {
			s.fail(w, r, e)
			return
		}
		s.reply(w, r, http.StatusOK, obj{{"acknowledged", true}})
	case http.MethodDelete:
		s.mu.Lock()
		defer s.mu.Unlock()
		names, ok := matchNames(r.name, sortedKeys(s.streams))
		if !ok {
			s.fail(w, r, indexNotFound(r.name))
			return
		}
		for _, n := range names {
			if e := blocked(levelMetadataWrite, s.streams[n].indices...); e != nil {
				s.fail(w, r, e)
				return
			}
		}
		for _, n := range names {
			for _, ix := range s.streams[n].indices {
				delete(s.indices, ix.name)
			}
			delete(s.streams, n)
		}
		s.reply(w, r, http.StatusOK, obj{{"acknowledged", true}})
	default:
		s.mu.RLock()
		defer s.mu.RUnlock()
		names, ok := matchNames(r.name, sortedKeys(s.streams))
		if !ok {
			s.fail(w, r, indexNotFound(r.name))
			return
		}
		list := []obj{}
		for _, n := range names {
			list = append(list, s.dataStreamInfo(s.streams[n]))
		}
		s.reply(w, r, http.StatusOK, obj{{"data_streams", list}})
	}
}

// handleIndex serves PUT, GET, HEAD and DELETE /<index>.
func (s *Server) handleIndex(w http.ResponseWriter, r *request) {
	switch r.Method {
	case http.MethodPut:
		s.createIndexRequest(w, r)
	case http.MethodDelete:
		s.mu.Lock()
		defer s.mu.Unlock()
		if strings.Contains(r.target, "*") || r.target == "_all" {
			s.fail(w, r, illegalArgument("Wildcard expressions or all indices are not allowed"))
			return
		}
		for _, name := range strings.Split(r.target, ",") {
			if s.streams[name] != nil {
				s.fail(w, r, illegalArgument("The provided expression [%s] matches a data stream, specify the corresponding concrete indices instead.", name))
				return
			}
			ix := s.indices[name]
			if ix == nil {
				s.fail(w, r, indexNotFound(name))
				return
			}
			if ix.stream != "" && s.streams[ix.stream].writeIndex() == ix {
				s.fail(w, r, illegalArgument("index [%s] is the write index for data stream [%s] and cannot be deleted", name, ix.stream))
				return
			}
			if e := blocked(levelMetadataWrite, ix); e != nil {
				s.fail(w, r, e)
				return
			}
		}
		for _, name := range strings.Split(r.target, ",") {
			if ix := s.indices[name]; ix != nil && ix.stream != "" {
				ds := s.streams[ix.stream]
				ds.indices = slices.DeleteFunc(ds.indices, func(b *index) bool { return b == ix })
			}
			delete(s.indices, name)
		}
		s.reply(w, r, http.StatusOK, obj{{"acknowledged", true}})
	default: // GET, HEAD
		s.mu.RLock()
		defer s.mu.RUnlock()
		o := readOptionsOf(r)
		if r.Method == http.MethodHead {
			o.allowNoIndices = false
		}
		ixs, e := s.resolveRead(r.target, o)
		if e != nil {
			s.fail(w, r, e)
			return
		}
		out := obj{}
		for _, ix := range ixs {
			info := obj{
				{"aliases", obj{}},
				{"mappings", ix.mapping.render()},
				{"settings", s.renderSettings(ix, r.flag("flat_settings"))},
			}
			if ix.stream != "" {
				info = append(info, kv{"data_stream", ix.stream})
			}
			out = append(out, kv{ix.name, info})
		}
		s.reply(w, r, http.StatusOK, out)
	}
}

// renderSettings gives an index's settings as GET /<index>/_settings does:
// nested objects of strings, or with flat set dotted keys.
func (s *Server) renderSettings(ix *index, flat bool) map[string]any {
	all := map[string]string{
		"index.number_of_shards":   "1",
		"index.number_of_replicas": "0",
		"index.uuid":               ix.uuid,
		"index.provided_name":      ix.name,
		"index.creation_date":      fmt.Sprint(ix.created.UnixMilli()),
		"index.version.created":    "8537000",
	}
	if ix.stream != "" {
		all["index.hidden"] = "true"
	}
	for k, v := range ix.settings {
		all[k] = fmt.Sprint(v)
	}
	return renderFlat(all, flat)
}

func (s *Server) createIndexRequest(w http.ResponseWriter, r *request) {
	body, e := decodeBody(r.body)
	if e != nil {
		s.fail(w, r, e)
		return
	}
	var mappings, settings map[string]any
	for k, v := range body {
		switch k {
		case "mappings":
			mappings, _ = v.(map[string]any)
		case "settings":
			settings, _ = v.(map[string]any)
		case "aliases":
			if am, _ := v.(map[string]any); len(am) > 0 {
				s.fail(w, r, unsupported("aliases"))
				return
			}
		default:
			s.fail(w, r, parsingError("unknown key [%s] for create index", k))
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	name := r.target
	if e := validateIndexName(name); e != nil {
		s.fail(w, r, e)
		return
	}
	if ix := s.indices[name]; ix != nil {
		s.fail(w, r, &esError{status: 400, typ: "resource_already_exists_exception",
			reason: fmt.Sprintf("index [%s/%s] already exists", name, ix.uuid),
			extra:  obj{{"index_uuid", ix.uuid}, {"index", name}}})
		return
	}
	if s.streams[name] != nil {
		s.fail(w, r, resourceExists("data stream [%s] already exists", name))
		return
	}
	t := s.findTemplate(name)
	if t != nil && t.dataStream != nil {
		s.fail(w, r, illegalArgument("cannot create index with name [%s], because it matches with template [%s] that creates data streams only, use create data stream api instead", name, t.name))
		return
	}
	if _, e := s.createIndex(name, t, "", mappings, settings); e != nil {
		s.fail(w, r, e)
		return
	}
	s.reply(w, r, http.StatusOK, obj{{"acknowledged", true}, {"shards_acknowledged", true}, {"index", name}})
}

func (s *Server) handleMapping(w http.ResponseWriter, r *request) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ixs, e := s.resolveRead(r.target, readOptionsOf(r))
	if e != nil {
		s.fail(w, r, e)
		return
	}
	out := obj{}
	for _, ix := range ixs {
		out = append(out, kv{ix.name, obj{{"mappings", ix.mapping.render()}}})
	}
	s.reply(w, r, http.StatusOK, out)
}

func (s *Server) handleRefresh(w http.ResponseWriter, r *request) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ixs, e := s.resolveRead(r.target, searchOptionsOf(r))
	if e != nil {
		s.fail(w, r, e)
		return
	}
	s.reply(w, r, http.StatusOK, obj{{"_shards", obj{{"total", len(ixs)}, {"successful", len(ixs)}, {"failed", 0}}}})
}

// handleRollover serves POST /<data stream>/_rollover without conditions:
// a new backing index, made from the template that matches the data
// stream now (so with the settings of its component templates as they
// are now), becomes the write index.
func (s *Server) handleRollover(w http.ResponseWriter, r *request) {
	body, e := decodeBody(r.body)
	if e != nil {
		s.fail(w, r, e)
		return
	}
	for k, v := range body {
		if m, _ := v.(map[string]any); k != "conditions" || len(m) > 0 {
			s.fail(w, r, unsupported("rollover with [%s]", k))
			return
		}
	}
	if r.flag("dry_run") || r.flag("lazy") {
		s.fail(w, r, unsupported("dry_run and lazy rollovers"))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ds := s.streams[r.target]
	switch {
	case ds == nil && s.indices[r.target] != nil:
		s.fail(w, r, illegalArgument("rollover target is a [concrete index] but one of [alias,data_stream] was expected"))
		return
	case ds == nil:
		s.fail(w, r, illegalArgument("rollover target [%s] does not exist", r.target))
		return
	}
	t := s.findTemplate(ds.name)
	if t == nil || t.dataStream == nil {
		s.fail(w, r, illegalArgument("no matching index template found for data stream [%s]", ds.name))
		return
	}
	old := ds.writeIndex()
	ix, e := s.createIndex(backingIndexName(ds.name, s.now(), ds.generation+1), t, ds.name, nil, nil)
	if e != nil {
		s.fail(w, r, e)
		return
	}
	ds.indices = append(ds.indices, ix)
	ds.generation++
	s.reply(w, r, http.StatusOK, obj{
		{"acknowledged", true}, {"shards_acknowledged", true},
		{"old_index", old.name}, {"new_index", ix.name},
		{"rolled_over", true}, {"dry_run", false}, {"lazy", false}, {"conditions", obj{}},
	})
}
