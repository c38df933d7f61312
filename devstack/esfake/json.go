package esfake

import (
	"encoding/json"

	"github.com/logpipe/logpipe/common/record"
)

// obj is a JSON object whose keys keep the order they are given in, so that
// responses read like Elasticsearch's.
type obj []kv

type kv struct {
	k string
	v any
}

func (o obj) MarshalJSON() ([]byte, error) {
	b := append(make([]byte, 0, 64), '{')
	for i, f := range o {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, f.k)
		b = append(b, ':')
		v, err := json.Marshal(f.v)
		if err != nil {
			return nil, err
		}
		b = append(b, v...)
	}
	return append(b, '}'), nil
}

// appendString appends s to b as a JSON string, escaped as encoding/json
// does (invalid UTF-8 becomes U+FFFD).
func appendString(b []byte, s string) []byte { return record.AppendString(b, s) }
