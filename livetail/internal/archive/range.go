package archive

import (
	"context"
	"slices"
	"time"

	"github.com/logpipe/logpipe/livetail/internal/hub"
)

// sinceLayout writes a since bound at the index's precision: @timestamp
// is a date, kept to the millisecond, so the bound is rounded down to it
// and the entries are held to the exact bound afterwards.
const sinceLayout = "2006-01-02T15:04:05.000Z"

// Range returns the records of partition p with from <= offset < to whose
// job is one of jobs and whose timestamp is at or after since (zero: no
// bound), in offset order, at most limit of them: the first ones (oldest)
// when first is true, else the last ones. It implements session.Archive.
//
// It costs one search per 1,000 entries returned (sorted by kafka.offset,
// paged with search_after), and one more when the last page is full.
func (a *Archive) Range(ctx context.Context, jobs []string, p int32, from, to int64, since time.Time, limit int, first bool) ([]*hub.Entry, error) {
	if limit <= 0 || from >= to || len(jobs) == 0 {
		return nil, nil
	}
	f := a.topic(nil).
		append(map[string]any{"terms": map[string]any{"job": jobs}}).
		term("kafka.partition", p).
		rangeOf("kafka.offset", map[string]any{"gte": from, "lt": to})
	if !since.IsZero() {
		f = f.rangeOf("@timestamp", map[string]any{"gte": since.UTC().Truncate(time.Millisecond).Format(sinceLayout)})
	}
	order := "asc"
	if !first {
		order = "desc"
	}
	var out []*hub.Entry
	var after []any
	for len(out) < limit {
		size := min(pageSize, limit-len(out))
		hits, err := a.search(ctx, query(f, "kafka.offset", order, size, after))
		if err != nil {
			return nil, err
		}
		for _, h := range hits {
			e, err := entry(h)
			if err != nil {
				return nil, err
			}
			if !since.IsZero() && e.TS < since.UnixNano() {
				continue // in since's millisecond, before it
			}
			out = append(out, e)
		}
		if len(hits) < size {
			break
		}
		after = hits[len(hits)-1].Sort
	}
	if !first {
		slices.Reverse(out)
	}
	return out, nil
}

// topic adds the log topic's term to f, when the archive has one.
func (a *Archive) topic(f filter) filter {
	if a.opts.Topic == "" {
		return f
	}
	return f.term("kafka.topic", a.opts.Topic)
}

func (f filter) append(clause map[string]any) filter { return append(slices.Clip(f), clause) }
