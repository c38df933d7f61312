// Package logging builds the logrus logger every logpipe binary uses.
//
// The logger writes to the given output (stderr in the binaries) and, when a
// memlog ring is given, to that ring too, so that /debug/logs shows the same
// lines. Text output carries full timestamps; JSON output RFC 3339 times
// with nanoseconds.
package logging

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/logpipe/logpipe/common/memlog"
)

// textTimestamp is the text format's time layout: RFC 3339 with milliseconds,
// fixed width so that columns line up.
const textTimestamp = "2006-01-02T15:04:05.000Z07:00"

var (
	// ErrBadLevel is returned, wrapped with the value, for a log level that
	// logrus.ParseLevel does not accept.
	ErrBadLevel = errors.New("not one of panic, fatal, error, warn, info, debug, trace")
	// ErrBadFormat is returned, wrapped with the value, for a log format
	// other than text and json.
	ErrBadFormat = errors.New("not one of text, json")
)

// New returns a logger at the given level ("info", "debug", ...; see
// logrus.ParseLevel) and format ("text" or "json") that writes every entry
// to out and, when ring is not nil, to ring. A nil out means os.Stderr.
//
// The errors name the bad value:
//
//	log level "loud": not one of panic, fatal, error, warn, info, debug, trace
//	log format "xml": not one of text, json
func New(level, format string, out io.Writer, ring *memlog.Ring) (*logrus.Logger, error) {
	lvl, err := logrus.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, ErrBadLevel)
	}

	var formatter logrus.Formatter
	switch format {
	case "text":
		formatter = &logrus.TextFormatter{
			DisableColors:   true,
			FullTimestamp:   true,
			TimestampFormat: textTimestamp,
		}
	case "json":
		formatter = &logrus.JSONFormatter{TimestampFormat: time.RFC3339Nano}
	default:
		return nil, fmt.Errorf("log format %q: %w", format, ErrBadFormat)
	}

	if out == nil {
		out = os.Stderr
	}
	if ring != nil {
		// The ring first: it never fails or blocks, so a failing out
		// cannot keep lines from it.
		out = io.MultiWriter(ring, out)
	}

	l := logrus.New()
	l.SetLevel(lvl)
	l.SetFormatter(formatter)
	l.SetOutput(out)
	return l, nil
}
