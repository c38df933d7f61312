// Package record defines the Kafka record that agent produces and transfer and
// livetail consume: one JSON object per log line, ECS field names where ECS has
// one. The encoding is part of logpipe's external contract (see DESIGN.md,
// "Kafka record"), so it is written by hand and pinned by tests.
package record

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// Flags that may appear in Log.Flags.
const (
	FlagTruncated = "truncated" // the line was longer than the agent's --max-line-bytes
	FlagMultiline = "multiline" // several physical lines grouped into one event
)

// TimeLayout is the layout of @timestamp: RFC 3339, UTC, microseconds.
const TimeLayout = "2006-01-02T15:04:05.000000Z"

// Record is one log line (or one multiline event) as it travels through Kafka.
// The Kafka key is the job.
type Record struct {
	Timestamp time.Time         `json:"@timestamp"`
	Message   string            `json:"message"`
	Job       string            `json:"job"`
	Host      Host              `json:"host"`
	Agent     Agent             `json:"agent"`
	Log       Log               `json:"log"`
	Labels    map[string]string `json:"labels,omitempty"`
}

// Host is ECS host.*.
type Host struct {
	Name string `json:"name"`
}

// Agent is ECS agent.*.
type Agent struct {
	Name string `json:"name"`
}

// Log is ECS log.*: where the line came from.
type Log struct {
	File   File     `json:"file"`
	Offset int64    `json:"offset"`          // byte offset of the line's start in the file
	Flags  []string `json:"flags,omitempty"` // only when needed: FlagTruncated, FlagMultiline
}

// File is ECS log.file.*. DeviceID, Inode and Fingerprint name the file
// itself, independently of its path: with agent.name and log.offset they are
// the line's source position, from which transfer derives the document _id
// (see HasPosition). Generation, when present, names the file generation the
// line belongs to (see GenerationLen). Producers other than the agent leave
// them empty, and empty fields are not written.
type File struct {
	Path        string `json:"path"`
	DeviceID    string `json:"device_id,omitempty"`   // decimal st_dev
	Inode       string `json:"inode,omitempty"`       // decimal st_ino
	Fingerprint string `json:"fingerprint,omitempty"` // see FingerprintSize
	Generation  string `json:"generation,omitempty"`  // see GenerationLen
}

// GenerationLen is the length of log.file.generation: 16 lowercase hex
// digits, never all zeros, chosen at random by the agent when a file
// generation starts (a file it did not know, a new file at a known device
// and inode, the same file after a truncation) and kept with the file's
// offset, so that every line of that generation carries it, lines sent
// again after a crash included. Together with agent.name, the fingerprint
// and log.offset it tells a line from a line of another generation at the
// same offset with the same first bytes before it, which device, inode and
// fingerprint alone cannot. Records from agents that predate it have none.
const GenerationLen = 16

// FingerprintSize is how many of a file's first bytes log.file.fingerprint
// covers: the fingerprint of a line at offset o is the FNV-1a 64 hash, in 16
// lowercase hex digits, of the file's first min(o, FingerprintSize) bytes.
// It depends only on bytes that precede the line, so a line sent again
// after a crash carries the same fingerprint, however much of the file
// existed when it was first sent.
const FingerprintSize = 1024

// HasPosition reports whether the record carries its full source position:
// agent.name, log.file.device_id, log.file.inode and log.file.fingerprint
// (log.offset is always present).
func (r *Record) HasPosition() bool {
	return r.Agent.Name != "" && r.Log.File.DeviceID != "" && r.Log.File.Inode != "" && r.Log.File.Fingerprint != ""
}

// MarshalJSON encodes r exactly as the contract shows.
func (r Record) MarshalJSON() ([]byte, error) {
	return r.AppendJSON(make([]byte, 0, 256+len(r.Message))), nil
}

// AppendJSON appends r's JSON encoding to dst. It allocates nothing beyond
// growing dst, which makes it the encoder to use on hot paths. Invalid UTF-8
// is replaced with U+FFFD, never dropped. Labels are written in sorted order.
func (r *Record) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"@timestamp":"`...)
	dst = r.Timestamp.UTC().AppendFormat(dst, TimeLayout)
	dst = append(dst, `","message":`...)
	dst = AppendString(dst, r.Message)
	dst = append(dst, `,"job":`...)
	dst = AppendString(dst, r.Job)
	dst = append(dst, `,"host":{"name":`...)
	dst = AppendString(dst, r.Host.Name)
	dst = append(dst, `},"agent":{"name":`...)
	dst = AppendString(dst, r.Agent.Name)
	dst = append(dst, `},"log":{"file":{"path":`...)
	dst = AppendString(dst, r.Log.File.Path)
	if r.Log.File.DeviceID != "" {
		dst = append(dst, `,"device_id":`...)
		dst = AppendString(dst, r.Log.File.DeviceID)
	}
	if r.Log.File.Inode != "" {
		dst = append(dst, `,"inode":`...)
		dst = AppendString(dst, r.Log.File.Inode)
	}
	if r.Log.File.Fingerprint != "" {
		dst = append(dst, `,"fingerprint":`...)
		dst = AppendString(dst, r.Log.File.Fingerprint)
	}
	if r.Log.File.Generation != "" {
		dst = append(dst, `,"generation":`...)
		dst = AppendString(dst, r.Log.File.Generation)
	}
	dst = append(dst, `},"offset":`...)
	dst = strconv.AppendInt(dst, r.Log.Offset, 10)
	if len(r.Log.Flags) > 0 {
		dst = append(dst, `,"flags":[`...)
		for i, f := range r.Log.Flags {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = AppendString(dst, f)
		}
		dst = append(dst, ']')
	}
	dst = append(dst, '}')
	if len(r.Labels) > 0 {
		dst = append(dst, `,"labels":{`...)
		for i, k := range sortedKeys(r.Labels) {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = AppendString(dst, k)
			dst = append(dst, ':')
			dst = AppendString(dst, r.Labels[k])
		}
		dst = append(dst, '}')
	}
	return append(dst, '}')
}

// UnmarshalJSON decodes a record and checks the fields every consumer relies on.
func (r *Record) UnmarshalJSON(data []byte) error {
	type plain Record // no methods: avoids recursion
	var p struct {
		plain
		Timestamp string `json:"@timestamp"`
	}
	if err := json.Unmarshal(data, &p); err != nil {
		return fmt.Errorf("record: %w", err)
	}
	ts, err := time.Parse(time.RFC3339Nano, p.Timestamp)
	if err != nil {
		return fmt.Errorf("record: @timestamp %q: %w", p.Timestamp, err)
	}
	*r = Record(p.plain)
	r.Timestamp = ts.UTC()
	return nil
}

// Decode parses a record from a Kafka value.
func Decode(value []byte) (Record, error) {
	var r Record
	err := r.UnmarshalJSON(value)
	return r, err
}

// HasFlag reports whether the record carries flag f.
func (r *Record) HasFlag(f string) bool {
	for _, x := range r.Log.Flags {
		if x == f {
			return true
		}
	}
	return false
}

const hex = "0123456789abcdef"

// AppendString appends s as a JSON string, escaped as encoding/json does
// (without HTML escaping), with invalid UTF-8 replaced by U+FFFD and U+2028
// and U+2029 escaped. It is the string encoder of AppendJSON, exported for
// encoders that specialise a record's layout on a hot path.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		// Log lines are mostly plain ASCII: skip eight such bytes at a time.
		for i+8 <= len(s) && plain8(load8(s, i)) {
			i += 8
		}
		if i >= len(s) {
			break
		}
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xf])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		// U+2028 and U+2029 are valid JSON but break JavaScript; escape them as encoding/json does.
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[c&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// load8 reads s[i:i+8] as a little-endian word (the compiler makes it one load).
func load8(s string, i int) uint64 {
	_ = s[i+7]
	return uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
		uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
}

// plain8 reports whether none of the eight bytes in w needs escaping: all
// are ASCII, none below 0x20, none '"' or '\\'.
func plain8(w uint64) bool {
	hasZero := func(v uint64) uint64 { return (v - ones) & ^v & highs }
	return (w&highs)|((w-0x20*ones) & ^w & highs)|hasZero(w^('"'*ones))|hasZero(w^('\\'*ones)) == 0
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	// Insertion sort: label sets are small, and this avoids an import and an allocation.
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}
