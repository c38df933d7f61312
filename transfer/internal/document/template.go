package document

import (
	"encoding/json"
	"strings"
)

// TemplatePriority is above the priority (100) of the built-in templates that
// Elasticsearch ships for logs-*-*, so that ours wins for our data stream.
const TemplatePriority = 200

// CustomTemplate is the component template that transfer's index template
// is composed of, for operators: retention and other settings of their own
// go there (index.lifecycle.name for an ILM policy on Elasticsearch, or a
// data stream lifecycle). transfer creates it, empty, only when it does not
// exist, and never changes it; the index template, which transfer installs
// at every start, is its own.
const CustomTemplate = "logs-logpipe@custom"

// ManagedBy is the _meta.managed_by of transfer's index template, and so
// of configs/index-template.json and any copy of it.
const ManagedBy = "logpipe-transfer"

// Engine is the search engine a template is for: they differ in the field
// type that indexes arbitrary JSON without mapping each key.
type Engine string

// Engines, named as GET / says in version.distribution (Elasticsearch
// leaves it out).
const (
	Elasticsearch Engine = "elasticsearch" // json and labels are "flattened"
	OpenSearch    Engine = "opensearch"    // json and labels are "flat_object"
)

// EngineOf is the engine of a version.distribution from GET /.
func EngineOf(distribution string) Engine {
	if strings.EqualFold(distribution, string(OpenSearch)) {
		return OpenSearch
	}
	return Elasticsearch
}

// objectType maps json.* and labels.*: one field whatever the keys, every
// leaf indexed as a keyword under its dotted path, so that json.status:200
// and json.status:ok are both found, labels.env:prod is found by a term
// query, one job's types or label keys never reject another job's lines,
// and the number of fields stays fixed however many keys producers use.
func (e Engine) objectType() string {
	if e == OpenSearch {
		return "flat_object"
	}
	return "flattened"
}

// template is an index template's body, its keys in the order people read
// them.
type template struct {
	IndexPatterns []string `json:"index_patterns"`
	DataStream    struct{} `json:"data_stream"`
	Priority      int      `json:"priority"`
	ComposedOf    []string `json:"composed_of"`
	// Elasticsearch (8.7 and later) only: the template installs even
	// before CustomTemplate exists. OpenSearch refuses the key.
	IgnoreMissing []string       `json:"ignore_missing_component_templates,omitempty"`
	Template      map[string]any `json:"template"`
	Meta          map[string]any `json:"_meta"`
}

// Template returns the body of the composable index template for the data
// stream named index on engine e: a data stream whose mappings fit the
// documents that Builder makes, composed of CustomTemplate. It is
// indented, as configs/index-template.json shows it.
func Template(index string, e Engine) []byte {
	keyword := map[string]any{"type": "keyword"}
	typ := func(t string) map[string]any { return map[string]any{"type": t} }
	props := func(kv ...any) map[string]any {
		m := map[string]any{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return map[string]any{"properties": m}
	}
	t := template{
		IndexPatterns: []string{index},
		Priority:      TemplatePriority,
		ComposedOf:    []string{CustomTemplate},
		Template: map[string]any{
			"mappings": map[string]any{
				"properties": map[string]any{
					"@timestamp": typ("date"),
					"message":    typ("text"),
					"job":        keyword,
					"host":       props("name", keyword),
					"agent":      props("name", keyword),
					"log": props(
						"file", props(
							"path", keyword,
							"device_id", keyword,
							"inode", keyword,
							"fingerprint", keyword,
							"generation", keyword,
						),
						"offset", typ("long"),
						"flags", keyword,
					),
					"labels": typ(e.objectType()),
					"kafka": props(
						"topic", keyword,
						"partition", typ("integer"),
						"offset", typ("long"),
					),
					"event": props("ingested", typ("date")),
					"json":  typ(e.objectType()),
				},
			},
		},
		Meta: map[string]any{
			"description": "logpipe log records: one document per log line, written by transfer; installed by transfer at every start, so put settings of your own (retention) in the component template " + CustomTemplate,
			"managed_by":  ManagedBy,
		},
	}
	if e == Elasticsearch {
		t.IgnoreMissing = []string{CustomTemplate}
	}
	b, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		panic(err) // static structure: cannot fail
	}
	return append(b, '\n')
}

// CustomTemplateBody is the body CustomTemplate is created with: nothing
// yet, for operators to fill.
func CustomTemplateBody() []byte {
	return []byte(`{"template":{},"_meta":{"description":"settings of your own for the logs-logpipe-* data streams, such as index.lifecycle.name; created empty by logpipe's transfer when absent, never changed by it"}}`)
}
