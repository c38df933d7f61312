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

// Source is where a record was read: it becomes kafka.* and the document _id.
type Source struct {
	Topic     string
	Partition int32
	Offset    int64
}

// AppendID appends the document _id, "<topic>-<partition>-<offset>". Kafka
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
}

// Append decodes value as a record and appends its document, a single line
// of JSON, to dst. A value that is not a record leaves dst as it was and
// returns an error wrapping ErrInvalidRecord that says why.
func (b Builder) Append(dst, value []byte, src Source) ([]byte, error) {
	start := len(dst)
	r, ok := decodeCanonical(value)
	if ok {
		dst = r.AppendJSON(dst)
		ok = bytes.Equal(dst[start:], value)
	}
	if !ok {
		var err error
		if r, err = record.Decode(value); err != nil {
			return dst[:start], fmt.Errorf("%w: %w", ErrInvalidRecord, err)
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
	return dst, nil
}

// appendJSONMessage appends `,"json":<message>` when message is a JSON
// object. The object is compacted so that the document stays on one line,
// as the bulk API's newline-delimited body requires.
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
	buf := bytes.NewBuffer(dst)
	if err := json.Compact(buf, []byte(message[i:])); err != nil {
		return dst[:mark]
	}
	return buf.Bytes()
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
