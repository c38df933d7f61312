package logging_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/logpipe/logpipe/common/logging"
	"github.com/logpipe/logpipe/common/memlog"
)

func TestLevels(t *testing.T) {
	tests := map[string]struct {
		level   string
		want    logrus.Level
		wantErr string
	}{
		"info":       {level: "info", want: logrus.InfoLevel},
		"debug":      {level: "debug", want: logrus.DebugLevel},
		"upper case": {level: "DEBUG", want: logrus.DebugLevel},
		"warn":       {level: "warn", want: logrus.WarnLevel},
		"warning":    {level: "warning", want: logrus.WarnLevel},
		"trace":      {level: "trace", want: logrus.TraceLevel},
		"error":      {level: "error", want: logrus.ErrorLevel},
		"unknown":    {level: "loud", wantErr: `log level "loud": not one of panic, fatal, error, warn, info, debug, trace`},
		"empty":      {level: "", wantErr: `log level "": not one of panic, fatal, error, warn, info, debug, trace`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			l, err := logging.New(tt.level, "text", &bytes.Buffer{}, nil)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr || !errors.Is(err, logging.ErrBadLevel) {
					t.Fatalf("New(%q) error = %v, want %q wrapping ErrBadLevel", tt.level, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("New(%q): %v", tt.level, err)
			}
			if l.GetLevel() != tt.want {
				t.Errorf("level %v, want %v", l.GetLevel(), tt.want)
			}
		})
	}
}

func TestFormats(t *testing.T) {
	textLine := regexp.MustCompile(`^time="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d)" level=info msg="batch indexed" docs=500\n$`)
	tests := map[string]struct {
		format  string
		check   func(t *testing.T, line string)
		wantErr string
	}{
		"text": {format: "text", check: func(t *testing.T, line string) {
			if !textLine.MatchString(line) {
				t.Errorf("text line %q does not match %s", line, textLine)
			}
		}},
		"json": {format: "json", check: func(t *testing.T, line string) {
			var e struct {
				Time  string `json:"time"`
				Level string `json:"level"`
				Msg   string `json:"msg"`
				Docs  int    `json:"docs"`
			}
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				t.Fatalf("json line %q: %v", line, err)
			}
			if _, err := time.Parse(time.RFC3339Nano, e.Time); err != nil {
				t.Errorf("time %q is not RFC 3339: %v", e.Time, err)
			}
			if e.Level != "info" || e.Msg != "batch indexed" || e.Docs != 500 {
				t.Errorf("json entry %+v", e)
			}
		}},
		"unknown":    {format: "xml", wantErr: `log format "xml": not one of text, json`},
		"empty":      {format: "", wantErr: `log format "": not one of text, json`},
		"upper case": {format: "JSON", wantErr: `log format "JSON": not one of text, json`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			ring := memlog.New(1 << 10)
			l, err := logging.New("info", tt.format, &out, ring)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr || !errors.Is(err, logging.ErrBadFormat) {
					t.Fatalf("New(format %q) error = %v, want %q wrapping ErrBadFormat", tt.format, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("New(format %q): %v", tt.format, err)
			}
			l.WithField("docs", 500).Info("batch indexed")
			l.Debug("not at info level")

			line := out.String()
			tt.check(t, line)
			if got, want := ring.Lines(), []string{strings.TrimSuffix(line, "\n")}; len(got) != 1 || got[0] != want[0] {
				t.Errorf("ring has %q, want %q", got, want)
			}
		})
	}
}

func TestOutput(t *testing.T) {
	tests := map[string]struct {
		ring *memlog.Ring
	}{
		"out only":     {},
		"out and ring": {ring: memlog.New(1 << 10)},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			l, err := logging.New("info", "text", &out, tt.ring)
			if err != nil {
				t.Fatal(err)
			}
			l.Info("hello")
			if !strings.Contains(out.String(), "msg=hello") {
				t.Errorf("out has %q, want the entry", out.String())
			}
			if tt.ring != nil {
				if lines := tt.ring.Lines(); len(lines) != 1 || !strings.Contains(lines[0], "msg=hello") {
					t.Errorf("ring has %q, want the entry", lines)
				}
			}
		})
	}
}

func TestNilOutIsStderr(t *testing.T) {
	l, err := logging.New("info", "json", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if l.Out != os.Stderr {
		t.Errorf("output is %T, want os.Stderr", l.Out)
	}
}
