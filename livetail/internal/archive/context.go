package archive

import (
	"context"
	"fmt"
	"slices"

	"github.com/logpipe/logpipe/common/record"
	"github.com/logpipe/logpipe/livetail/internal/hub"
)

// Context returns the line of job at Kafka position p:offset and up to
// before and after of its neighbours in its source file generation (the
// same src), in log.offset order: those with the next lower and the next
// higher log.offset. For a line without a source position, the
// neighbours are job's lines of partition p by Kafka offset. line is nil
// when the index does not hold that line (a line the agent sent twice is
// indexed once, at its first position).
//
// It costs three searches: the line (1 document) and each side (at most
// before and after documents); more only where another generation of the
// same file, without log.file.generation, shares the positions.
func (a *Archive) Context(ctx context.Context, job string, p int32, offset int64, before, after int) (line *hub.Entry, below, above []*hub.Entry, err error) {
	at := a.topic(nil).term("job", job).term("kafka.partition", p)
	hits, err := a.search(ctx, query(at.term("kafka.offset", offset), "kafka.offset", "asc", 1, nil))
	if err != nil || len(hits) == 0 {
		return nil, nil, nil, err
	}
	line, err = entry(hits[0])
	if err != nil {
		return nil, nil, nil, err
	}
	rec, err := record.Decode(hits[0].Source)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: the document of %d:%d: %w", ErrResponse, p, offset, err)
	}
	field, pos, same := "kafka.offset", offset, at
	if rec.HasPosition() {
		field, pos, same = "log.offset", rec.Log.Offset, source(a.topic(nil).term("job", job), &rec)
	}
	side := func(op, order string, n int) ([]*hub.Entry, error) {
		// The documents of other generations the query also matches (see
		// source) are left out, and more asked for when they took room.
		for size := n; n > 0; size *= 4 {
			hits, err := a.search(ctx, query(same.rangeOf(field, map[string]any{op: pos}), field, order, size, nil))
			if err != nil {
				return nil, err
			}
			out := make([]*hub.Entry, 0, n)
			for _, h := range hits {
				e, err := entry(h)
				if err != nil {
					return nil, err
				}
				if e.Src == line.Src && len(out) < n {
					out = append(out, e)
				}
			}
			if len(out) == n || len(hits) < size || size*4 > maxWindow {
				return out, nil
			}
		}
		return nil, nil
	}
	if below, err = side("lt", "desc", before); err != nil {
		return nil, nil, nil, err
	}
	slices.Reverse(below)
	if above, err = side("gt", "asc", after); err != nil {
		return nil, nil, nil, err
	}
	return line, below, above, nil
}

// source adds to f the terms on the fields hub.SourceID hashes for r
// (which HasPosition says are set): the documents of r's source file
// generation, and, for a record without log.file.generation, those of
// the same file that have one, which the caller leaves out by their src
// (a query for a missing field, exists, is not needed then).
func source(f filter, r *record.Record) filter {
	f = f.term("agent.name", r.Agent.Name).term("log.file.fingerprint", r.Log.File.Fingerprint)
	if r.Log.File.Generation != "" {
		return f.term("log.file.generation", r.Log.File.Generation)
	}
	return f.term("log.file.device_id", r.Log.File.DeviceID).term("log.file.inode", r.Log.File.Inode)
}
