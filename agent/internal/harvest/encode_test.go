package harvest

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/logpipe/logpipe/common/record"
)

func template(labels map[string]string) record.Record {
	return record.Record{
		Job:   "web-1",
		Host:  record.Host{Name: "node \"a\""},
		Agent: record.Agent{Name: "agent\u2028x"},
		Log: record.Log{File: record.File{Path: "/var/log/a\\b.log", DeviceID: "2049", Inode: "1835017",
			Fingerprint: fpPlaceholder, Generation: "0123456789abcdef"}},
		Labels: labels,
	}
}

// FuzzEncoderMatchesRecord pins the fast encoder to record.AppendJSON.
func FuzzEncoderMatchesRecord(f *testing.F) {
	f.Add([]byte("GET /api 200"), int64(123), uint8(0), "dev", uint64(0x9f2c41d07a5b3e88))
	f.Add([]byte("tab\there \"quoted\" back\\slash \x00 \x1f \u2028 é \xff\xfe end"), int64(0), uint8(3), "", uint64(0))
	f.Add([]byte(strings.Repeat("abcdefgh", 9)+"\x7f\x80"), int64(1<<40), uint8(1), "a\"b", uint64(1<<63))
	f.Fuzz(func(t *testing.T, msg []byte, off int64, flagSel uint8, label string, fp uint64) {
		labels := map[string]string{"env": label, "zone": "z1"}
		if label == "" {
			labels = nil
		}
		rec := template(labels)
		if flagSel&4 != 0 {
			rec.Log.File.Generation = "" // a file first read by an agent without generations
		}
		enc := newEncoder(rec)
		flags := [][]string{nil, flagsTruncated, flagsMultiline, flagsBoth}[flagSel%4]
		now := time.Date(2026, 11, 21, 10, 0, 0, 123456789, time.FixedZone("x", 3600))
		got := enc.append(nil, now, msg, off, fp, flags)
		rec.Timestamp, rec.Message, rec.Log.Offset, rec.Log.Flags = now, string(msg), off, flags
		rec.Log.File.Fingerprint = fingerprintString(fp)
		want := rec.AppendJSON(nil)
		if !bytes.Equal(got, want) {
			t.Fatalf("encoder differs from record.AppendJSON:\n got %s\nwant %s", got, want)
		}
	})
}

func BenchmarkEncoder(b *testing.B) {
	msg := []byte("2026-11-21T10:00:00.000Z INFO bench line 12345 " + strings.Repeat("abcdefghij", 15))
	rec := template(map[string]string{"env": "dev"})
	b.Run("fast", func(b *testing.B) {
		enc := newEncoder(rec)
		buf := make([]byte, 0, 1024)
		b.ReportAllocs()
		for b.Loop() {
			buf = enc.append(buf[:0], time.Now(), msg, 1234567, 0x9f2c41d07a5b3e88, nil)
		}
	})
	b.Run("record", func(b *testing.B) {
		buf := make([]byte, 0, 1024)
		b.ReportAllocs()
		for b.Loop() {
			r := rec
			r.Timestamp, r.Message, r.Log.Offset = time.Now(), string(msg), 1234567
			buf = r.AppendJSON(buf[:0])
		}
	})
}
