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

// Deliver is Publish for records not decoded yet: each record whose job has
// a subscriber is decoded (once) and queued to them; the others are skipped
// without decoding their value. A record's job is its key, or for a keyless
// record the top-level "job" member of its value, found by a scan that
// does not decode the rest (RecordJob). The jobs list learns the jobs of
// every record, skipped or not.
//
// Decoding is the costly part, and it runs outside the partition's lock,
// which the partition's subscribers and sessions take too (Subscribe,
// Close, Next). The records are offered under the lock, so that a
// subscriber joining meanwhile cannot miss one: a record whose job found a
// subscriber only then is decoded there.
func (h *Hub) Deliver(p int32, recs []Record, next int64) Delivered {
	pt := h.part(p)
	ds := make([]delivery, len(recs))
	seen := make([]seenJob, 0, len(recs))
	for i := range recs {
		ds[i].job = RecordJob(recs[i].Key, recs[i].Value)
		if ds[i].job != "" {
			seen = append(seen, seenJob{job: ds[i].job, offset: recs[i].Offset})
		}
	}
	var d Delivered
	pt.watched(ds)
	for i := range ds {
		if ds[i].watched {
			d.decode(&ds[i], p, &recs[i])
		}
	}
	h.offerAll(pt, ds, recs, next, &d)
	h.jobs.sawJobs(p, seen)
	return d
}

// offerAll queues each delivery to the subscribers of its job, decoding
// those whose job found a subscriber after watched, and records that pt
// continues at next; it holds pt's lock meanwhile.
func (h *Hub) offerAll(pt *partition, ds []delivery, recs []Record, next int64, d *Delivered) {
	call := h.calls.Add(1)
	pt.mu.Lock()
	defer pt.mu.Unlock()
	for i := range ds {
		if len(pt.subs[ds[i].job]) == 0 {
			d.Skipped++
			continue
		}
		if ds[i].entry == nil { // its job's first subscriber joined after watched
			d.decode(&ds[i], pt.id, &recs[i])
		}
		e := ds[i].entry
		for s := range pt.subs[e.Job] {
			if s.offer(e, call) {
				pt.wake = append(pt.wake, s)
			}
		}
	}
	h.advanceAndWakeLocked(pt, next)
}

// delivery is a record on its way through Deliver.
type delivery struct {
	job     string // RecordJob
	watched bool   // the job had a subscriber before decoding
	entry   *Entry // decoded; nil until then
}

// watched marks the deliveries whose job has a subscriber now.
func (pt *partition) watched(ds []delivery) {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	for i := range ds {
		ds[i].watched = len(pt.subs[ds[i].job]) > 0
	}
}

// decode decodes r, of partition p, into dl's entry and counts it.
func (d *Delivered) decode(dl *delivery, p int32, r *Record) {
	e, ok := NewEntry(p, r.Offset, r.Key, r.Value, r.Time)
	dl.entry = e
	d.Decoded++
	if !ok {
		d.Undecodable++
	}
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
