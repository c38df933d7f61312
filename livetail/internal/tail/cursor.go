package tail

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Position is a place in the topic: an offset of a partition.
type Position struct {
	Partition int32
	Offset    int64
}

// homePartition stands, in a parsed cursor, for the job's home partition:
// a bare offset (the single-partition cursor of earlier versions) is one of
// the home partition.
const homePartition = -1

// maxCursorParts bounds the positions of one cursor.
const maxCursorParts = 1024

// ParseCursor reads a cursor: "p:offset[,p:offset...]", each the last offset
// of partition p a client was given (-1: none yet, from the partition's
// start), or a bare offset, which is of the job's home partition.
func ParseCursor(v string) ([]Position, error) {
	v = strings.TrimSpace(v)
	if !strings.Contains(v, ":") {
		off, err := strconv.ParseInt(v, 10, 64)
		if err != nil || off < -1 {
			return nil, fmt.Errorf("%q is not a cursor (the cursor of the last frame received)", clip(v))
		}
		return []Position{{Partition: homePartition, Offset: off}}, nil
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
			return nil, fmt.Errorf("%q is not a partition:offset pair (the cursor of the last frame received)", clip(part))
		}
		if slices.ContainsFunc(out, func(x Position) bool { return x.Partition == int32(p) }) {
			return nil, fmt.Errorf("partition %d is given twice", p)
		}
		out = append(out, Position{Partition: int32(p), Offset: off})
	}
	slices.SortFunc(out, func(a, b Position) int { return int(a.Partition - b.Partition) })
	return out, nil
}

// appendCursor appends pos as a cursor, partitions in order.
func appendCursor(dst []byte, pos map[int32]int64) []byte {
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
