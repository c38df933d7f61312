package wire

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/logpipe/logpipe/common/record"
)

// Frame types (DESIGN.md, "livetail HTTP API").
const (
	TypeHello    = "hello"
	TypeEntries  = "entries"
	TypeCaughtUp = "caught_up"
	TypeDropped  = "dropped"
	TypeError    = "error"
)

// Frame is any server → client frame; a client decodes every frame into it.
type Frame struct {
	Type       string   `json:"type"`
	Job        string   `json:"job,omitempty"`
	Jobs       []string `json:"jobs,omitempty"`
	Partition  *int32   `json:"partition,omitempty"`
	Partitions []int32  `json:"partitions,omitempty"`
	ServerTime string   `json:"server_time,omitempty"`
	// HistoryFrom and Archive are hello's.
	HistoryFrom string      `json:"history_from,omitempty"`
	Archive     bool        `json:"archive,omitempty"`
	Entries     []EntryJSON `json:"entries,omitempty"`
	Offset      *int64      `json:"offset,omitempty"`
	Count       int64       `json:"count,omitempty"`
	FromOffset  *int64      `json:"from_offset,omitempty"`
	ToOffset    *int64      `json:"to_offset,omitempty"`
	Code        int         `json:"code,omitempty"`
	Reason      string      `json:"reason,omitempty"`
	Cursor      string      `json:"cursor,omitempty"`
}

// EntryJSON is one entry of an entries frame. Src and Pos, the line's
// source file (hub.SourceString) and log.offset, are there only for lines
// that carry their source position (the agent's).
type EntryJSON struct {
	Partition int32             `json:"partition"`
	Offset    int64             `json:"offset"`
	Job       string            `json:"job"`
	TS        string            `json:"ts"`
	Line      string            `json:"line"`
	Host      string            `json:"host"`
	File      string            `json:"file"`
	Labels    map[string]string `json:"labels"`
	Src       string            `json:"src,omitempty"`
	Pos       *int64            `json:"pos,omitempty"`
}

// Hello is what a hello frame says about a stream.
type Hello struct {
	Jobs       []string // the stream's jobs, in the order given; hello's job is the first
	Partition  int32    // the first job's home partition
	Partitions []int32  // the partitions history is read from
	// HistoryFrom is the time of the oldest record Kafka holds on the
	// partitions; zero: unknown or none (then left out).
	HistoryFrom time.Time
	Archive     bool // history past Kafka's retention comes from the index
}

// HelloFrame opens a stream: its jobs, the first one's home partition,
// the partitions its history is read from, how far back Kafka's history
// goes, and whether an archive goes further.
func HelloFrame(h Hello, now time.Time) []byte {
	var from string
	if !h.HistoryFrom.IsZero() {
		from = h.HistoryFrom.UTC().Format(record.TimeLayout)
	}
	b, _ := json.Marshal(struct {
		Type        string   `json:"type"`
		Job         string   `json:"job"`
		Jobs        []string `json:"jobs"`
		Partition   int32    `json:"partition"`
		Partitions  []int32  `json:"partitions"`
		HistoryFrom string   `json:"history_from,omitempty"`
		Archive     bool     `json:"archive"`
		ServerTime  string   `json:"server_time"`
	}{TypeHello, h.Jobs[0], h.Jobs, h.Partition, h.Partitions, from, h.Archive, now.UTC().Format(record.TimeLayout)})
	return b
}

// CaughtUpFrame appends to dst a caught_up frame: the home partition's
// position as offset, and the cursor pos.
func CaughtUpFrame(dst []byte, offset int64, pos map[int32]int64) []byte {
	dst = append(dst, `{"type":"caught_up","offset":`...)
	dst = strconv.AppendInt(dst, offset, 10)
	dst = append(dst, `,"cursor":"`...)
	dst = AppendCursor(dst, pos)
	return append(dst, '"', '}')
}

// DroppedFrame appends to dst a dropped frame: count lines skipped of
// partition p, offsets from to to, with the cursor pos.
func DroppedFrame(dst []byte, p int32, count, from, to int64, pos map[int32]int64) []byte {
	dst = append(dst, `{"type":"dropped","partition":`...)
	dst = strconv.AppendInt(dst, int64(p), 10)
	dst = append(dst, `,"count":`...)
	dst = strconv.AppendInt(dst, count, 10)
	dst = append(dst, `,"from_offset":`...)
	dst = strconv.AppendInt(dst, from, 10)
	dst = append(dst, `,"to_offset":`...)
	dst = strconv.AppendInt(dst, to, 10)
	dst = append(dst, `,"cursor":"`...)
	dst = AppendCursor(dst, pos)
	return append(dst, '"', '}')
}

// ErrorFrame is the frame sent just before a close with code.
func ErrorFrame(code websocket.StatusCode, reason string) []byte {
	b, _ := json.Marshal(struct {
		Type   string `json:"type"`
		Code   int    `json:"code"`
		Reason string `json:"reason"`
	}{TypeError, int(code), reason})
	return b
}

// AppendEntriesStart appends to dst the start of an entries frame; the
// entries' JSON (an entry's JSON) follows, separated by commas, then
// AppendEntriesEnd.
func AppendEntriesStart(dst []byte) []byte {
	return append(dst, `{"type":"entries","entries":[`...)
}

// AppendEntriesEnd appends to dst the end of an entries frame, with the
// cursor pos.
func AppendEntriesEnd(dst []byte, pos map[int32]int64) []byte {
	dst = append(dst, `],"cursor":"`...)
	dst = AppendCursor(dst, pos)
	return append(dst, '"', '}')
}

// AppendCursor appends pos, per partition the last offset a client has
// everything up to, as a cursor: "p:offset[,p:offset...]", partitions in
// order (DESIGN.md; the API's parameters parse it back).
func AppendCursor(dst []byte, pos map[int32]int64) []byte {
	var buf [16]int32
	parts := buf[:0]
	for p := range pos {
		parts = append(parts, p)
	}
	slices.Sort(parts)
	for i, p := range parts {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = strconv.AppendInt(dst, int64(p), 10)
		dst = append(dst, ':')
		dst = strconv.AppendInt(dst, pos[p], 10)
	}
	return dst
}

// CloseReason fits a reason into a close frame (at most 123 bytes).
func CloseReason(s string) string {
	const max = 123
	s = strings.ToValidUTF8(s, "?")
	if len(s) <= max {
		return s
	}
	s = s[:max-3]
	for len(s) > 0 && s[len(s)-1]&0xC0 == 0x80 {
		s = s[:len(s)-1]
	}
	if len(s) > 0 && s[len(s)-1] >= 0xC0 {
		s = s[:len(s)-1]
	}
	return s + "..."
}
