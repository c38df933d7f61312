package document

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/logpipe/logpipe/common/record"
)

var ingested = time.Date(2026, 11, 21, 10, 0, 1, 500000000, time.UTC)

func fixedNow() time.Time { return ingested }

func value(t testing.TB, message string, labels map[string]string) []byte {
	t.Helper()
	r := record.Record{
		Timestamp: time.Date(2026, 11, 21, 10, 0, 0, 123456000, time.UTC),
		Message:   message,
		Job:       "web-1",
		Host:      record.Host{Name: "node-a"},
		Agent:     record.Agent{Name: "node-a"},
		Log:       record.Log{File: record.File{Path: "/var/log/web/access.log"}, Offset: 123456},
		Labels:    labels,
	}
	return r.AppendJSON(nil)
}

// Strings longer and shorter than a json.* leaf may be.
var (
	long   = strings.Repeat("x", maxJSONLeafBytes)
	medium = strings.Repeat("y", maxJSONLeafBytes/2)
)

// deep is a JSON object whose objects nest n deep.
func deep(n int) string {
	return strings.Repeat(`{"a":`, n-1) + `{"v":1}` + strings.Repeat("}", n-1)
}

func decoded(t testing.TB, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestAppend(t *testing.T) {
	src := Source{Topic: "logs", Partition: 3, Offset: 42}
	base := map[string]any{
		"@timestamp": "2026-11-21T10:00:00.123456Z",
		"job":        "web-1",
		"host":       map[string]any{"name": "node-a"},
		"agent":      map[string]any{"name": "node-a"},
		"log":        map[string]any{"file": map[string]any{"path": "/var/log/web/access.log"}, "offset": float64(123456)},
		"kafka":      map[string]any{"topic": "logs", "partition": float64(3), "offset": float64(42)},
		"event":      map[string]any{"ingested": "2026-11-21T10:00:01.500000Z"},
	}
	with := func(kv ...any) map[string]any {
		m := map[string]any{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	tests := map[string]struct {
		value     []byte
		parseJSON bool
		want      map[string]any
		wantErr   bool
	}{
		"plain line": {
			value: value(t, "GET /api 200", nil), parseJSON: true,
			want: with("message", "GET /api 200"),
		},
		"labels kept": {
			value: value(t, "x", map[string]string{"env": "dev"}), parseJSON: true,
			want: with("message", "x", "labels", map[string]any{"env": "dev"}),
		},
		"json object parsed": {
			value: value(t, `{"status":200,"path":"/api"}`, nil), parseJSON: true,
			want: with("message", `{"status":200,"path":"/api"}`, "json", map[string]any{"status": float64(200), "path": "/api"}),
		},
		"json object with newlines compacted": {
			value: value(t, "  {\n \"a\": [1, 2],\n \"b\": {\"c\": null}\n}\n", nil), parseJSON: true,
			want: with("message", "  {\n \"a\": [1, 2],\n \"b\": {\"c\": null}\n}\n", "json", map[string]any{"a": []any{float64(1), float64(2)}, "b": map[string]any{"c": nil}}),
		},
		"json object not parsed when off": {
			value: value(t, `{"status":200}`, nil), parseJSON: false,
			want: with("message", `{"status":200}`),
		},
		"json array is not an object": {
			value: value(t, `[1,2]`, nil), parseJSON: true,
			want: with("message", `[1,2]`),
		},
		"broken json stays a message": {
			value: value(t, `{"status":`, nil), parseJSON: true,
			want: with("message", `{"status":`),
		},
		"two objects are not one": {
			value: value(t, `{"a":1}{"b":2}`, nil), parseJSON: true,
			want: with("message", `{"a":1}{"b":2}`),
		},
		"json nested deeper than flattened allows is left out": {
			value: value(t, deep(maxJSONDepth+1), nil), parseJSON: true,
			want: with("message", deep(maxJSONDepth+1)),
		},
		"json nested as deep as flattened allows": {
			value: value(t, deep(maxJSONDepth), nil), parseJSON: true,
			want: with("message", deep(maxJSONDepth), "json", decoded(t, deep(maxJSONDepth))),
		},
		"json leaves too long for a term are left out": {
			value: value(t, `{"level":"error","trace":"`+long+`","n":[1,"`+long+`"],"x":{"`+long+`":{"y":1},"ok":"`+medium+`"}}`, nil), parseJSON: true,
			want: with("message", `{"level":"error","trace":"`+long+`","n":[1,"`+long+`"],"x":{"`+long+`":{"y":1},"ok":"`+medium+`"}}`,
				"json", map[string]any{"level": "error", "n": []any{float64(1)}, "x": map[string]any{"ok": medium}}),
		},
		"json with a long leaf that fits is kept whole": {
			value: value(t, `{"trace":"`+medium+`","a":{"b":{"c":"<&>\u2028"}}}`, nil), parseJSON: true,
			want: with("message", `{"trace":"`+medium+`","a":{"b":{"c":"<&>\u2028"}}}`, "json", decoded(t, `{"trace":"`+medium+`","a":{"b":{"c":"<&>\u2028"}}}`)),
		},
		"not json":          {value: []byte("GET /api 200"), wantErr: true},
		"missing timestamp": {value: []byte(`{"message":"x"}`), wantErr: true},
		"bad timestamp":     {value: []byte(`{"@timestamp":"yesterday","message":"x"}`), wantErr: true},
		"not an object":     {value: []byte(`[1]`), wantErr: true},
		"empty":             {value: nil, wantErr: true},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			b := Builder{ParseJSON: tt.parseJSON, Now: fixedNow}
			prefix := []byte("prefix")
			got, err := b.Append(prefix, tt.value, src)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidRecord) {
					t.Fatalf("Append error = %v, want ErrInvalidRecord", err)
				}
				if string(got) != "prefix" {
					t.Fatalf("Append changed dst on error: %q", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(got, prefix) {
				t.Fatalf("Append dropped dst: %q", got)
			}
			doc := got[len(prefix):]
			if bytes.ContainsAny(doc, "\n\r") {
				t.Fatalf("document spans lines: %s", doc)
			}
			var m map[string]any
			if err := json.Unmarshal(doc, &m); err != nil {
				t.Fatalf("document is not JSON: %v: %s", err, doc)
			}
			if !reflect.DeepEqual(m, tt.want) {
				t.Fatalf("document\n got %v\nwant %v", m, tt.want)
			}
		})
	}
}

func TestSourceID(t *testing.T) {
	tests := map[string]struct {
		src  Source
		want string
	}{
		"first":  {Source{Topic: "logs"}, "logs-0-0"},
		"dotted": {Source{Topic: "web.logs", Partition: 11, Offset: 9876543210}, "web.logs-11-9876543210"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := tt.src.ID(); got != tt.want {
				t.Fatalf("ID() = %q, want %q", got, tt.want)
			}
		})
	}
}

func lookupType(props map[string]any, path string) string {
	head, rest, nested := bytes.Cut([]byte(path), []byte("."))
	field, _ := props[string(head)].(map[string]any)
	if !nested {
		s, _ := field["type"].(string)
		return s
	}
	sub, _ := field["properties"].(map[string]any)
	return lookupType(sub, string(rest))
}

func FuzzAppend(f *testing.F) {
	f.Add(value(f, "GET / 200", nil))
	f.Add(value(f, `{"a":{"b":[1,"x",null]}}`, map[string]string{"k": "v"}))
	f.Add([]byte(`{"@timestamp":"2026-11-21T10:00:00Z","message":"{\"a\":1}\n"}`))
	f.Add([]byte(`{"@timestamp":"2026-11-21T10:00:00Z","message":"\u2028\ud800"}`))
	f.Add([]byte("not json"))
	b := Builder{ParseJSON: true, Now: fixedNow}
	f.Fuzz(func(t *testing.T, v []byte) {
		got, err := b.Append(nil, v, Source{Topic: "logs", Partition: 1, Offset: 2})
		if err != nil {
			if len(got) != 0 {
				t.Fatalf("dst changed on error: %q", got)
			}
			return
		}
		if bytes.ContainsAny(got, "\n\r") {
			t.Fatalf("document spans lines: %s", got)
		}
		var m map[string]any
		if err := json.Unmarshal(got, &m); err != nil {
			t.Fatalf("document is not JSON: %v: %s", err, got)
		}
		k, _ := m["kafka"].(map[string]any)
		if k["topic"] != "logs" || k["partition"] != float64(1) || k["offset"] != float64(2) {
			t.Fatalf("kafka fields = %v", m["kafka"])
		}
	})
}

func BenchmarkAppend(b *testing.B) {
	line := bytes.Repeat([]byte("x"), 200)
	tests := map[string][]byte{
		"text 200B": value(b, string(line), map[string]string{"env": "prod"}),
		"json 200B": value(b, `{"status":200,"path":"/api/v1/items","bytes":5120,"ua":"`+string(line[:140])+`"}`, nil),
	}
	for name, v := range tests {
		b.Run(name, func(b *testing.B) {
			bl := Builder{ParseJSON: true}
			buf := make([]byte, 0, 4096)
			b.ReportAllocs()
			b.SetBytes(int64(len(v)))
			for i := 0; b.Loop(); i++ {
				var err error
				buf, err = bl.Append(buf[:0], v, Source{Topic: "logs", Partition: 1, Offset: int64(i)})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// appendReference is Append through record.Decode only: the canonical
// re-encoding of a record is what Append writes first.
func appendReference(b Builder, dst, value []byte, src Source) ([]byte, error) {
	r, err := record.Decode(value)
	if err != nil {
		return dst, err
	}
	got, err := b.Append(nil, value, src)
	if err != nil {
		return dst, err
	}
	canonical := r.AppendJSON(nil)
	if !bytes.HasPrefix(got, canonical[:len(canonical)-1]) {
		return dst, fmt.Errorf("document %s does not start with the record %s", got, canonical)
	}
	return append(dst, got...), nil
}

func TestDecodeCanonical(t *testing.T) {
	tests := map[string]struct {
		value  []byte
		wantOK bool
	}{
		"agent encoding":      {value(t, "GET / 200", map[string]string{"env": "dev", "a": "b"}), true},
		"escapes":             {value(t, "tab\tquote\" back\\ nl\n cr\r ctl\x01 ls\u2028 é 😀", nil), true},
		"flags":               {(&record.Record{Timestamp: ingested, Log: record.Log{Flags: []string{"truncated", "multiline"}}}).AppendJSON(nil), true},
		"spaces":              {[]byte(`{"@timestamp": "2026-11-21T10:00:00.000000Z","message":"x"}`), false},
		"other key order":     {[]byte(`{"message":"x","@timestamp":"2026-11-21T10:00:00.000000Z"}`), false},
		"trailing bytes":      {append(value(t, "x", nil), ' '), false},
		"escaped slash":       {[]byte(`{"@timestamp":"2026-11-21T10:00:00.000000Z","message":"\/","job":"","host":{"name":""},"agent":{"name":""},"log":{"file":{"path":""},"offset":0}}`), false},
		"lone surrogate":      {[]byte(`{"@timestamp":"2026-11-21T10:00:00.000000Z","message":"\ud800","job":"","host":{"name":""},"agent":{"name":""},"log":{"file":{"path":""},"offset":0}}`), false},
		"bad offset":          {[]byte(`{"@timestamp":"2026-11-21T10:00:00.000000Z","message":"","job":"","host":{"name":""},"agent":{"name":""},"log":{"file":{"path":""},"offset":x}}`), false},
		"truncated in string": {[]byte(`{"@timestamp":"2026-11-21T10:00:00.000000Z","message":"abc`), false},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, ok := decodeCanonical(tt.value)
			if ok != tt.wantOK {
				t.Fatalf("decodeCanonical ok = %v, want %v", ok, tt.wantOK)
			}
			if !ok {
				return
			}
			want, err := record.Decode(tt.value)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("decodeCanonical = %+v, want %+v", got, want)
			}
		})
	}
}

// FuzzCanonicalMatchesDecode: whatever the fast path accepts decodes as
// record.Decode does, and Append gives the same document either way.
func FuzzCanonicalMatchesDecode(f *testing.F) {
	f.Add(value(f, "GET / 200", map[string]string{"env": "dev"}))
	f.Add(value(f, "a\"b\\c\nd\x01\u2028é", nil))
	f.Add((&record.Record{Timestamp: ingested, Message: `{"a":1}`, Log: record.Log{Flags: []string{"truncated"}}}).AppendJSON(nil))
	f.Add([]byte(`{"@timestamp":"2026-11-21T10:00:00Z","message":"x"}`))
	b := Builder{ParseJSON: true, Now: fixedNow}
	src := Source{Topic: "logs", Partition: 1, Offset: 2}
	f.Fuzz(func(t *testing.T, v []byte) {
		// What the fast path accepts and re-encodes to the same bytes is
		// what Append uses it for; there it must agree with record.Decode.
		if r, ok := decodeCanonical(v); ok && bytes.Equal(r.AppendJSON(nil), v) {
			want, err := record.Decode(v)
			if err != nil {
				t.Fatalf("fast path accepted what record.Decode rejects (%v): %q", err, v)
			}
			if !reflect.DeepEqual(r, want) {
				t.Fatalf("fast path %+v, record.Decode %+v", r, want)
			}
		}
		got, err := b.Append(nil, v, src)
		want, werr := appendReference(b, nil, v, src)
		if (err != nil) != (werr != nil) || !bytes.Equal(got, want) {
			t.Fatalf("Append = %s, %v; reference = %s, %v", got, err, want, werr)
		}
	})
}
