package document

import "encoding/json"

// TemplatePriority is above the priority (100) of the built-in templates that
// Elasticsearch ships for logs-*-*, so that ours wins for our data stream.
const TemplatePriority = 200

// Template returns the body of the composable index template for the data
// stream named index: a data stream whose mappings fit the documents that
// Builder makes. labels.* and json.* strings are mapped as keyword.
func Template(index string) []byte {
	keyword := map[string]any{"type": "keyword"}
	props := func(kv ...any) map[string]any {
		m := map[string]any{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return map[string]any{"properties": m}
	}
	typ := func(t string) map[string]any { return map[string]any{"type": t} }
	t := map[string]any{
		"index_patterns": []string{index},
		"data_stream":    map[string]any{},
		"priority":       TemplatePriority,
		"template": map[string]any{
			"mappings": map[string]any{
				"dynamic_templates": []any{
					map[string]any{"labels": map[string]any{
						"path_match": "labels.*",
						"mapping":    keyword,
					}},
				},
				"properties": map[string]any{
					"@timestamp": typ("date"),
					"message":    typ("text"),
					"job":        keyword,
					"host":       props("name", keyword),
					"agent":      props("name", keyword),
					"log": props(
						"file", props("path", keyword),
						"offset", typ("long"),
						"flags", keyword,
					),
					"labels": map[string]any{"type": "object", "dynamic": true},
					"kafka": props(
						"topic", keyword,
						"partition", typ("integer"),
						"offset", typ("long"),
					),
					"event": props("ingested", typ("date")),
					"json":  map[string]any{"type": "object", "dynamic": true},
				},
			},
		},
		"_meta": map[string]any{"managed_by": "logpipe-transfer"},
	}
	b, err := json.Marshal(t)
	if err != nil {
		panic(err) // static structure: cannot fail
	}
	return b
}
