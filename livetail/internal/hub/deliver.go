package hub

import (
	"bytes"
	"encoding/json"
	"time"
)

// Record is a Kafka record of the log topic as the partition consumers read
// it, before it is decoded: Deliver decodes only those a subscriber wants.
type Record struct {
	Offset int64
	Key    []byte // the job, for the agent and keyed producers; empty for others
	Value  []byte
	Time   time.Time // Kafka's timestamp
}

// Delivered counts what one Deliver call did with its records.
type Delivered struct {
	Decoded     int // records decoded into entries (each once, whatever its subscribers)
	Skipped     int // records of jobs nobody subscribes to, left undecoded
	Undecodable int // decoded records whose value is not a logpipe record
}

// Deliver is Publish for records not decoded yet: under the partition's
// lock, so that a subscriber joining meanwhile cannot miss one, each record
// whose job has a subscriber is decoded (once) and queued to them; the
// others are skipped without decoding their value. A record's job is its
// key, or for a keyless record the top-level "job" member of its value,
// found by a scan that does not decode the rest (RecordJob). The jobs
// list learns the jobs of every record, skipped or not.
func (h *Hub) Deliver(p int32, recs []Record, next int64) Delivered {
	var d Delivered
	pt := h.part(p)
	call := h.calls.Add(1)
	seen := make([]seenJob, 0, len(recs))
	pt.mu.Lock()
	for i := range recs {
		r := &recs[i]
		job := RecordJob(r.Key, r.Value)
		if job != "" {
			seen = append(seen, seenJob{job: job, offset: r.Offset})
		}
		if len(pt.subs[job]) == 0 {
			d.Skipped++
			continue
		}
		e, ok := NewEntry(p, r.Offset, r.Key, r.Value, r.Time)
		d.Decoded++
		if !ok {
			d.Undecodable++
		}
		for s := range pt.subs[e.Job] {
			if s.offer(e, call) {
				pt.wake = append(pt.wake, s)
			}
		}
	}
	h.advanceAndWakeLocked(pt, next)
	pt.mu.Unlock()
	h.jobs.sawJobs(p, seen)
	return d
}

// seenJob is a record's job and offset, for the jobs list.
type seenJob struct {
	job    string
	offset int64
}

// RecordJob returns the job a record belongs to without decoding its
// value: the key when there is one, else the top-level "job" member of the
// value when it is a JSON string, else "". It agrees with NewEntry on every
// value that is a record; a value that is not JSON may yield a job here
// that NewEntry does not give (it then routes the raw text nowhere).
func RecordJob(key, value []byte) string {
	if len(key) > 0 {
		return string(key)
	}
	return topLevelJob(value)
}

// topLevelJob scans a JSON object for its member "job" at depth 1 and
// returns its string value, skipping nested objects, arrays and strings
// without decoding them. It returns "" for anything else.
func topLevelJob(v []byte) string {
	depth := 0
	wantValue := false // the last top-level key read was "job"
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '{', '[':
			if wantValue { // "job" holds an object or an array
				return ""
			}
			depth++
		case '}', ']':
			depth--
			if depth <= 0 {
				return ""
			}
		case '"':
			end := stringEnd(v, i)
			if end < 0 {
				return ""
			}
			if depth == 1 {
				str := v[i : end+1]
				if wantValue {
					return jsonString(str)
				}
				if afterColon(v, end+1) && bytes.Equal(str, []byte(`"job"`)) {
					wantValue = true
				}
			}
			i = end
		case ':', ' ', '\t', '\n', '\r':
		default:
			if wantValue { // "job" holds a number, true, null...
				return ""
			}
		}
	}
	return ""
}

// stringEnd returns the index of the quote closing the JSON string that
// starts at v[i], or -1.
func stringEnd(v []byte, i int) int {
	for j := i + 1; j < len(v); j++ {
		switch v[j] {
		case '\\':
			j++
		case '"':
			return j
		}
	}
	return -1
}

// afterColon reports whether the next non-space byte from i is ':' (the
// string before it is a key).
func afterColon(v []byte, i int) bool {
	for ; i < len(v); i++ {
		switch v[i] {
		case ' ', '\t', '\n', '\r':
		case ':':
			return true
		default:
			return false
		}
	}
	return false
}

// jsonString returns the text of the quoted JSON string s, decoding
// escapes only when it has some.
func jsonString(s []byte) string {
	if bytes.IndexByte(s, '\\') < 0 {
		return string(s[1 : len(s)-1])
	}
	var out string
	if json.Unmarshal(s, &out) != nil {
		return ""
	}
	return out
}
