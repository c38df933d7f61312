package hub

import (
	"bytes"
	"encoding/json"
	"time"

	"github.com/logpipe/logpipe/common/record"
)

// Entry is one log line of a job, ready to be sent: JSON holds the object
// that goes into an `entries` frame. Entries are immutable and shared by
// every subscriber that receives them.
type Entry struct {
	Partition int32
	Offset    int64
	TS        int64 // the line's time in Unix nanoseconds, to merge partitions by
	Job       string
	Line      string // the message, which grep filters on
	JSON      []byte // {"partition":…,"offset":…,"ts":…,"line":…,"host":…,"file":…,"labels":{…}}
}

// wireEntry is the contract's entry object (DESIGN.md, "livetail HTTP API").
type wireEntry struct {
	Partition int32             `json:"partition"`
	Offset    int64             `json:"offset"`
	TS        string            `json:"ts"`
	Line      string            `json:"line"`
	Host      string            `json:"host"`
	File      string            `json:"file"`
	Labels    map[string]string `json:"labels"`
}

var noLabels = map[string]string{}

// NewEntry builds the entry for the Kafka record at partition and offset with the given key
// (the job) and value. A value that is not a valid record is still delivered,
// as its raw text with the Kafka timestamp, so that nothing disappears
// silently; ok reports whether it decoded.
func NewEntry(partition int32, offset int64, key, value []byte, kafkaTime time.Time) (e *Entry, ok bool) {
	rec, err := record.Decode(value)
	ok = err == nil
	w := wireEntry{Partition: partition, Offset: offset, Labels: noLabels}
	ts := kafkaTime
	job := string(key)
	if ok {
		if job == "" {
			job = rec.Job
		}
		ts = rec.Timestamp
		w.TS = rec.Timestamp.UTC().Format(record.TimeLayout)
		w.Line = rec.Message
		w.Host = rec.Host.Name
		w.File = rec.Log.File.Path
		if len(rec.Labels) > 0 {
			w.Labels = rec.Labels
		}
	} else {
		w.TS = kafkaTime.UTC().Format(record.TimeLayout)
		w.Line = string(bytes.ToValidUTF8(value, []byte("\uFFFD")))
	}
	var buf bytes.Buffer
	buf.Grow(96 + len(w.Line) + len(w.Host) + len(w.File))
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(w) // cannot fail: strings and a string map
	b := buf.Bytes()
	return &Entry{Partition: partition, Offset: offset, TS: ts.UnixNano(), Job: job, Line: w.Line, JSON: b[:len(b)-1]}, ok
}
