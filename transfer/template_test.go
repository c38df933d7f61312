package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/logpipe/logpipe/devstack/stack"
	"github.com/logpipe/logpipe/transfer/internal/document"
)

// TestDocumentedTemplateInstalledFirst: an operator installs the template
// that configs/ shows, as the README says, before transfer ever ran, and
// puts retention into the component template logs-logpipe@custom.
// transfer starts, indexes, and starts again, and the operator's component
// template is as they left it.
func TestDocumentedTemplateInstalledFirst(t *testing.T) {
	stack.ForBackends(t, func(t *testing.T, kind string) {
		w := newWorld(t, kind)
		file := map[document.Engine]string{
			document.Elasticsearch: "index-template.json",
			document.OpenSearch:    "index-template-opensearch.json",
		}[w.engine()]
		raw, err := os.ReadFile(filepath.Join("..", "configs", file))
		if err != nil {
			t.Fatal(err)
		}
		// The README: for another --es-index, the template's name and
		// pattern are that data stream's.
		body := strings.ReplaceAll(string(raw), `"logs-logpipe-default"`, `"`+w.index+`"`)

		custom := "/_component_template/" + document.CustomTemplate
		switch w.engine() {
		case document.Elasticsearch:
			// Retention: an ILM policy, in the component template.
			w.es.must(http.MethodPut, custom, `{"template":{"settings":{"index":{"lifecycle":{"name":"logs-30d"}}}}}`)
		case document.OpenSearch:
			// The README's first step on OpenSearch, which has no
			// ignore_missing_component_templates: create the component
			// template unless it exists (it is shared by every test here;
			// retention on OpenSearch is an ISM policy, not a setting).
			var ans map[string]any
			status := w.es.do(http.MethodPut, custom+"?create=true", `{"template":{}}`, &ans)
			if status != http.StatusOK && !strings.Contains(fmt.Sprint(ans), "already exists") {
				t.Fatalf("creating %s: %d %v", document.CustomTemplate, status, ans)
			}
		}
		w.es.must(http.MethodPut, "/_index_template/"+w.index, body)
		componentBefore := w.component()

		var ids []string
		for round := range 2 { // transfer starts twice: the template is installed again
			r := startService(t, fmt.Sprintf("transfer-%d", round), w.config())
			var values [][]byte
			for i := range 100 {
				values = append(values, logRecord("web", fmt.Sprintf(`{"round":%d,"i":%d,"status":200}`, round, i), round*100+i))
			}
			ids = append(ids, w.produce("web", values...)...)
			w.waitCount(within, len(ids))
			waitFor(t, within, "/readyz green", func() bool {
				code, _ := readyz(t, r.svc.Addr())
				return code == http.StatusOK
			})
			r.stop()
		}
		w.checkExactly(ids)
		if n := w.records(w.dlq); n != 0 {
			t.Fatalf("%d records dead-lettered, want none", n)
		}

		// transfer's template is the file's, and the component is untouched.
		var tmpl struct {
			IndexTemplates []struct {
				IndexTemplate map[string]any `json:"index_template"`
			} `json:"index_templates"`
		}
		w.es.do(http.MethodGet, "/_index_template/"+w.index, "", &tmpl)
		var want map[string]any
		must(t, json.Unmarshal([]byte(body), &want))
		if len(tmpl.IndexTemplates) != 1 {
			t.Fatalf("index templates named %s: %+v", w.index, tmpl)
		}
		got := tmpl.IndexTemplates[0].IndexTemplate
		for _, k := range []string{"index_patterns", "composed_of", "priority", "_meta"} {
			if fmt.Sprint(got[k]) != fmt.Sprint(want[k]) {
				t.Errorf("installed template's %s = %v, want the file's %v", k, got[k], want[k])
			}
		}
		if after := w.component(); !reflect.DeepEqual(after, componentBefore) {
			t.Errorf("%s changed by transfer: %v, was %v", document.CustomTemplate, after, componentBefore)
		}
		if w.engine() == document.Elasticsearch {
			var settings map[string]struct {
				Settings struct {
					Index struct {
						Lifecycle struct {
							Name string `json:"name"`
						} `json:"lifecycle"`
					} `json:"index"`
				} `json:"settings"`
			}
			w.es.do(http.MethodGet, "/"+w.index+"/_settings", "", &settings)
			for backing, s := range settings {
				if s.Settings.Index.Lifecycle.Name != "logs-30d" {
					t.Errorf("%s: index.lifecycle.name = %q, want the operator's logs-30d", backing, s.Settings.Index.Lifecycle.Name)
				}
			}
		}
		t.Logf("%s: %s installed by hand first; %d records indexed over two starts of transfer, each once; %s unchanged", kind, file, len(ids), document.CustomTemplate)
	})
}

// component returns the component template logs-logpipe@custom.
func (w *world) component() any {
	w.t.Helper()
	var ans struct {
		ComponentTemplates []struct {
			ComponentTemplate any `json:"component_template"`
		} `json:"component_templates"`
	}
	if status := w.es.do(http.MethodGet, "/_component_template/"+document.CustomTemplate, "", &ans); status != http.StatusOK || len(ans.ComponentTemplates) != 1 {
		w.t.Fatalf("GET component template %s: %d %+v", document.CustomTemplate, status, ans)
	}
	return ans.ComponentTemplates[0].ComponentTemplate
}
