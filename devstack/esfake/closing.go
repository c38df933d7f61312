package esfake

import (
	"net/http"
	"strings"
)

// This file holds closed indices: POST /<target>/_close and _open, and
// the index_closed_exception that writes, searches and counts get from a
// closed index.

// indexClosed is Elasticsearch's answer to a write or a search that names
// a closed index.
func indexClosed(ix *index) *esError {
	return &esError{status: http.StatusBadRequest, typ: "index_closed_exception", reason: "closed",
		extra: obj{{"index_uuid", ix.uuid}, {"index", ix.name}}}
}

// closeTargets resolves the target of _close or _open: index names, and
// data streams, which stand for all their backing indices. Wildcards
// are refused for _close, as Elasticsearch 8 does by default
// (action.destructive_requires_name). Call with s.mu held.
func (s *Server) closeTargets(r *request, closing bool) ([]*index, *esError) {
	o := readOptionsOf(r)
	var out []*index
	seen := map[*index]bool{}
	add := func(ix *index) {
		if !seen[ix] {
			seen[ix] = true
			out = append(out, ix)
		}
	}
	for _, part := range strings.Split(r.target, ",") {
		switch {
		case part == "_all" || strings.Contains(part, "*"):
			if closing {
				return nil, illegalArgument("Wildcard expressions or all indices are not allowed")
			}
			ixs, e := s.resolveRead(part, o)
			if e != nil {
				return nil, e
			}
			for _, ix := range ixs {
				add(ix)
			}
		case s.streams[part] != nil:
			for _, ix := range s.streams[part].indices {
				add(ix)
			}
		case s.indices[part] != nil:
			add(s.indices[part])
		case !o.ignoreUnavailable:
			return nil, indexNotFound(part)
		}
	}
	return out, nil
}

// handleClose serves POST /<target>/_close. As in Elasticsearch 8 (since
// 7.12.1), the write index of a data stream may be closed too; writes to
// the data stream then fail with index_closed_exception until it is
// opened again. (OpenSearch refuses to close a data stream's write index.)
func (s *Server) handleClose(w http.ResponseWriter, r *request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ixs, e := s.closeTargets(r, true)
	if e != nil {
		s.fail(w, r, e)
		return
	}
	closed := obj{}
	for _, ix := range ixs {
		if e := blocked(levelMetadataWrite, ix); e != nil {
			s.fail(w, r, e)
			return
		}
	}
	for _, ix := range ixs {
		if !ix.closed {
			ix.closed = true
			ix.term++ // the shards start again, closed
			closed = append(closed, kv{ix.name, obj{{"closed", true}}})
		}
	}
	s.reply(w, r, http.StatusOK, obj{{"acknowledged", true}, {"shards_acknowledged", len(closed) > 0}, {"indices", closed}})
}

// handleOpen serves POST /<target>/_open: a data stream opens all its
// closed backing indices.
func (s *Server) handleOpen(w http.ResponseWriter, r *request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ixs, e := s.closeTargets(r, false)
	if e != nil {
		s.fail(w, r, e)
		return
	}
	for _, ix := range ixs {
		if ix.closed {
			ix.closed = false
			ix.term++
		}
	}
	s.reply(w, r, http.StatusOK, obj{{"acknowledged", true}, {"shards_acknowledged", true}})
}
