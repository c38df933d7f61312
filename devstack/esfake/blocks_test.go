package esfake_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestIndexBlocks: PUT _settings with index.blocks.* on a data stream
// blocks writes to its backing index, item by item, with Elasticsearch's
// cluster_block_exception; null lifts the block.
func TestIndexBlocks(t *testing.T) {
	env := newTestServer(t, nil)
	putTemplate(t, env, "logpipe", logpipeTemplate)
	const ds = "logs-logpipe-default"
	backing := ".ds-logs-logpipe-default-2026.11.21-000001"
	doc := func(n string) map[string]string {
		return map[string]string{n: `{"@timestamp":"2026-11-21T10:00:00Z","message":"m"}`}
	}
	if res := env.runBulk(t, ds, "create", []string{"a"}, doc("a")); len(res.ok) != 1 {
		t.Fatalf("first write: %+v %v", res.failed, res.errs)
	}

	tests := map[string]struct {
		body       string
		wantStatus int
		wantReason string
	}{
		"write block, nested":    {`{"index":{"blocks":{"write":true}}}`, http.StatusForbidden, "index [" + backing + "] blocked by: [FORBIDDEN/8/index write (api)];"},
		"read-only, dotted":      {`{"index.blocks.read_only":"true"}`, http.StatusForbidden, "index [" + backing + "] blocked by: [FORBIDDEN/5/index read-only (api)];"},
		"flood-stage watermark":  {`{"index.blocks.read_only_allow_delete":true}`, http.StatusTooManyRequests, "index [" + backing + "] blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark, index has read-only-allow-delete block];"},
		"settings wrapper works": {`{"settings":{"index.blocks.write":true}}`, http.StatusForbidden, "FORBIDDEN/8/index write (api)"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if status, m := env.do(t, "PUT", "/"+ds+"/_settings", tt.body); status != http.StatusOK || m["acknowledged"] != true {
				t.Fatalf("PUT _settings: %d %v", status, m)
			}
			res := env.runBulk(t, ds, "create", []string{"b"}, doc("b"))
			f, ok := res.failed["b"]
			if !ok || f.Status != tt.wantStatus || f.Error.Type != "cluster_block_exception" || !strings.Contains(f.Error.Reason, tt.wantReason) {
				t.Fatalf("write to a blocked index: %+v %v, want %d cluster_block_exception %q", res.failed, res.errs, tt.wantStatus, tt.wantReason)
			}
			_, m := env.do(t, "GET", "/"+ds+"/_settings", "")
			if dig(m, backing, "settings", "index", "blocks") == nil {
				t.Errorf("GET _settings shows no block: %v", m)
			}
			// Lift every block.
			lift := `{"index.blocks.write":null,"index.blocks.read_only":null,"index.blocks.read_only_allow_delete":null}`
			if status, m := env.do(t, "PUT", "/"+ds+"/_settings", lift); status != http.StatusOK {
				t.Fatalf("lifting the blocks: %d %v", status, m)
			}
			if res := env.runBulk(t, ds, "create", []string{"b"}, doc("b")); len(res.ok) != 1 {
				t.Fatalf("write after lifting: %+v %v", res.failed, res.errs)
			}
			env.do(t, "DELETE", "/"+backing+"/_doc/b", "")
		})
	}

	for body, want := range map[string]string{
		`{"index.number_of_replicas":2}`: "does not support changing the setting [index.number_of_replicas]",
		`{"index.blocks.write":"yes"}`:   "only [true] or [false] are allowed",
		`{}`:                             "no settings to update",
	} {
		status, m := env.do(t, "PUT", "/"+ds+"/_settings", body)
		if status != http.StatusBadRequest || !strings.Contains(dig(m, "error", "reason").(string), want) {
			t.Errorf("PUT _settings %s: %d %v, want 400 %q", body, status, m, want)
		}
	}
	if status, _ := env.do(t, "PUT", "/no-such-index/_settings", `{"index.blocks.write":true}`); status != http.StatusNotFound {
		t.Errorf("PUT _settings on a missing index: %d, want 404", status)
	}
}
