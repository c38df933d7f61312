package session

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Position is a place in the topic: an offset of a partition.
type Position struct {
	Partition int32
	Offset    int64
}

// HomePartition stands, in a cursor's positions, for the job's home
// partition: a bare offset (the single-partition cursor of earlier
// versions) is one of the home partition. Engine.Partitions resolves it.
const HomePartition = -1

// maxCursorParts bounds the positions of one cursor.
const maxCursorParts = 1024

// ParseCursor reads a cursor, as wire.AppendCursor writes it:
// "p:offset[,p:offset...]", each the last offset of partition p a client
// was given (-1: none yet, from the partition's start), or a bare offset,
// which is of the job's home partition.
func ParseCursor(v string) ([]Position, error) {
	v = strings.TrimSpace(v)
	if !strings.Contains(v, ":") {
		off, err := strconv.ParseInt(v, 10, 64)
		if err != nil || off < -1 {
			return nil, fmt.Errorf("%q is not a cursor (the cursor of the last frame received)", Clip(v))
		}
		return []Position{{Partition: HomePartition, Offset: off}}, nil
	}
	parts := strings.Split(v, ",")
	if len(parts) > maxCursorParts {
		return nil, fmt.Errorf("more than %d partitions", maxCursorParts)
	}
	out := make([]Position, 0, len(parts))
	for _, part := range parts {
		ps, os, ok := strings.Cut(strings.TrimSpace(part), ":")
		p, perr := strconv.ParseInt(ps, 10, 32)
		off, oerr := strconv.ParseInt(os, 10, 64)
		if !ok || perr != nil || oerr != nil || p < 0 || off < -1 {
			return nil, fmt.Errorf("%q is not a partition:offset pair (the cursor of the last frame received)", Clip(part))
		}
		if slices.ContainsFunc(out, func(x Position) bool { return x.Partition == int32(p) }) {
			return nil, fmt.Errorf("partition %d is given twice", p)
		}
		out = append(out, Position{Partition: int32(p), Offset: off})
	}
	slices.SortFunc(out, func(a, b Position) int { return int(a.Partition - b.Partition) })
	return out, nil
}

// Clip shortens a value quoted in an error, which ends up in a close reason.
func Clip(s string) string {
	const n = 24
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}
