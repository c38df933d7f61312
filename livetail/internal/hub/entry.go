package hub

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
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
	// Src names the line's source file generation, when the record carries
	// its source position (record.HasPosition): see SourceID; never 0.
	// It is 0 for records without a source position (other producers).
	Src  uint64
	Pos  int64  // log.offset, the line's place in its source; meaningful when Src is not 0
	JSON []byte // {"partition":…,"offset":…,"job":…,"ts":…,"line":…,"host":…,"file":…,"labels":{…}[,"src":…,"pos":…]}
}

// wireEntry is the contract's entry object (DESIGN.md, "livetail HTTP API").
type wireEntry struct {
	Partition int32             `json:"partition"`
	Offset    int64             `json:"offset"`
	Job       string            `json:"job"`
	TS        string            `json:"ts"`
	Line      string            `json:"line"`
	Host      string            `json:"host"`
	File      string            `json:"file"`
	Labels    map[string]string `json:"labels"`
	Src       string            `json:"src,omitempty"` // SourceString(SourceID)
	Pos       *int64            `json:"pos,omitempty"`
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
	var src uint64
	var pos int64
	if ok {
		if job == "" {
			job = rec.Job
		}
		w.Job = job
		ts = rec.Timestamp
		w.TS = rec.Timestamp.UTC().Format(record.TimeLayout)
		w.Line = rec.Message
		w.Host = rec.Host.Name
		w.File = rec.Log.File.Path
		if len(rec.Labels) > 0 {
			w.Labels = rec.Labels
		}
		if rec.HasPosition() {
			src = SourceID(&rec)
			pos = rec.Log.Offset
			w.Src = SourceString(src)
			w.Pos = &pos
		}
	} else {
		w.Job = job
		w.TS = kafkaTime.UTC().Format(record.TimeLayout)
		w.Line = string(bytes.ToValidUTF8(value, []byte("\uFFFD")))
	}
	var buf bytes.Buffer
	buf.Grow(96 + len(w.Line) + len(w.Host) + len(w.File))
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(w) // cannot fail: strings and a string map
	b := buf.Bytes()
	return &Entry{Partition: partition, Offset: offset, TS: ts.UnixNano(), Job: job, Line: w.Line, Src: src, Pos: pos, JSON: b[:len(b)-1]}, ok
}

// SourceString writes a source id as the entries' `src`: 16 lowercase hex digits.
func SourceString(id uint64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], id)
	return hex.EncodeToString(b[:])
}

// sourceVersionGen starts the hashed input of the source id of a record
// with a generation, so that it cannot equal the id of one without.
const sourceVersionGen = "logpipe-source-2"

// SourceID returns the id of the file generation a record's line was read
// from, the entries' `src`: the first 8 bytes (big endian) of the SHA-256
// of these inputs, each written as its length in 4 bytes big endian
// followed by its bytes; 1 instead of 0. For a record with
// log.file.generation:
//
//	"logpipe-source-2", agent.name, log.file.generation, log.file.fingerprint
//
// and for one without (agents that predate generations):
//
//	agent.name, log.file.device_id, log.file.inode, log.file.fingerprint
//
// The same line sent twice by the agent (after a crash) has the same id
// and log.offset, which is how a session skips it. A file truncated and
// written again, or a new file on a reused inode, starts a new generation
// and so has another id, even where its first bytes are the old ones (the
// fingerprint of a first line covers no byte); without a generation, only
// another fingerprint tells it apart. Device and inode are left out of a
// record with a generation, so that a file whose device number changed
// keeps its id. It is stable across livetail processes and versions of
// this contract.
func SourceID(r *record.Record) uint64 {
	var buf [256]byte
	b := buf[:0]
	f := &r.Log.File
	ins := [...]string{r.Agent.Name, f.DeviceID, f.Inode, f.Fingerprint}
	if f.Generation != "" {
		ins = [...]string{sourceVersionGen, r.Agent.Name, f.Generation, f.Fingerprint}
	}
	for _, in := range ins {
		b = binary.BigEndian.AppendUint32(b, uint32(len(in)))
		b = append(b, in...)
	}
	sum := sha256.Sum256(b)
	if id := binary.BigEndian.Uint64(sum[:8]); id != 0 {
		return id
	}
	return 1
}
