package harvest

import (
	"bytes"
	"strconv"
	"time"
	"unsafe"

	"github.com/logpipe/logpipe/common/record"
)

// encoder writes records byte for byte as record.AppendJSON does (a fuzz
// test pins this), only faster on the hot path: the fields that every line
// of a file shares are encoded once, and the timestamp once per microsecond.
type encoder struct {
	mid  []byte    // from after "message" to the fingerprint's digits (or the offset's, without one)
	fpTo []byte    // after the fingerprint's digits, to the offset's; nil without a fingerprint
	rest []byte    // after the flags: the end of "log", the labels, the end
	tsAt time.Time // the time ts shows
	ts   []byte
}

const (
	encHead = `{"@timestamp":"`
	encMsg  = `","message":`
)

// fpPlaceholder stands for a line's fingerprint in the template.
const fpPlaceholder = "0000000000000000"

// newEncoder prepares the shared parts of rec (its Job, Host, Agent,
// Log.File and Labels). When rec has a fingerprint, each line gets its own
// (the argument fp of append).
func newEncoder(rec record.Record) *encoder {
	withFP := rec.Log.File.Fingerprint != ""
	if withFP {
		rec.Log.File.Fingerprint = fpPlaceholder
	}
	rec.Message, rec.Log.Offset, rec.Log.Flags = "", 0, nil
	rec.Timestamp = time.Unix(0, 0)
	tmpl := rec.AppendJSON(nil)
	// Strings in the template are escaped: these markers occur once.
	i := bytes.Index(tmpl, []byte(`"message":""`)) + len(`"message":""`)
	j := bytes.Index(tmpl, []byte(`"offset":0}`)) + len(`"offset":`)
	e := &encoder{mid: tmpl[i:j], rest: tmpl[j+1:]}
	if withFP {
		k := bytes.Index(tmpl, []byte(`"fingerprint":"`+fpPlaceholder)) + len(`"fingerprint":"`)
		e.mid, e.fpTo = tmpl[i:k], tmpl[k+len(fpPlaceholder):j]
	}
	return e
}

// size is the length of the record of a message of n bytes that need no
// escaping, with nflags flags: the room to ask for.
func (e *encoder) size(n, nflags int) int {
	s := len(encHead) + len(record.TimeLayout) + len(encMsg) + 2 + n + len(e.mid) + len(fpPlaceholder) + len(e.fpTo) + 20 + len(e.rest)
	if nflags > 0 {
		s += 32
	}
	return s
}

// append appends the record of one line; fp is its log.file.fingerprint,
// unused when the template has none.
func (e *encoder) append(dst []byte, now time.Time, msg []byte, offset int64, fp uint64, flags []string) []byte {
	if !now.Equal(e.tsAt) || e.ts == nil {
		e.tsAt = now
		e.ts = now.UTC().AppendFormat(e.ts[:0], record.TimeLayout)
	}
	dst = append(dst, encHead...)
	dst = append(dst, e.ts...)
	dst = append(dst, encMsg...)
	// msg is not changed during the call, so viewing it as a string is safe.
	dst = record.AppendString(dst, unsafe.String(unsafe.SliceData(msg), len(msg)))
	dst = append(dst, e.mid...)
	if e.fpTo != nil {
		dst = appendHex16(dst, fp)
		dst = append(dst, e.fpTo...)
	}
	dst = strconv.AppendInt(dst, offset, 10)
	if len(flags) > 0 {
		dst = append(dst, `,"flags":[`...)
		for i, f := range flags {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = record.AppendString(dst, f)
		}
		dst = append(dst, ']')
	}
	return append(dst, e.rest...)
}

// appendHex16 appends v as 16 lowercase hex digits.
func appendHex16(dst []byte, v uint64) []byte {
	const digits = "0123456789abcdef"
	for shift := 60; shift >= 0; shift -= 4 {
		dst = append(dst, digits[(v>>uint(shift))&0xf])
	}
	return dst
}

// fingerprintString is fp as log.file.fingerprint shows it.
func fingerprintString(fp uint64) string { return string(appendHex16(nil, fp)) }
