package harvest

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/logpipe/logpipe/common/record"
)

// encoder writes records byte for byte as record.AppendJSON does (a fuzz
// test pins this), only faster on the hot path: the fields that every line
// of a file shares are encoded once, the timestamp once per microsecond, and
// the message is scanned eight bytes at a time for bytes to escape.
type encoder struct {
	mid  []byte    // from after "message" to the offset's digits
	rest []byte    // after the flags: the end of "log", the labels, the end
	tsAt time.Time // the time ts shows
	ts   []byte
}

const (
	encHead = `{"@timestamp":"`
	encMsg  = `","message":`
)

// newEncoder prepares the shared parts of rec (its Job, Host, Agent,
// Log.File and Labels).
func newEncoder(rec record.Record) *encoder {
	rec.Message, rec.Log.Offset, rec.Log.Flags = "", 0, nil
	rec.Timestamp = time.Unix(0, 0)
	tmpl := rec.AppendJSON(nil)
	// Strings in the template are escaped: these markers occur once.
	i := bytes.Index(tmpl, []byte(`"message":""`)) + len(`"message":""`)
	j := bytes.Index(tmpl, []byte(`"offset":0}`)) + len(`"offset":`)
	return &encoder{mid: tmpl[i:j], rest: tmpl[j+1:]}
}

// append appends the record of one line.
func (e *encoder) append(dst []byte, now time.Time, msg []byte, offset int64, flags []string) []byte {
	if !now.Equal(e.tsAt) || e.ts == nil {
		e.tsAt = now
		e.ts = now.UTC().AppendFormat(e.ts[:0], record.TimeLayout)
	}
	dst = append(dst, encHead...)
	dst = append(dst, e.ts...)
	dst = append(dst, encMsg...)
	dst = appendString(dst, msg)
	dst = append(dst, e.mid...)
	dst = strconv.AppendInt(dst, offset, 10)
	if len(flags) > 0 {
		dst = append(dst, `,"flags":[`...)
		for i, f := range flags {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, []byte(f))
		}
		dst = append(dst, ']')
	}
	return append(dst, e.rest...)
}

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// plain8 reports whether none of the eight bytes in w needs escaping: all
// are ASCII, none below 0x20, none '"' or '\\'.
func plain8(w uint64) bool {
	hasZero := func(v uint64) uint64 { return (v - ones) & ^v & highs }
	return (w&highs)|((w-0x20*ones) & ^w & highs)|hasZero(w^('"'*ones))|hasZero(w^('\\'*ones)) == 0
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string exactly as package record does:
// escaped as encoding/json does without HTML escaping, invalid UTF-8
// replaced with U+FFFD, U+2028 and U+2029 escaped.
func appendString(dst, s []byte) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		for i+8 <= len(s) && plain8(binary.LittleEndian.Uint64(s[i:])) {
			i += 8
		}
		if i >= len(s) {
			break
		}
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xf])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRune(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
