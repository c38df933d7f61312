package tail

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/logpipe/logpipe/common/record"
	"github.com/logpipe/logpipe/livetail/internal/hub"
)

// Frame types (DESIGN.md, "livetail HTTP API").
const (
	TypeHello    = "hello"
	TypeEntries  = "entries"
	TypeCaughtUp = "caught_up"
	TypeDropped  = "dropped"
	TypeError    = "error"
)

// Close codes beyond RFC 6455's.
const (
	StatusBadRequest   websocket.StatusCode = 4400
	StatusUnauthorized websocket.StatusCode = 4401
	StatusForbidden    websocket.StatusCode = 4403
	StatusMaxSession   websocket.StatusCode = 4408
	StatusTooMany      websocket.StatusCode = 4429
)

// Frame is any server → client frame; a client decodes every frame into it.
type Frame struct {
	Type       string      `json:"type"`
	Job        string      `json:"job,omitempty"`
	Partition  *int32      `json:"partition,omitempty"`
	Partitions []int32     `json:"partitions,omitempty"`
	ServerTime string      `json:"server_time,omitempty"`
	Entries    []EntryJSON `json:"entries,omitempty"`
	Offset     *int64      `json:"offset,omitempty"`
	Count      int64       `json:"count,omitempty"`
	FromOffset *int64      `json:"from_offset,omitempty"`
	ToOffset   *int64      `json:"to_offset,omitempty"`
	Code       int         `json:"code,omitempty"`
	Reason     string      `json:"reason,omitempty"`
	Cursor     string      `json:"cursor,omitempty"`
}

// EntryJSON is one entry of an entries frame. Src and Pos, the line's
// source file (hub.SourceString) and log.offset, are there only for lines
// that carry their source position (the agent's).
type EntryJSON struct {
	Partition int32             `json:"partition"`
	Offset    int64             `json:"offset"`
	TS        string            `json:"ts"`
	Line      string            `json:"line"`
	Host      string            `json:"host"`
	File      string            `json:"file"`
	Labels    map[string]string `json:"labels"`
	Src       string            `json:"src,omitempty"`
	Pos       *int64            `json:"pos,omitempty"`
}

// helloFrame names the job's home partition and the partitions its history
// is read from.
func helloFrame(job string, partition int32, partitions []int32, now time.Time) []byte {
	b, _ := json.Marshal(struct {
		Type       string  `json:"type"`
		Job        string  `json:"job"`
		Partition  int32   `json:"partition"`
		Partitions []int32 `json:"partitions"`
		ServerTime string  `json:"server_time"`
	}{TypeHello, job, partition, partitions, now.UTC().Format(record.TimeLayout)})
	return b
}

// caughtUpFrame carries the home partition's position as offset, and the
// cursor.
func caughtUpFrame(dst []byte, offset int64, pos map[int32]int64) []byte {
	dst = append(dst, `{"type":"caught_up","offset":`...)
	dst = strconv.AppendInt(dst, offset, 10)
	dst = append(dst, `,"cursor":"`...)
	dst = appendCursor(dst, pos)
	return append(dst, '"', '}')
}

func droppedFrame(dst []byte, d hub.Drop, pos map[int32]int64) []byte {
	dst = append(dst, `{"type":"dropped","partition":`...)
	dst = strconv.AppendInt(dst, int64(d.Partition), 10)
	dst = append(dst, `,"count":`...)
	dst = strconv.AppendInt(dst, d.Count, 10)
	dst = append(dst, `,"from_offset":`...)
	dst = strconv.AppendInt(dst, d.From, 10)
	dst = append(dst, `,"to_offset":`...)
	dst = strconv.AppendInt(dst, d.To, 10)
	dst = append(dst, `,"cursor":"`...)
	dst = appendCursor(dst, pos)
	return append(dst, '"', '}')
}

func errorFrame(code websocket.StatusCode, reason string) []byte {
	b, _ := json.Marshal(struct {
		Type   string `json:"type"`
		Code   int    `json:"code"`
		Reason string `json:"reason"`
	}{TypeError, int(code), reason})
	return b
}

const entriesPrefix = `{"type":"entries","entries":[`

// closeReason fits a reason into a close frame (at most 123 bytes).
func closeReason(s string) string {
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
