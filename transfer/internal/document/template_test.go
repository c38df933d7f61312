package document

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

var update = flag.Bool("update", false, "rewrite configs/index-template*.json from Template")

func TestTemplate(t *testing.T) {
	for _, e := range []Engine{Elasticsearch, OpenSearch} {
		t.Run(string(e), func(t *testing.T) {
			var tmpl struct {
				IndexPatterns []string       `json:"index_patterns"`
				DataStream    map[string]any `json:"data_stream"`
				Priority      int            `json:"priority"`
				ComposedOf    []string       `json:"composed_of"`
				IgnoreMissing []string       `json:"ignore_missing_component_templates"`
				Template      struct {
					Mappings struct {
						Properties map[string]any `json:"properties"`
					} `json:"mappings"`
				} `json:"template"`
			}
			if err := json.Unmarshal(Template("logs-logpipe-default", e), &tmpl); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(tmpl.IndexPatterns, []string{"logs-logpipe-default"}) || tmpl.DataStream == nil || tmpl.Priority <= 100 {
				t.Fatalf("template header = %+v", tmpl)
			}
			if !reflect.DeepEqual(tmpl.ComposedOf, []string{CustomTemplate}) {
				t.Errorf("composed_of = %v, want [%s]", tmpl.ComposedOf, CustomTemplate)
			}
			// OpenSearch refuses ignore_missing_component_templates.
			if wantIgnore := e == Elasticsearch; (len(tmpl.IgnoreMissing) > 0) != wantIgnore {
				t.Errorf("ignore_missing_component_templates = %v on %s", tmpl.IgnoreMissing, e)
			}
			p := tmpl.Template.Mappings.Properties
			for path, want := range map[string]string{
				"@timestamp": "date", "message": "text", "job": "keyword",
				"host.name": "keyword", "log.file.path": "keyword", "log.offset": "long",
				"kafka.topic": "keyword", "kafka.partition": "integer", "kafka.offset": "long",
				"event.ingested": "date", "log.file.fingerprint": "keyword", "log.file.generation": "keyword",
				// One field each, whatever the keys: bounded in field count.
				"json":   map[Engine]string{Elasticsearch: "flattened", OpenSearch: "flat_object"}[e],
				"labels": map[Engine]string{Elasticsearch: "flattened", OpenSearch: "flat_object"}[e],
			} {
				if got := lookupType(p, path); got != want {
					t.Errorf("mapping of %s = %q, want %q", path, got, want)
				}
			}
		})
	}
	if EngineOf("opensearch") != OpenSearch || EngineOf("") != Elasticsearch || EngineOf("elasticsearch") != Elasticsearch {
		t.Error("EngineOf does not tell OpenSearch from Elasticsearch")
	}
}

// TestConfigsShowTheTemplate: configs/ shows exactly the index templates
// transfer installs for the default data stream, on each engine. After a
// change to Template: go test ./transfer/internal/document -run TestConfigsShowTheTemplate -update
func TestConfigsShowTheTemplate(t *testing.T) {
	for file, e := range map[string]Engine{
		"index-template.json":            Elasticsearch,
		"index-template-opensearch.json": OpenSearch,
	} {
		path := filepath.Join("..", "..", "..", "configs", file)
		want := Template("logs-logpipe-default", e)
		if *update {
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("configs/%s differs from what transfer installs on %s; run this test with -update. Want:\n%s", file, e, want)
		}
	}
}
