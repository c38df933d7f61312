package esbulk

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/elastic/go-elasticsearch/v8/esapi"
)

// AppendCreate appends the action line of a create of _id id into index to
// a bulk body. Neither needs escaping: index names and logpipe's ids use no
// characters that JSON strings escape.
func AppendCreate(dst []byte, index string, id []byte) []byte {
	dst = append(dst, `{"create":{"_index":"`...)
	dst = append(dst, index...)
	dst = append(dst, `","_id":"`...)
	dst = append(dst, id...)
	return append(dst, "\"}}\n"...)
}

// Item is the outcome of one action of a bulk request.
type Item struct {
	Status int        `json:"status"`
	Error  *ItemError `json:"error,omitempty"`
}

// ItemError is Elasticsearch's description of why an item failed.
type ItemError struct {
	Type     string     `json:"type"`
	Reason   string     `json:"reason"`
	Index    string     `json:"index,omitempty"` // the concrete index, when the error names one
	CausedBy *ItemError `json:"caused_by,omitempty"`
}

// OK reports a 2xx item.
func (it Item) OK() bool { return it.Status >= 200 && it.Status < 300 }

// ErrorType is Elasticsearch's error.type for the item, or "".
func (it Item) ErrorType() string {
	if it.Error == nil {
		return ""
	}
	return it.Error.Type
}

// Bulk sends body, a bulk request of n actions, and appends the outcome of
// each action, in order, to out[:0]. A transport failure is returned as is,
// a non-2xx answer to the whole request as a *StatusError, and a response
// whose items do not match the request wraps ErrResponse.
func (c *Client) Bulk(ctx context.Context, body []byte, n int, out []Item) ([]Item, error) {
	res, err := esapi.BulkRequest{Body: bytes.NewReader(body)}.Do(ctx, c.es)
	if err != nil {
		c.note(err)
		return out[:0], err
	}
	defer drainClose(res.Body)
	if res.StatusCode < 200 || res.StatusCode >= 300 {
		err := statusError(res)
		c.note(err)
		return out[:0], err
	}
	out, err = readItems(res.Body, n, out[:0])
	c.note(err)
	return out, err
}

// readItems reads a bulk response body. When the response says
// "errors":false before its items, every item succeeded and the items are
// not decoded one by one.
func readItems(r io.Reader, n int, out []Item) ([]Item, error) {
	dec := json.NewDecoder(r)
	if err := expectDelim(dec, '{'); err != nil {
		return out, err
	}
	errorsKnown, anyErrors := false, true
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return out, fmt.Errorf("%w: %w", ErrResponse, err)
		}
		switch key, _ := tok.(string); key {
		case "errors":
			if err := dec.Decode(&anyErrors); err != nil {
				return out, fmt.Errorf("%w: errors: %w", ErrResponse, err)
			}
			errorsKnown = true
		case "items":
			if errorsKnown && !anyErrors {
				for range n {
					out = append(out, Item{Status: 201})
				}
				return out, nil
			}
			if out, err = decodeItems(dec, out); err != nil {
				return out, err
			}
			if len(out) != n {
				return out, fmt.Errorf("%w: %d items for %d actions", ErrResponse, len(out), n)
			}
			return out, nil
		default:
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return out, fmt.Errorf("%w: %s: %w", ErrResponse, key, err)
			}
		}
	}
	return out, fmt.Errorf("%w: no items", ErrResponse)
}

func decodeItems(dec *json.Decoder, out []Item) ([]Item, error) {
	if err := expectDelim(dec, '['); err != nil {
		return out, err
	}
	for dec.More() {
		// Each item is {"<op>": {...}} with one op.
		var elem map[string]Item
		if err := dec.Decode(&elem); err != nil {
			return out, fmt.Errorf("%w: item %d: %w", ErrResponse, len(out), err)
		}
		if len(elem) != 1 {
			return out, fmt.Errorf("%w: item %d has %d operations", ErrResponse, len(out), len(elem))
		}
		for _, it := range elem {
			out = append(out, it)
		}
	}
	return out, expectDelim(dec, ']')
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrResponse, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("%w: want %q, got %v", ErrResponse, want, tok)
	}
	return nil
}
