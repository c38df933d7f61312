package esbulk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/elastic/go-elasticsearch/v8/esapi"
)

// ErrTemplateConflict is returned by Maintain when the index template
// that the cluster would take for the data stream is not one transfer can
// write through: it makes no data stream. Retrying does not help; an
// operator has to change the templates.
var ErrTemplateConflict = errors.New("esbulk: index template conflict")

// IndexTemplate is what transfer reads of a composable index template.
type IndexTemplate struct {
	Name       string
	Patterns   []string
	Priority   int64
	DataStream bool   // it makes data streams
	ManagedBy  string // _meta.managed_by: "logpipe-transfer" for logpipe's own template and its copies
}

// String names the template as the log and errors do.
func (t IndexTemplate) String() string {
	return fmt.Sprintf("%s (patterns [%s], priority %d)", t.Name, strings.Join(t.Patterns, ", "), t.Priority)
}

// ChosenTemplate returns the index template that the cluster takes for a
// new index or data stream named index: of those whose patterns match the
// name, the one with the highest priority (two with the same priority
// cannot both match, the cluster refuses the second). It is nil when no
// template matches.
func (c *Client) ChosenTemplate(ctx context.Context, index string) (*IndexTemplate, error) {
	res, err := esapi.IndicesGetIndexTemplateRequest{}.Do(ctx, c.es)
	if err != nil {
		c.note(err)
		return nil, fmt.Errorf("listing index templates: %w", err)
	}
	defer drainClose(res.Body)
	if res.StatusCode == http.StatusNotFound {
		c.note(nil)
		return nil, nil // none at all
	}
	if res.StatusCode < 200 || res.StatusCode >= 300 {
		err := statusError(res)
		c.note(err)
		return nil, fmt.Errorf("listing index templates: %w", err)
	}
	var body struct {
		IndexTemplates []struct {
			Name          string `json:"name"`
			IndexTemplate struct {
				IndexPatterns json.RawMessage `json:"index_patterns"`
				Priority      int64           `json:"priority"`
				DataStream    json.RawMessage `json:"data_stream"`
				Meta          struct {
					ManagedBy string `json:"managed_by"`
				} `json:"_meta"`
			} `json:"index_template"`
		} `json:"index_templates"`
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, 64<<20)).Decode(&body); err != nil {
		err = fmt.Errorf("%w: GET /_index_template: %w", ErrResponse, err)
		c.note(err)
		return nil, err
	}
	c.note(nil)
	var chosen *IndexTemplate
	for _, t := range body.IndexTemplates {
		it := t.IndexTemplate
		patterns := stringOrList(it.IndexPatterns)
		if !matchesAny(patterns, index) || (chosen != nil && it.Priority <= chosen.Priority) {
			continue
		}
		chosen = &IndexTemplate{
			Name:       t.Name,
			Patterns:   patterns,
			Priority:   it.Priority,
			DataStream: len(it.DataStream) > 0 && string(it.DataStream) != "null",
			ManagedBy:  it.Meta.ManagedBy,
		}
	}
	return chosen, nil
}

// isOverlap tells whether err is the cluster refusing an index template
// because another one with the same priority matches the same names.
func isOverlap(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Status == http.StatusBadRequest &&
		strings.Contains(se.Reason, "multiple index templates may not match during index creation")
}

// stringOrList reads index_patterns, a list or a single string.
func stringOrList(raw json.RawMessage) []string {
	var list []string
	if json.Unmarshal(raw, &list) == nil {
		return list
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}
	}
	return nil
}

func matchesAny(patterns []string, name string) bool {
	for _, p := range patterns {
		if globMatch(p, name) {
			return true
		}
	}
	return false
}

// globMatch matches name against an index pattern, where * stands for any
// run of characters, as the cluster matches template patterns.
func globMatch(pattern, name string) bool {
	first, rest, found := strings.Cut(pattern, "*")
	if !found {
		return pattern == name
	}
	if !strings.HasPrefix(name, first) {
		return false
	}
	name = name[len(first):]
	for {
		if globMatch(rest, name) {
			return true
		}
		if name == "" {
			return false
		}
		name = name[1:]
	}
}
