package esfake

import (
	"fmt"
	"net/http"
	"strings"
)

// Index blocks (PUT /<index>/_settings with index.blocks.*), as
// Elasticsearch applies them to writes: a bulk item to a blocked index
// fails alone with a cluster_block_exception, 403 for a write or read-only
// block, 429 for the read-only-allow-delete block of a full disk (which
// still lets deletes through).

// blockSettings are the dynamic settings that PUT _settings accepts.
var blockSettings = []string{
	"index.blocks.write",
	"index.blocks.read_only",
	"index.blocks.read_only_allow_delete",
}

// writeBlock is the error of a write of op to ix, or nil when ix takes it.
func (ix *index) writeBlock(op string) *esError {
	on := func(key string) bool { return fmt.Sprint(ix.settings[key]) == "true" }
	block := func(status int, desc string) *esError {
		return newError(status, "cluster_block_exception", "index [%s] blocked by: [%s];", ix.name, desc)
	}
	switch {
	case on("index.blocks.read_only"):
		return block(http.StatusForbidden, "FORBIDDEN/5/index read-only (api)")
	case on("index.blocks.write"):
		return block(http.StatusForbidden, "FORBIDDEN/8/index write (api)")
	case on("index.blocks.read_only_allow_delete") && op != "delete":
		return block(http.StatusTooManyRequests, "TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark, index has read-only-allow-delete block")
	}
	return nil
}

// handleSettings serves GET and PUT /<index>/_settings. PUT takes the
// index blocks alone, nested or dotted; null removes a block. A data
// stream's name stands for its backing indices.
func (s *Server) handleSettings(w http.ResponseWriter, r *request) {
	if r.Method == http.MethodGet {
		s.mu.RLock()
		defer s.mu.RUnlock()
		ixs, e := s.resolveRead(r.target, readOptionsOf(r))
		if e != nil {
			s.fail(w, r, e)
			return
		}
		out := obj{}
		for _, ix := range ixs {
			out = append(out, kv{ix.name, obj{{"settings", nestSettings(ix.settings)}}})
		}
		s.reply(w, r, http.StatusOK, out)
		return
	}
	body, e := decodeBody(r.body)
	if e != nil {
		s.fail(w, r, e)
		return
	}
	if inner, ok := body["settings"].(map[string]any); ok && len(body) == 1 {
		body = inner
	}
	flat := flattenSettings(body)
	if len(flat) == 0 {
		s.fail(w, r, validationFailed("no settings to update"))
		return
	}
	for _, k := range sortedKeys(flat) {
		if !contains(blockSettings, k) {
			s.fail(w, r, unsupported("updating the setting [%s] (it takes %s)", k, strings.Join(blockSettings, ", ")))
			return
		}
		switch v := flat[k]; fmt.Sprint(v) {
		case "true", "false", "<nil>":
		default:
			s.fail(w, r, illegalArgument("Failed to parse value [%v] as only [true] or [false] are allowed.", v))
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ixs, e := s.resolveRead(r.target, readOptionsOf(r))
	if e != nil {
		s.fail(w, r, e)
		return
	}
	for _, ix := range ixs {
		for k, v := range flat {
			if v == nil {
				delete(ix.settings, k)
			} else {
				ix.settings[k] = fmt.Sprint(v)
			}
		}
	}
	s.reply(w, r, http.StatusOK, obj{{"acknowledged", true}})
}

// nestSettings turns dotted settings into nested objects, as GET
// _settings shows them.
func nestSettings(flat map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range flat {
		m := out
		parts := strings.Split(k, ".")
		for _, p := range parts[:len(parts)-1] {
			sub, ok := m[p].(map[string]any)
			if !ok {
				sub = map[string]any{}
				m[p] = sub
			}
			m = sub
		}
		m[parts[len(parts)-1]] = fmt.Sprint(v)
	}
	return out
}
