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
// before and after documents).
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
		if n <= 0 {
			return nil, nil
		}
		hits, err := a.search(ctx, query(same.rangeOf(field, map[string]any{op: pos}), field, order, n, nil))
		if err != nil {
			return nil, err
		}
		out := make([]*hub.Entry, 0, len(hits))
		for _, h := range hits {
			e, err := entry(h)
			if err != nil {
				return nil, err
			}
			if e.Src == line.Src { // the hashed fields matched: the same file generation
				out = append(out, e)
			}
		}
		return out, nil
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

// source adds to f the terms on every field hub.SourceID hashes for r: the
// documents of r's source file generation. A field r leaves empty must be
// absent.
func source(f filter, r *record.Record) filter {
	fields := []struct{ name, v string }{
		{"agent.name", r.Agent.Name},
		{"log.file.fingerprint", r.Log.File.Fingerprint},
		{"log.file.generation", r.Log.File.Generation},
	}
	if r.Log.File.Generation == "" {
		fields = append(fields,
			struct{ name, v string }{"log.file.device_id", r.Log.File.DeviceID},
			struct{ name, v string }{"log.file.inode", r.Log.File.Inode})
	}
	var absent []any
	for _, fl := range fields {
		if fl.v == "" {
			absent = append(absent, map[string]any{"exists": map[string]any{"field": fl.name}})
			continue
		}
		f = f.term(fl.name, fl.v)
	}
	if len(absent) > 0 {
		f = f.append(map[string]any{"bool": map[string]any{"must_not": absent}})
	}
	return f
}
