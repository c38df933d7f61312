package document

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"testing"
	"time"

	"github.com/logpipe/logpipe/common/record"
)

func positioned() record.Record {
	return record.Record{
		Timestamp: time.Date(2026, 11, 21, 10, 0, 0, 123456000, time.UTC),
		Message:   "GET /api 200",
		Job:       "web-1",
		Host:      record.Host{Name: "node-a"},
		Agent:     record.Agent{Name: "node-a"},
		Log: record.Log{File: record.File{Path: "/var/log/web/access.log", DeviceID: "2049", Inode: "1835017",
			Fingerprint: "9f2c41d07a5b3e88"}, Offset: 123456},
	}
}

var src = Source{Topic: "logs", Partition: 3, Offset: 42}

// idOf builds the document of r as transfer does and returns its _id.
func idOf(t *testing.T, r record.Record, s Source) string {
	t.Helper()
	_, id, err := Builder{Now: fixedNow}.AppendDocument(nil, nil, r.AppendJSON(nil), s)
	if err != nil {
		t.Fatal(err)
	}
	return string(id)
}

// The _id is computed as AppendRecordID documents it.
func TestRecordIDIsTheDocumentedHash(t *testing.T) {
	r := positioned()
	h := sha256.New()
	for _, in := range []string{"logpipe-line-1", "node-a", "2049", "1835017", "9f2c41d07a5b3e88", "123456", "GET /api 200"} {
		h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(in))))
		h.Write([]byte(in))
	}
	want := base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:20])
	if got := idOf(t, r, src); got != want || len(got) != 27 {
		t.Fatalf("_id %s, want %s", got, want)
	}
	// Pinned: a change of the inputs or the hash would index every line
	// resent across an upgrade twice.
	if want != "8GDdjsrpjBHqcsbBlmKUHcNNzIE" {
		t.Fatalf("_id of the contract's example changed: %s", want)
	}
}

func TestRecordIDEdgeCases(t *testing.T) {
	base := idOf(t, positioned(), src)
	for name, tc := range map[string]struct {
		change func(*record.Record, *Source)
		same   bool
	}{
		// A line resent after an agent crash: another Kafka record, read
		// at another time, maybe under a renamed path or a changed job.
		"resend": {func(r *record.Record, s *Source) {
			s.Partition, s.Offset = 0, 99999
			r.Timestamp = r.Timestamp.Add(time.Minute)
			r.Log.File.Path, r.Job, r.Host.Name = "/var/log/web/access.log.1", "web-2", "other"
			r.Labels = map[string]string{"env": "prod"}
		}, true},
		// Truncated (copytruncate) and written again, or a deleted file's
		// inode reused by a new file: same device, inode and offset, other
		// first bytes.
		"truncated and rewritten": {func(r *record.Record, _ *Source) { r.Log.File.Fingerprint = "0123456789abcdef" }, false},
		// Rewritten with the same first KiB: only the line itself differs.
		"rewritten after the same first KiB": {func(r *record.Record, _ *Source) { r.Message = "GET /api 500" }, false},
		// Two agents tailing one shared file (NFS) each index it: by design,
		// as for two agents reading two copies.
		"another agent": {func(r *record.Record, _ *Source) { r.Agent.Name = "node-b" }, false},
		"another file":  {func(r *record.Record, _ *Source) { r.Log.File.Inode = "1835018" }, false},
		"another disk":  {func(r *record.Record, _ *Source) { r.Log.File.DeviceID = "2050" }, false},
		"another line":  {func(r *record.Record, _ *Source) { r.Log.Offset++ }, false},
		// A line cut at --max-line-bytes is resent cut the same way; with
		// another limit after a restart it is another document.
		"cut differently": {func(r *record.Record, _ *Source) { r.Message = "GET /a"; r.Log.Flags = []string{record.FlagTruncated} }, false},
		// Length prefixes: moving bytes between inputs gives another _id.
		"bytes moved between inputs": {func(r *record.Record, _ *Source) {
			r.Log.File.DeviceID, r.Log.File.Inode = "20491", "835017"
		}, false},
	} {
		t.Run(name, func(t *testing.T) {
			r, s := positioned(), src
			tc.change(&r, &s)
			if got := idOf(t, r, s); (got == base) != tc.same {
				t.Fatalf("_id %s, original %s: same %v, want %v", got, base, got == base, tc.same)
			}
		})
	}
}

// A multiline event's position is its first line's offset: the event
// resent is the same document, whatever its flags.
func TestRecordIDMultiline(t *testing.T) {
	r := positioned()
	r.Message = "ERROR boom\n\tat a.B.c(B.java:1)"
	r.Log.Flags = []string{record.FlagMultiline}
	a := idOf(t, r, src)
	r.Timestamp = r.Timestamp.Add(time.Second)
	if b := idOf(t, r, Source{Topic: "logs", Partition: 1, Offset: 7}); a != b {
		t.Fatalf("resent event: _id %s, then %s", a, b)
	}
}

// Records without a full source position (other producers, or older
// agents) keep <topic>-<partition>-<offset>.
func TestRecordIDWithoutPosition(t *testing.T) {
	for name, clear := range map[string]func(*record.Record){
		"none":           func(r *record.Record) { r.Log.File = record.File{Path: r.Log.File.Path} },
		"no fingerprint": func(r *record.Record) { r.Log.File.Fingerprint = "" },
		"no inode":       func(r *record.Record) { r.Log.File.Inode = "" },
		"no device":      func(r *record.Record) { r.Log.File.DeviceID = "" },
		"no agent":       func(r *record.Record) { r.Agent.Name = "" },
	} {
		t.Run(name, func(t *testing.T) {
			r := positioned()
			clear(&r)
			if got := idOf(t, r, src); got != "logs-3-42" {
				t.Fatalf("_id %s, want logs-3-42", got)
			}
		})
	}
}

// The canonical decoder reads the source position, and a record with one
// goes through it unchanged.
func TestDocumentKeepsThePosition(t *testing.T) {
	r := positioned()
	v := r.AppendJSON(nil)
	got, ok := decodeCanonical(v)
	if !ok || got.Log.File != r.Log.File {
		t.Fatalf("canonical decode: ok %v, file %+v", ok, got.Log.File)
	}
	doc, err := Builder{Now: fixedNow}.Append(nil, v, src)
	if err != nil {
		t.Fatal(err)
	}
	m := decoded(t, string(doc))
	f := m["log"].(map[string]any)["file"].(map[string]any)
	if f["device_id"] != "2049" || f["inode"] != "1835017" || f["fingerprint"] != "9f2c41d07a5b3e88" {
		t.Fatalf("log.file %v", f)
	}
}

func BenchmarkRecordID(b *testing.B) {
	r := positioned()
	r.Message = string(make([]byte, 200))
	id := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		id = AppendRecordID(id[:0], &r, src)
	}
}

func generational() record.Record {
	r := positioned()
	r.Log.File.Generation = "5a0e1c3b9d2f4e67"
	return r
}

// A record with a generation: the _id is the documented hash of the
// generation instead of device and inode, under another version tag.
func TestRecordIDWithGeneration(t *testing.T) {
	r := generational()
	h := sha256.New()
	for _, in := range []string{"logpipe-line-2", "node-a", "5a0e1c3b9d2f4e67", "9f2c41d07a5b3e88", "123456", "GET /api 200"} {
		h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(in))))
		h.Write([]byte(in))
	}
	want := base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:20])
	if got := idOf(t, r, src); got != want || len(got) != 27 {
		t.Fatalf("_id %s, want %s", got, want)
	}
	// Records without a generation keep the _id they always had: the
	// documents older agents indexed are not indexed again when they resend.
	if got := idOf(t, positioned(), src); got != "8GDdjsrpjBHqcsbBlmKUHcNNzIE" {
		t.Fatalf("_id of a record without a generation changed: %s", got)
	}
}

func TestRecordIDGenerationEdgeCases(t *testing.T) {
	base := idOf(t, generational(), src)
	for name, tc := range map[string]struct {
		change func(*record.Record, *Source)
		same   bool
	}{
		"resend": {func(r *record.Record, s *Source) {
			s.Partition, s.Offset = 0, 99999
			r.Timestamp = r.Timestamp.Add(time.Minute)
			r.Log.File.Path, r.Job, r.Host.Name = "/var/log/web/access.log.1", "web-2", "other"
		}, true},
		// The disk came back under another device number: the agent kept
		// the file's generation, and its lines keep their _id.
		"another device number": {func(r *record.Record, _ *Source) { r.Log.File.DeviceID = "2050" }, true},
		// The same text at the same offset after a copytruncate, or in a
		// new file on a reused inode, with the same bytes before it: only
		// the generation tells the lines apart.
		"another generation": {func(r *record.Record, _ *Source) { r.Log.File.Generation = "5a0e1c3b9d2f4e68" }, false},
		// The same line from an agent without generations: another _id
		// (an upgrade in the middle of a file shows the lines the old
		// agent sent and the new one resends twice; see agent/README.md).
		"no generation":  {func(r *record.Record, _ *Source) { r.Log.File.Generation = "" }, false},
		"another agent":  {func(r *record.Record, _ *Source) { r.Agent.Name = "node-b" }, false},
		"another line":   {func(r *record.Record, _ *Source) { r.Log.Offset++ }, false},
		"another text":   {func(r *record.Record, _ *Source) { r.Message = "GET /api 500" }, false},
		"another prefix": {func(r *record.Record, _ *Source) { r.Log.File.Fingerprint = "0123456789abcdef" }, false},
		"bytes moved between inputs": {func(r *record.Record, _ *Source) {
			r.Agent.Name, r.Log.File.Generation = "node-a5", "a0e1c3b9d2f4e67"
		}, false},
	} {
		t.Run(name, func(t *testing.T) {
			r, s := generational(), src
			tc.change(&r, &s)
			if got := idOf(t, r, s); (got == base) != tc.same {
				t.Fatalf("_id %s, original %s: same %v, want %v", got, base, got == base, tc.same)
			}
		})
	}
}

// The canonical decoder reads the generation, and the document keeps it.
func TestDocumentKeepsTheGeneration(t *testing.T) {
	r := generational()
	v := r.AppendJSON(nil)
	got, ok := decodeCanonical(v)
	if !ok || got.Log.File != r.Log.File {
		t.Fatalf("canonical decode: ok %v, file %+v", ok, got.Log.File)
	}
	doc, err := Builder{Now: fixedNow}.Append(nil, v, src)
	if err != nil {
		t.Fatal(err)
	}
	f := decoded(t, string(doc))["log"].(map[string]any)["file"].(map[string]any)
	if f["generation"] != "5a0e1c3b9d2f4e67" {
		t.Fatalf("log.file %v", f)
	}
}
