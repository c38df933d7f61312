package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/logpipe/logpipe/devstack/stack"
	"github.com/logpipe/logpipe/transfer/internal/document"
	"github.com/logpipe/logpipe/transfer/internal/esbulk"
)

// TestDocumentedTemplateInstalledFirst: an operator installs the template
// that configs/ shows, as the README says, before transfer ever ran, and
// puts retention into the component template logs-logpipe@custom.
// transfer starts, indexes, and starts again, and the operator's component
// template is as they left it.
func TestDocumentedTemplateInstalledFirst(t *testing.T) {
	stack.ForBackends(t, func(t *testing.T, kind string) {
		w := newWorld(t, kind)
		file, body := w.documentedTemplate()
		custom := "/_component_template/" + document.CustomTemplate
		switch w.engine() {
		case document.Elasticsearch:
			// Retention: an ILM policy, in the component template.
			w.es.must(http.MethodPut, custom, `{"template":{"settings":{"index":{"lifecycle":{"name":"logs-30d"}}}}}`)
		case document.OpenSearch:
			// Retention on OpenSearch is an ISM policy, not a setting
			// (and the component template is shared by every test here).
			w.createCustomComponent()
		}
		w.es.must(http.MethodPut, "/_index_template/"+w.index, body)
		componentBefore := w.component()

		var ids []string
		for round := range 2 { // transfer starts twice: the template is installed again
			ids, _ = w.startAndIndex(round, `{"round":%d,"i":%d,"status":200}`, ids)
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

// documentedTemplate returns the file of configs/ for the world's engine
// and its body for the world's data stream: the README says that for
// another --es-index, the template's name and pattern are that data
// stream's.
func (w *world) documentedTemplate() (file, body string) {
	w.t.Helper()
	file = map[document.Engine]string{
		document.Elasticsearch: "index-template.json",
		document.OpenSearch:    "index-template-opensearch.json",
	}[w.engine()]
	raw, err := os.ReadFile(filepath.Join("..", "configs", file))
	if err != nil {
		w.t.Fatal(err)
	}
	return file, strings.ReplaceAll(string(raw), `"logs-logpipe-default"`, `"`+w.index+`"`)
}

// createCustomComponent is the README's first step on OpenSearch, which
// has no ignore_missing_component_templates: create the component
// template unless it exists.
func (w *world) createCustomComponent() {
	w.t.Helper()
	var ans map[string]any
	status := w.es.do(http.MethodPut, "/_component_template/"+document.CustomTemplate+"?create=true", `{"template":{}}`, &ans)
	if status != http.StatusOK && !strings.Contains(fmt.Sprint(ans), "already exists") {
		w.t.Fatalf("creating %s: %d %v", document.CustomTemplate, status, ans)
	}
}

// indexTemplate returns the index template name as GET shows it, or nil
// when there is none.
func (w *world) indexTemplate(name string) map[string]any {
	w.t.Helper()
	var ans struct {
		IndexTemplates []struct {
			IndexTemplate map[string]any `json:"index_template"`
		} `json:"index_templates"`
	}
	switch status := w.es.do(http.MethodGet, "/_index_template/"+name, "", &ans); {
	case status == http.StatusNotFound:
		return nil
	case status != http.StatusOK || len(ans.IndexTemplates) != 1:
		w.t.Fatalf("GET index template %s: %d %+v", name, status, ans)
	}
	return ans.IndexTemplates[0].IndexTemplate
}

// TestTemplateUnderAnotherName: an operator installs configs/'s template
// by hand under a name of their own, with transfer's pattern and
// priority, as provisioning tools that own their templates do. The
// cluster then refuses transfer's own (two templates of one priority may
// not match one name). transfer takes theirs as it is: it says so in one
// warning, indexes through it, never changes it, and starts again the
// same way. A template of theirs that makes no data stream stops transfer
// at start, with an error that names it and says what to do.
func TestTemplateUnderAnotherName(t *testing.T) {
	stack.ForBackends(t, func(t *testing.T, kind string) {
		// withTemplate installs body as the operator's template, removed
		// when the test ends, after the data stream that uses it.
		withTemplate := func(w *world, name, body string) {
			w.es.must(http.MethodPut, "/_index_template/"+name, body)
			w.t.Cleanup(func() {
				w.es.do(http.MethodDelete, "/_data_stream/"+w.index, "", nil)
				w.es.do(http.MethodDelete, "/_index_template/"+name, "", nil)
			})
		}

		t.Run("a copy of the documented template", func(t *testing.T) {
			w := newWorld(t, kind)
			file, body := w.documentedTemplate()
			if w.engine() == document.OpenSearch {
				w.createCustomComponent()
			}
			mine := w.index + "-mine"
			withTemplate(w, mine, body)
			before := w.indexTemplate(mine)

			var ids []string
			for round := range 2 {
				var r *running
				ids, r = w.startAndIndex(round, `{"round":%d,"i":%d,"status":200}`, ids)
				if got := r.log.warned("takes index template " + mine); len(got) != 1 || !strings.Contains(got[0], "a copy of logpipe's") {
					t.Errorf("start %d: warnings about %s: %q, want one saying transfer uses the copy", round, mine, got)
				}
			}
			w.checkExactly(ids)
			if n := w.records(w.dlq); n != 0 {
				t.Fatalf("%d records dead-lettered, want none", n)
			}
			if got := w.indexTemplate(w.index); got != nil {
				t.Errorf("transfer installed its own template %s beside %s: %v", w.index, mine, got)
			}
			if after := w.indexTemplate(mine); !reflect.DeepEqual(after, before) {
				t.Errorf("%s changed by transfer: %v, was %v", mine, after, before)
			}
			var ds struct {
				DataStreams []struct {
					Template string `json:"template"`
				} `json:"data_streams"`
			}
			if status := w.es.do(http.MethodGet, "/_data_stream/"+w.index, "", &ds); status != http.StatusOK || len(ds.DataStreams) != 1 || ds.DataStreams[0].Template != mine {
				t.Errorf("data stream %s: %d %+v, want it made from %s", w.index, status, ds, mine)
			}
			t.Logf("%s: %s installed as %s; transfer started twice, used it and left it as it was; %d records indexed, each once", kind, file, mine, len(ids))
		})

		t.Run("a template that makes no data stream", func(t *testing.T) {
			w := newWorld(t, kind)
			plain := w.index + "-plain"
			withTemplate(w, plain, fmt.Sprintf(`{"index_patterns":[%q],"priority":%d,"template":{"settings":{"index":{"number_of_shards":1}}}}`,
				w.index, document.TemplatePriority))
			svc, err := newService(w.config(), &testLog{t: t, name: "transfer"})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), within)
			defer cancel()
			err = svc.Run(ctx)
			if !errors.Is(err, esbulk.ErrTemplateConflict) || !strings.Contains(err.Error(), "index template "+plain+" (patterns ["+w.index+"], priority 200)") ||
				!strings.Contains(err.Error(), "makes no data stream") || !strings.Contains(err.Error(), "delete it") {
				t.Fatalf("Run = %v, want ErrTemplateConflict naming %s and what to do", err, plain)
			}
			if ctx.Err() != nil {
				t.Fatalf("Run returned only when its context ended: %v", err)
			}
			if got := w.indexTemplate(w.index); got != nil {
				t.Errorf("transfer installed its own template %s: %v", w.index, got)
			}
			if n, _ := w.es.tryCount(""); n != 0 {
				t.Errorf("%d documents written, want none", n)
			}
			t.Logf("%s: Run = %v", kind, err)
		})
	})
}

// TestCustomTemplateKept: an operator adds retention to the component
// template logs-logpipe@custom while transfer runs. transfer starts again
// (and installs its index template again), the setting is still there,
// and the next backing index of the data stream, after a rollover, has it.
// On the real engine only: esfake has no rollover.
func TestCustomTemplateKept(t *testing.T) {
	realEngineOnly(t, "rolling a data stream over (POST <data stream>/_rollover)", func(t *testing.T, kind string) {
		w := newWorld(t, kind)
		key, value := "index.lifecycle.name", "logs-30d" // an ILM policy, Elasticsearch's retention
		if w.engine() == document.OpenSearch {
			// OpenSearch's retention is an ISM policy that attaches
			// itself (ism_template), not a setting, and the real
			// backends have no ISM plugin. Any index setting shows that
			// the component template is kept and composed; this one has
			// its default value, since the component template is shared
			// by every test that runs meanwhile. It is restored at the
			// end.
			key, value = "index.refresh_interval", "1s"
			w.createCustomComponent()
			was := w.component()
			t.Cleanup(func() {
				b, err := json.Marshal(was)
				must(t, err)
				w.es.must(http.MethodPut, "/_component_template/"+document.CustomTemplate, string(b))
			})
		}

		var ids []string
		run := func(round int) { ids, _ = w.startAndIndex(round, "round %d line %d", ids) }
		run(0)
		custom := fmt.Sprintf(`{"template":{"settings":{%q:%q}},"_meta":{"description":"retention of the logpipe data streams"}}`, key, value)
		w.es.must(http.MethodPut, "/_component_template/"+document.CustomTemplate, custom)
		want := w.component()
		run(1)
		if got := w.component(); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s after transfer started again: %v, want the operator's %v", document.CustomTemplate, got, want)
		}

		var rolled struct {
			OldIndex string `json:"old_index"`
			NewIndex string `json:"new_index"`
		}
		if status := w.es.do(http.MethodPost, "/"+w.index+"/_rollover", "", &rolled); status != http.StatusOK || rolled.NewIndex == "" {
			t.Fatalf("rollover of %s: %d %+v", w.index, status, rolled)
		}
		run(2) // into the new backing index
		w.checkExactly(ids)
		var settings map[string]struct {
			Settings map[string]any `json:"settings"`
		}
		if status := w.es.do(http.MethodGet, "/"+w.index+"/_settings?flat_settings=true", "", &settings); status != http.StatusOK {
			t.Fatalf("GET %s/_settings: %d", w.index, status)
		}
		if got := settings[rolled.NewIndex].Settings[key]; got != value {
			t.Errorf("new backing index %s: %s = %v, want %s from %s", rolled.NewIndex, key, got, value, document.CustomTemplate)
		}
		if got, ok := settings[rolled.OldIndex].Settings[key]; ok {
			t.Errorf("first backing index %s: %s = %v, want none (made before the operator's setting)", rolled.OldIndex, key, got)
		}
		t.Logf("%s: %s=%s put in %s between two starts of transfer: kept, and in the new backing index %s; %d records indexed, each once",
			kind, key, value, document.CustomTemplate, rolled.NewIndex, len(ids))
	})
}

// startAndIndex starts transfer for the round-th time, indexes 100 lines
// of job web through it (format takes the round and the line's number),
// waits until the data stream counts them with those indexed before
// (ids) and /readyz is green, and stops it. It returns ids with the new
// lines' ids, and the stopped transfer, for its log.
func (w *world) startAndIndex(round int, format string, ids []string) ([]string, *running) {
	w.t.Helper()
	r := startService(w.t, fmt.Sprintf("transfer-%d", round), w.config())
	var values [][]byte
	for i := range 100 {
		values = append(values, logRecord("web", fmt.Sprintf(format, round, i), round*100+i))
	}
	ids = append(ids, w.produce("web", values...)...)
	w.waitCount(within, len(ids))
	waitFor(w.t, within, "/readyz green", func() bool {
		code, _ := readyz(w.t, r.svc.Addr())
		return code == http.StatusOK
	})
	r.stop()
	return ids, r
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
