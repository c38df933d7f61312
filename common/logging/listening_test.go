package logging_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/logpipe/logpipe/common/logging"
)

// TestListeningRoundTrip logs the listening line in each format, with other
// fields around it as the binaries have them, and reads it back.
func TestListeningRoundTrip(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			var out bytes.Buffer
			log, err := logging.New("info", format, &out, nil)
			if err != nil {
				t.Fatal(err)
			}
			log.WithField("component", "http").WithField("note", `a "quoted" value`).Info("before")
			logging.Listening(log.WithField("component", "http"), "http", "127.0.0.1:43127")
			logging.Listening(log, "metrics", "[::1]:9101")

			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if len(lines) != 3 {
				t.Fatalf("%d lines, want 3: %q", len(lines), out.String())
			}
			if name, addr, ok := logging.ParseListening(lines[0]); ok {
				t.Errorf("ParseListening(%q) = %q, %q; want not a listening line", lines[0], name, addr)
			}
			for i, want := range [][2]string{{"http", "127.0.0.1:43127"}, {"metrics", "[::1]:9101"}} {
				name, addr, ok := logging.ParseListening(lines[i+1])
				if !ok || name != want[0] || addr != want[1] {
					t.Errorf("ParseListening(%q) = %q, %q, %v; want %q, %q", lines[i+1], name, addr, ok, want[0], want[1])
				}
			}
		})
	}
}

func TestParseListeningOtherLines(t *testing.T) {
	for name, line := range map[string]string{
		"empty":               "",
		"plain text":          "etcd      http://127.0.0.1:2379",
		"other message":       `level=info msg="listening soon" listener=metrics addr="127.0.0.1:1"`,
		"no address":          `level=info msg=listening listener=metrics`,
		"no name":             `level=info msg=listening addr="127.0.0.1:1"`,
		"unterminated quote":  `level=info msg=listening listener=metrics addr="127.0.0.1:1`,
		"json other message":  `{"msg":"started","listener":"metrics","addr":"127.0.0.1:1"}`,
		"json not an object":  `{"msg":`,
		"json address number": `{"msg":"listening","listener":"metrics","addr":9101}`,
	} {
		t.Run(name, func(t *testing.T) {
			if n, a, ok := logging.ParseListening(line); ok {
				t.Errorf("ParseListening(%q) = %q, %q; want not a listening line", line, n, a)
			}
		})
	}
}

func FuzzParseListening(f *testing.F) {
	f.Add(`time="2026-11-21T10:00:00.000Z" level=info msg=listening addr="127.0.0.1:9101" listener=metrics`)
	f.Add(`{"addr":"127.0.0.1:9101","level":"info","listener":"metrics","msg":"listening"}`)
	f.Add(`a="\"" b=c`)
	f.Fuzz(func(t *testing.T, line string) {
		name, addr, ok := logging.ParseListening(line)
		if ok && (name == "" || addr == "") {
			t.Fatalf("ParseListening(%q) = %q, %q, true", line, name, addr)
		}
	})
}
