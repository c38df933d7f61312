// Package document turns a Kafka log record into the Elasticsearch document
// that transfer indexes: the record itself plus kafka.{topic,partition,offset}
// and event.ingested and, when the message is a JSON object, json.* (see
// DESIGN.md, "Elasticsearch documents"). It also holds the index template
// whose mappings fit those documents.
package document

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/logpipe/logpipe/common/record"
)

// ErrInvalidRecord is returned for a Kafka value that is not a record.
var ErrInvalidRecord = errors.New("invalid record")

// Source is where a record was read: it becomes kafka.* and, for a record
// without a source position, the document _id.
type Source struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte // the record's key, for Builder.Seen; nil for keyless records
}

// AppendID appends the _id of a record without a source position,
// "<topic>-<partition>-<offset>" (see AppendRecordID). Kafka
// topic names use only [a-zA-Z0-9._-], so the result needs no escaping.
func (s Source) AppendID(dst []byte) []byte {
	dst = append(dst, s.Topic...)
	dst = append(dst, '-')
	dst = strconv.AppendInt(dst, int64(s.Partition), 10)
	dst = append(dst, '-')
	return strconv.AppendInt(dst, s.Offset, 10)
}

// ID returns the document _id.
func (s Source) ID() string { return string(s.AppendID(nil)) }

// Builder builds documents. The zero value does not parse JSON messages and
// stamps event.ingested with time.Now.
type Builder struct {
	// ParseJSON copies a message that is a JSON object into json.*.
	ParseJSON bool
	// Now stamps event.ingested; nil means time.Now.
	Now func() time.Time
	// Seen, when set, is told the job field and @timestamp of every
	// record that becomes a document, as it is built (the jobs catalogue
	// counts records so, without decoding a value twice).
	Seen func(src Source, job string, ts time.Time)
}

// Append decodes value as a record and appends its document, a single line
// of JSON, to dst. A value that is not a record leaves dst as it was and
// returns an error wrapping ErrInvalidRecord that says why.
func (b Builder) Append(dst, value []byte, src Source) ([]byte, error) {
	dst, _, err := b.AppendDocument(dst, nil, value, src)
	return dst, err
}

// AppendDocument is Append that also appends the document's _id to id
// (AppendRecordID). On error both are left as they were.
func (b Builder) AppendDocument(dst, id, value []byte, src Source) (doc, docID []byte, err error) {
	start := len(dst)
	r, ok := decodeCanonical(value)
	if ok {
		dst = r.AppendJSON(dst)
		ok = bytes.Equal(dst[start:], value)
	}
	if !ok {
		var err error
		if r, err = record.Decode(value); err != nil {
			return dst[:start], id, fmt.Errorf("%w: %w", ErrInvalidRecord, err)
		}
		dst = r.AppendJSON(dst[:start])
	}
	now := time.Now
	if b.Now != nil {
		now = b.Now
	}
	dst = dst[:len(dst)-1] // reopen the object
	dst = append(dst, `,"kafka":{"topic":"`...)
	dst = append(dst, src.Topic...)
	dst = append(dst, `","partition":`...)
	dst = strconv.AppendInt(dst, int64(src.Partition), 10)
	dst = append(dst, `,"offset":`...)
	dst = strconv.AppendInt(dst, src.Offset, 10)
	dst = append(dst, `},"event":{"ingested":"`...)
	dst = now().UTC().AppendFormat(dst, record.TimeLayout)
	dst = append(dst, `"}`...)
	if b.ParseJSON {
		dst = appendJSONMessage(dst, r.Message)
	}
	dst = append(dst, '}')
	if b.Seen != nil {
		b.Seen(src, r.Job, r.Timestamp)
	}
	return dst, AppendRecordID(id, &r, src), nil
}

// Bounds of json.*, so that the engine never refuses a document for it.
const (
	// maxJSONDepth is Elasticsearch's default depth_limit of a flattened
	// field: a message whose objects nest deeper gets no json.*.
	maxJSONDepth = 20
	// maxJSONLeafBytes bounds a leaf's dotted path plus its value. A
	// keyword term longer than 32766 bytes fails the document, and
	// OpenSearch's flat_object indexes "json.<path>=<value>" as one term;
	// longer leaves are left out of json.* (the message keeps them).
	maxJSONLeafBytes = 16 << 10
)

// appendJSONMessage appends `,"json":<message>` when message is a JSON
// object. The object is compacted so that the document stays on one line,
// as the bulk API's newline-delimited body requires, and kept within the
// bounds above.
func appendJSONMessage(dst []byte, message string) []byte {
	i := 0
	for i < len(message) && isSpace(message[i]) {
		i++
	}
	if i == len(message) || message[i] != '{' {
		return dst
	}
	mark := len(dst)
	dst = append(dst, `,"json":`...)
	start := len(dst)
	buf := bytes.NewBuffer(dst)
	if err := json.Compact(buf, []byte(message[i:])); err != nil {
		return dst[:mark]
	}
	dst = buf.Bytes()
	depth, longest := shape(dst[start:])
	switch {
	case depth > maxJSONDepth:
		return dst[:mark]
	case (depth+1)*(longest+1) <= maxJSONLeafBytes:
		return dst // no path plus value can be longer
	}
	// Rare: a long string somewhere. Write the object again without the
	// leaves that are too long.
	obj := bytes.Clone(dst[start:])
	out, err := appendBounded(dst[:start], obj)
	if err != nil {
		return dst[:mark]
	}
	return out
}

// shape scans compact JSON: how deep its objects nest, and the length of
// its longest string (keys included), escapes and quotes counted.
func shape(b []byte) (depth, longest int) {
	cur, inString, escaped, from := 0, false, false, 0
	for i, c := range b {
		switch {
		case inString && escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case inString && c == '"':
			inString = false
			longest = max(longest, i+1-from)
		case inString:
		case c == '"':
			inString, from = true, i
		case c == '{':
			cur++
			depth = max(depth, cur)
		case c == '}':
			cur--
		}
	}
	return depth, longest
}

// skip reads the rest of the value that starts with tok.
func skip(dec *json.Decoder, tok json.Token) error {
	if _, ok := tok.(json.Delim); !ok {
		return nil
	}
	for depth := 1; depth > 0; {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		switch t {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
	return nil
}

// appendBounded appends the JSON object obj to dst without the leaves
// whose dotted path and value together are longer than maxJSONLeafBytes.
func appendBounded(dst, obj []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(obj))
	dec.UseNumber()
	var walk func(dst []byte, path int, tok json.Token) ([]byte, bool, error)
	// walk appends the value that starts with tok, reached by a path of
	// path bytes; false means it was left out.
	walk = func(dst []byte, path int, tok json.Token) ([]byte, bool, error) {
		switch v := tok.(type) {
		case json.Delim:
			open, close := byte('{'), byte('}')
			if v == '[' {
				open, close = '[', ']'
			}
			dst = append(dst, open)
			n := 0
			for dec.More() {
				mark := len(dst)
				if n > 0 {
					dst = append(dst, ',')
				}
				sub := path
				if open == '{' {
					k, err := dec.Token()
					if err != nil {
						return dst, false, err
					}
					key, _ := k.(string)
					dst = record.AppendString(dst, key)
					dst = append(dst, ':')
					sub += 1 + len(key)
				}
				next, err := dec.Token()
				if err != nil {
					return dst, false, err
				}
				kept := false
				if sub > maxJSONLeafBytes {
					err = skip(dec, next) // a key too long for any leaf under it
				} else {
					dst, kept, err = walk(dst, sub, next)
				}
				if err != nil {
					return dst, false, err
				}
				if kept {
					n++
				} else {
					dst = dst[:mark]
				}
			}
			if _, err := dec.Token(); err != nil { // the closing delimiter
				return dst, false, err
			}
			return append(dst, close), true, nil
		case string:
			if path+len(v) > maxJSONLeafBytes {
				return dst, false, nil
			}
			return record.AppendString(dst, v), true, nil
		case json.Number:
			return append(dst, v...), path+len(v) <= maxJSONLeafBytes, nil
		case bool:
			return strconv.AppendBool(dst, v), true, nil
		case nil:
			return append(dst, "null"...), true, nil
		}
		return dst, false, fmt.Errorf("unexpected JSON token %v", tok)
	}
	tok, err := dec.Token()
	if err != nil {
		return dst, err
	}
	dst, _, err = walk(dst, len("json"), tok)
	return dst, err
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
