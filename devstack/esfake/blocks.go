package esfake

import (
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
)

// This file holds index blocks: the index.blocks.* settings, given when an
// index is made (directly or by its template) or later with PUT
// /<target>/_settings, and the cluster_block_exception they answer.

// blockLevel is the kind of operation a block stops.
type blockLevel int

const (
	levelRead          blockLevel = iota // searches, counts, gets
	levelWrite                           // document writes and deletes
	levelMetadataWrite                   // deleting the index, changing its settings
)

// indexBlock is one of Elasticsearch's index blocks (IndexMetadata.APIBlock).
type indexBlock struct {
	setting     string
	id          int
	status      int
	description string
	levels      []blockLevel
}

var indexBlocks = []indexBlock{
	{"index.blocks.read_only", 5, http.StatusForbidden, "index read-only (api)", []blockLevel{levelWrite, levelMetadataWrite}},
	{"index.blocks.read", 7, http.StatusForbidden, "index read (api)", []blockLevel{levelRead}},
	{"index.blocks.write", 8, http.StatusForbidden, "index write (api)", []blockLevel{levelWrite}},
	{"index.blocks.metadata", 9, http.StatusForbidden, "index metadata (api)", []blockLevel{levelMetadataWrite}},
	// What a node sets on its indices when its disk passes the flood stage;
	// the one block that answers 429, so clients retry.
	{"index.blocks.read_only_allow_delete", 12, http.StatusTooManyRequests,
		"disk usage exceeded flood-stage watermark, index has read-only-allow-delete block", []blockLevel{levelWrite}},
}

func isBlockSetting(key string) bool {
	for _, b := range indexBlocks {
		if b.setting == key {
			return true
		}
	}
	return false
}

// blocks lists the blocks set on an index that stop operations of level.
func (ix *index) blocks(level blockLevel) []indexBlock {
	var out []indexBlock
	for _, b := range indexBlocks {
		if on, _ := asBool(ix.settings[b.setting], b.setting); on && slices.Contains(b.levels, level) {
			out = append(out, b)
		}
	}
	return out
}

// blocked returns the cluster_block_exception for an operation of level
// on the indices, or nil when none of them blocks it. As in
// Elasticsearch, the status is 429 when every block is the flood-stage
// one, else the highest other status.
func blocked(level blockLevel, ixs ...*index) *esError {
	var reason strings.Builder
	status, onlyRetryable := 0, true
	names := make([]*index, len(ixs))
	copy(names, ixs)
	sort.Slice(names, func(i, j int) bool { return names[i].name < names[j].name })
	for _, ix := range names {
		bs := ix.blocks(level)
		if len(bs) == 0 {
			continue
		}
		descs := make([]string, len(bs))
		for i, b := range bs {
			descs[i] = fmt.Sprintf("%s/%d/%s", statusName(b.status), b.id, b.description)
			if b.status != http.StatusTooManyRequests {
				onlyRetryable = false
				status = max(status, b.status)
			}
		}
		fmt.Fprintf(&reason, "index [%s] blocked by: [%s];", ix.name, strings.Join(descs, ", "))
	}
	if reason.Len() == 0 {
		return nil
	}
	if onlyRetryable {
		status = http.StatusTooManyRequests
	}
	return &esError{status: status, typ: "cluster_block_exception", reason: reason.String()}
}

// statusName is the name Elasticsearch's RestStatus gives a status.
func statusName(status int) string {
	return strings.ToUpper(strings.ReplaceAll(http.StatusText(status), " ", "_"))
}

// handleSettings serves GET and PUT /<target>/_settings. PUT changes only
// the index.blocks.* settings; a null value removes one.
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
			out = append(out, kv{ix.name, obj{{"settings", s.renderSettings(ix, r.flag("flat_settings"))}}})
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
	changes := flattenSettings(body)
	if len(changes) == 0 {
		s.fail(w, r, validationFailed("no settings to update"))
		return
	}
	for _, k := range sortedKeys(changes) {
		v := changes[k]
		switch {
		case isBlockSetting(k):
			if _, e := asBool(v, k); e != nil && v != nil {
				s.fail(w, r, illegalArgument("Failed to parse value [%v] as only [true] or [false] are allowed.", v))
				return
			}
		case k == "index.number_of_shards":
			s.fail(w, r, illegalArgument("Can't update non dynamic settings [[%s]] for open indices [[%s]]", k, r.target))
			return
		default:
			s.fail(w, r, unsupported("changing the setting [%s] (only index.blocks.*)", k))
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
		for k, v := range changes {
			if v == nil {
				delete(ix.settings, k)
			} else {
				ix.settings[k] = v
			}
		}
	}
	s.reply(w, r, http.StatusOK, obj{{"acknowledged", true}})
}
