package hub

import (
	"crypto/sha256"
	"encoding/binary"
	"testing"
	"time"

	"github.com/logpipe/logpipe/common/record"
)

func sourceRecord(gen string) record.Record {
	return record.Record{Agent: record.Agent{Name: "node-a"}, Log: record.Log{File: record.File{
		Path: "/var/log/web/access.log", DeviceID: "2049", Inode: "1835017", Fingerprint: "9f2c41d07a5b3e88", Generation: gen}}}
}

// A record with a generation: src is the documented hash of the
// generation instead of device and inode.
func TestSourceIDWithGeneration(t *testing.T) {
	r := sourceRecord("5a0e1c3b9d2f4e67")
	var b []byte
	for _, in := range []string{"logpipe-source-2", "node-a", "5a0e1c3b9d2f4e67", "9f2c41d07a5b3e88"} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(in)))
		b = append(b, in...)
	}
	sum := sha256.Sum256(b)
	if got, want := SourceID(&r), binary.BigEndian.Uint64(sum[:8]); got != want {
		t.Fatalf("src %x, want %x", got, want)
	}
	// Records without a generation keep the src they always had (pinned in
	// TestNewEntrySource too): a viewer that compares src across a livetail
	// upgrade sees the same sources.
	old := sourceRecord("")
	if got := SourceString(SourceID(&old)); got != "32ce81ed55dc59c9" {
		t.Fatalf("src of a record without a generation changed: %s", got)
	}
}

func TestSourceIDGeneration(t *testing.T) {
	base := sourceRecord("5a0e1c3b9d2f4e67")
	for name, tc := range map[string]struct {
		change func(*record.Record)
		same   bool
	}{
		// The disk came back under another device number: the agent kept
		// the file's generation, and a resend is still skipped.
		"another device number": {func(r *record.Record) { r.Log.File.DeviceID = "2050" }, true},
		"renamed":               {func(r *record.Record) { r.Log.File.Path += ".1" }, true},
		// After a copytruncate, or in a new file on a reused inode, the
		// first line has the same fingerprint: only the generation tells
		// it from the first line before, which a session must not skip.
		"another generation": {func(r *record.Record) { r.Log.File.Generation = "5a0e1c3b9d2f4e68" }, false},
		"no generation":      {func(r *record.Record) { r.Log.File.Generation = "" }, false},
		"another agent":      {func(r *record.Record) { r.Agent.Name = "node-b" }, false},
		"another prefix":     {func(r *record.Record) { r.Log.File.Fingerprint = "0123456789abcdef" }, false},
		"bytes moved between inputs": {func(r *record.Record) {
			r.Agent.Name, r.Log.File.Generation = "node-a5", "a0e1c3b9d2f4e67"
		}, false},
	} {
		t.Run(name, func(t *testing.T) {
			r := base
			tc.change(&r)
			if got := SourceID(&r) == SourceID(&base); got != tc.same {
				t.Fatalf("same src %v, want %v", got, tc.same)
			}
		})
	}
}

// An entry built from a search index document (the record plus the
// fields transfer adds: kafka.*, event.ingested, json.*) is the same bytes
// as one built from the Kafka record, so that lines from the archive and
// from Kafka are alike to the client.
func TestNewEntryFromIndexDocument(t *testing.T) {
	rec := `"@timestamp":"2026-11-21T10:00:00.123456Z","message":"GET /api 200","job":"web-1","host":{"name":"node-a"},"agent":{"name":"node-a"},` +
		`"log":{"file":{"path":"/var/log/web/access.log","device_id":"2049","inode":"1835017","fingerprint":"9f2c41d07a5b3e88","generation":"g1"},"offset":42},"labels":{"env":"dev"}`
	fromKafka, ok := NewEntry(3, 7, []byte("web-1"), []byte("{"+rec+"}"), time.Time{})
	if !ok {
		t.Fatal("record not decoded")
	}
	doc := "{" + rec + `,"kafka":{"topic":"logs","partition":3,"offset":7,"key":"web-1"},"event":{"ingested":"2026-11-21T10:00:01Z"},"json":{"status":200,"path":"/api"}}`
	fromIndex, ok := NewEntry(3, 7, []byte("web-1"), []byte(doc), time.Time{})
	if !ok {
		t.Fatal("index document not decoded")
	}
	if string(fromIndex.JSON) != string(fromKafka.JSON) || fromIndex.Src != fromKafka.Src || fromIndex.Pos != fromKafka.Pos || fromIndex.TS != fromKafka.TS {
		t.Fatalf("from the index %s (src %x pos %d), from Kafka %s (src %x pos %d)", fromIndex.JSON, fromIndex.Src, fromIndex.Pos, fromKafka.JSON, fromKafka.Src, fromKafka.Pos)
	}
}
