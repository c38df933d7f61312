package record_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/logpipe/logpipe/common/record"
)

func sample() record.Record {
	return record.Record{
		Timestamp: time.Date(2026, 11, 21, 10, 0, 0, 123456789, time.UTC),
		Message:   "GET /api 200",
		Job:       "web-1",
		Host:      record.Host{Name: "node-a"},
		Agent:     record.Agent{Name: "node-a"},
		Log: record.Log{
			File: record.File{Path: "/var/log/web/access.log", DeviceID: "2049", Inode: "1835017",
				Fingerprint: "9f2c41d07a5b3e88"},
			Offset: 123456,
			Flags:  []string{record.FlagTruncated},
		},
		Labels: map[string]string{"env": "dev"},
	}
}

// The encoding is the contract's example, byte for byte.
func TestEncodingMatchesContract(t *testing.T) {
	want := `{"@timestamp":"2026-11-21T10:00:00.123456Z","message":"GET /api 200",` +
		`"job":"web-1","host":{"name":"node-a"},"agent":{"name":"node-a"},` +
		`"log":{"file":{"path":"/var/log/web/access.log","device_id":"2049","inode":"1835017",` +
		`"fingerprint":"9f2c41d07a5b3e88"},"offset":123456,"flags":["truncated"]},` +
		`"labels":{"env":"dev"}}`
	r := sample()
	got, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("encoding:\n got %s\nwant %s", got, want)
	}
}

// log.file.generation comes right after the fingerprint, and only when set.
func TestGenerationAfterFingerprint(t *testing.T) {
	r := sample()
	r.Log.File.Generation = "00c0ffee12345678"
	want := `"log":{"file":{"path":"/var/log/web/access.log","device_id":"2049","inode":"1835017",` +
		`"fingerprint":"9f2c41d07a5b3e88","generation":"00c0ffee12345678"},"offset":123456,`
	if got := string(r.AppendJSON(nil)); !strings.Contains(got, want) {
		t.Fatalf("encoding:\n got %s\nwant it to contain %s", got, want)
	}
	back, err := record.Decode(r.AppendJSON(nil))
	if err != nil {
		t.Fatal(err)
	}
	if back.Log.File.Generation != r.Log.File.Generation {
		t.Fatalf("generation %q decoded as %q", r.Log.File.Generation, back.Log.File.Generation)
	}
	r.Log.File.Generation = ""
	if got := string(r.AppendJSON(nil)); strings.Contains(got, `"generation"`) {
		t.Fatalf("an empty generation is written: %s", got)
	}
}

func TestOptionalFieldsOmitted(t *testing.T) {
	r := sample()
	r.Log.Flags = nil
	r.Labels = nil
	r.Log.File = record.File{Path: "/var/log/web/access.log"}
	got := string(r.AppendJSON(nil))
	if r.HasPosition() {
		t.Errorf("a record without device, inode and fingerprint has a source position")
	}
	for _, absent := range []string{`"flags"`, `"labels"`, `"device_id"`, `"inode"`, `"fingerprint"`, `"generation"`} {
		if strings.Contains(got, absent) {
			t.Errorf("%s present in %s", absent, got)
		}
	}
}

// The agent encodes every line with AppendJSON's layout: it must not allocate.
func TestAppendJSONDoesNotAllocate(t *testing.T) {
	r := sample()
	if !r.HasPosition() {
		t.Fatal("the contract's example has no source position")
	}
	r.Labels = nil // sorting labels takes one allocation
	buf := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(100, func() { buf = r.AppendJSON(buf[:0]) }); n != 0 {
		t.Fatalf("AppendJSON allocates %v times per record", n)
	}
}

func TestTimestampIsUTCWithMicroseconds(t *testing.T) {
	r := sample()
	r.Timestamp = time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("CET", 3600))
	got := string(r.AppendJSON(nil))
	if !strings.HasPrefix(got, `{"@timestamp":"2026-01-02T02:04:05.000000Z"`) {
		t.Fatalf("timestamp not UTC with 6 fraction digits: %s", got)
	}
}

func TestStringsEscapedLikeEncodingJSON(t *testing.T) {
	for name, msg := range map[string]string{
		"quotes and backslash": `say "hi" \ bye`,
		"control characters":   "a\tb\nc\rd\x00e\x1f",
		"html is not escaped":  "<a href='x'>&</a>",
		"unicode":              "héllo wörld 日本 🎉",
		"line separators":      "a\u2028b\u2029c",
	} {
		t.Run(name, func(t *testing.T) {
			r := sample()
			r.Message = msg
			var back record.Record
			if err := json.Unmarshal(r.AppendJSON(nil), &back); err != nil {
				t.Fatalf("not valid JSON: %v", err)
			}
			if back.Message != msg {
				t.Fatalf("round trip: got %q want %q", back.Message, msg)
			}
		})
	}
}

func TestInvalidUTF8IsReplacedNotDropped(t *testing.T) {
	r := sample()
	r.Message = "ok \xff\xfe bytes"
	data := r.AppendJSON(nil)
	back, err := record.Decode(data)
	if err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
	if want := "ok \ufffd\ufffd bytes"; back.Message != want {
		t.Fatalf("got %q want %q", back.Message, want)
	}
}

func TestRoundTrip(t *testing.T) {
	r := sample()
	r.Labels = map[string]string{"z": "1", "a": "2", "m": "3"}
	r.Log.File.Generation = "8000000000000001"
	back, err := record.Decode(r.AppendJSON(nil))
	if err != nil {
		t.Fatal(err)
	}
	r.Timestamp = r.Timestamp.Truncate(time.Microsecond)
	got, _ := json.Marshal(back)
	want, _ := json.Marshal(r)
	if string(got) != string(want) {
		t.Fatalf("round trip:\n got %s\nwant %s", got, want)
	}
	if !strings.Contains(string(want), `"labels":{"a":"2","m":"3","z":"1"}`) {
		t.Fatalf("labels not sorted: %s", want)
	}
}

func TestDecodeErrors(t *testing.T) {
	for name, in := range map[string]string{
		"not json":      `hello`,
		"bad timestamp": `{"@timestamp":"yesterday","message":"x"}`,
		"no timestamp":  `{"message":"x"}`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := record.Decode([]byte(in)); err == nil {
				t.Fatalf("Decode(%s) succeeded", in)
			}
		})
	}
}

func FuzzRoundTrip(f *testing.F) {
	f.Add("GET /api 200", "web-1", "/var/log/x.log", int64(0), "2049", "")
	f.Add("\xff\x00\"\\", "", "", int64(-1), "", "0123456789abcdef")
	f.Fuzz(func(t *testing.T, msg, job, path string, off int64, dev, gen string) {
		r := sample()
		r.Message, r.Job, r.Log.File.Path, r.Log.Offset = msg, job, path, off
		r.Log.File.DeviceID, r.Log.File.Generation = dev, gen
		data := r.AppendJSON(nil)
		if !json.Valid(data) {
			t.Fatalf("invalid JSON for %q: %s", msg, data)
		}
		back, err := record.Decode(data)
		if err != nil {
			t.Fatal(err)
		}
		if strings.ToValidUTF8(dev, "\ufffd") == dev && back.Log.File.DeviceID != dev {
			t.Fatalf("device_id %q -> %q", dev, back.Log.File.DeviceID)
		}
		if strings.ToValidUTF8(gen, "\ufffd") == gen && !strings.ContainsAny(gen, "\u2028\u2029") && back.Log.File.Generation != gen {
			t.Fatalf("generation %q -> %q", gen, back.Log.File.Generation)
		}
		if back.Log.Offset != off {
			t.Fatalf("offset %d != %d", back.Log.Offset, off)
		}
		if strings.ToValidUTF8(msg, "\ufffd") == msg && back.Message != msg && !strings.ContainsAny(msg, "\u2028\u2029") {
			t.Fatalf("valid message changed: %q -> %q", msg, back.Message)
		}
	})
}

func BenchmarkAppendJSON(b *testing.B) {
	r := sample()
	r.Message = strings.Repeat("x", 200)
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	b.SetBytes(int64(len(r.AppendJSON(nil))))
	for b.Loop() {
		buf = r.AppendJSON(buf[:0])
	}
}

func BenchmarkEncodingJSONForComparison(b *testing.B) {
	type plain record.Record
	r := plain(sample())
	r.Message = strings.Repeat("x", 200)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(r); err != nil {
			b.Fatal(err)
		}
	}
}
