package document

import (
	"bytes"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/logpipe/logpipe/common/record"
)

// decodeCanonical decodes a record written exactly as record.AppendJSON
// writes it (the agent's encoding), without reflection. It reports false
// for anything else, and Append then falls back to record.Decode; Append
// also checks that the record re-encodes to the very same bytes, so that
// both paths give the same document.
func decodeCanonical(v []byte) (r record.Record, ok bool) {
	s := canon{b: v, ok: true}
	s.lit(`{"@timestamp":"`)
	tsEnd := bytes.IndexByte(v[min(s.i, len(v)):], '"')
	if !s.ok || tsEnd < 0 {
		return r, false
	}
	ts, err := time.Parse(time.RFC3339Nano, string(v[s.i:s.i+tsEnd]))
	if err != nil {
		return r, false
	}
	r.Timestamp = ts.UTC()
	s.i += tsEnd + 1
	s.lit(`,"message":`)
	r.Message = s.str()
	s.lit(`,"job":`)
	r.Job = s.str()
	s.lit(`,"host":{"name":`)
	r.Host.Name = s.str()
	s.lit(`},"agent":{"name":`)
	r.Agent.Name = s.str()
	s.lit(`},"log":{"file":{"path":`)
	r.Log.File.Path = s.str()
	if s.peek(`,"device_id":`) {
		r.Log.File.DeviceID = s.str()
	}
	if s.peek(`,"inode":`) {
		r.Log.File.Inode = s.str()
	}
	if s.peek(`,"fingerprint":`) {
		r.Log.File.Fingerprint = s.str()
	}
	if s.peek(`,"generation":`) {
		r.Log.File.Generation = s.str()
	}
	s.lit(`},"offset":`)
	r.Log.Offset = s.int()
	if s.peek(`,"flags":[`) {
		for {
			r.Log.Flags = append(r.Log.Flags, s.str())
			if !s.peek(",") {
				break
			}
		}
		s.lit("]")
	}
	s.lit("}")
	if s.peek(`,"labels":{`) {
		r.Labels = map[string]string{}
		for {
			k := s.str()
			s.lit(":")
			r.Labels[k] = s.str()
			if !s.peek(",") {
				break
			}
		}
		s.lit("}")
	}
	s.lit("}")
	return r, s.ok && s.i == len(v)
}

// canon is a cursor over a canonical record; ok turns false at the first
// byte that is not where the canonical layout puts it.
type canon struct {
	b  []byte
	i  int
	ok bool
}

func (s *canon) lit(l string) {
	if s.ok && bytes.HasPrefix(s.b[s.i:], []byte(l)) {
		s.i += len(l)
		return
	}
	s.ok = false
}

// peek consumes l if it comes next.
func (s *canon) peek(l string) bool {
	if s.ok && bytes.HasPrefix(s.b[s.i:], []byte(l)) {
		s.i += len(l)
		return true
	}
	return false
}

func (s *canon) int() int64 {
	if !s.ok {
		return 0
	}
	j := s.i
	if j < len(s.b) && s.b[j] == '-' {
		j++
	}
	for j < len(s.b) && s.b[j] >= '0' && s.b[j] <= '9' {
		j++
	}
	n, err := strconv.ParseInt(string(s.b[s.i:j]), 10, 64)
	if err != nil {
		s.ok = false
		return 0
	}
	s.i = j
	return n
}

// str reads a JSON string with the escapes record.AppendJSON writes.
func (s *canon) str() string {
	if !s.ok || s.i >= len(s.b) || s.b[s.i] != '"' {
		s.ok = false
		return ""
	}
	start := s.i + 1
	j := start
	for j < len(s.b) && s.b[j] != '"' && s.b[j] != '\\' && s.b[j] >= 0x20 {
		j++
	}
	if j < len(s.b) && s.b[j] == '"' {
		s.i = j + 1
		return string(s.b[start:j])
	}
	// Escapes: decode into a copy.
	out := append([]byte(nil), s.b[start:j]...)
	for j < len(s.b) {
		c := s.b[j]
		switch {
		case c == '"':
			s.i = j + 1
			return string(out)
		case c < 0x20:
			s.ok = false
			return ""
		case c != '\\':
			out = append(out, c)
			j++
			continue
		}
		if j+1 >= len(s.b) {
			break
		}
		switch s.b[j+1] {
		case '"', '\\':
			out = append(out, s.b[j+1])
			j += 2
		case 'n':
			out = append(out, '\n')
			j += 2
		case 'r':
			out = append(out, '\r')
			j += 2
		case 't':
			out = append(out, '\t')
			j += 2
		case 'u':
			if j+6 > len(s.b) {
				s.ok = false
				return ""
			}
			n, err := strconv.ParseUint(string(s.b[j+2:j+6]), 16, 32)
			if err != nil || (n >= 0xd800 && n < 0xe000) {
				s.ok = false
				return ""
			}
			out = utf8.AppendRune(out, rune(n))
			j += 6
		default:
			s.ok = false
			return ""
		}
	}
	s.ok = false
	return ""
}
