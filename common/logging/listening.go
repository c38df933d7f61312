package logging

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"
)

// ListeningMessage is the message of the line Listening logs.
const ListeningMessage = "listening"

// Listening logs, at info level, that the listener called name ("metrics",
// "http") is bound to addr:
//
//	time=... level=info msg=listening addr="127.0.0.1:9101" listener=metrics
//	{"addr":"127.0.0.1:9101","level":"info","listener":"metrics","msg":"listening",...}
//
// It is how a process given port 0 tells whoever started it (tests,
// devstack --all) which port the kernel picked; ParseListening reads the
// line back.
func Listening(log logrus.FieldLogger, name, addr string) {
	log.WithFields(logrus.Fields{"listener": name, "addr": addr}).Info(ListeningMessage)
}

// ParseListening returns the listener name and address of a line that
// Listening wrote, in the text or the JSON format; ok is false for any other
// line.
func ParseListening(line string) (name, addr string, ok bool) {
	var fields map[string]string
	if strings.HasPrefix(line, "{") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil {
			return "", "", false
		}
		fields = map[string]string{}
		for k, v := range m {
			if s, isString := v.(string); isString {
				fields[k] = s
			}
		}
	} else {
		fields = logfmt(line)
	}
	if fields["msg"] != ListeningMessage || fields["listener"] == "" || fields["addr"] == "" {
		return "", "", false
	}
	return fields["listener"], fields["addr"], true
}

// logfmt splits a line of logrus's text format (key=value pairs separated
// by spaces, values quoted when they need it) into its fields.
func logfmt(line string) map[string]string {
	fields := map[string]string{}
	for rest := strings.TrimSpace(line); rest != ""; rest = strings.TrimLeft(rest, " ") {
		eq := strings.IndexByte(rest, '=')
		sp := strings.IndexByte(rest, ' ')
		if eq < 0 || (sp >= 0 && sp < eq) {
			return fields // not key=value: the rest is not logrus's text format
		}
		key, value := rest[:eq], rest[eq+1:]
		if strings.HasPrefix(value, `"`) {
			end := closingQuote(value)
			if end < 0 {
				return fields
			}
			s, err := strconv.Unquote(value[:end+1])
			if err != nil {
				return fields
			}
			fields[key], rest = s, value[end+1:]
			continue
		}
		if sp = strings.IndexByte(value, ' '); sp >= 0 {
			fields[key], rest = value[:sp], value[sp:]
		} else {
			fields[key], rest = value, ""
		}
	}
	return fields
}

// closingQuote returns the index of the quote that ends the quoted string
// at the start of s, or -1.
func closingQuote(s string) int {
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return -1
}
