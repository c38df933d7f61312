package session

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/logpipe/logpipe/livetail/internal/hub"
)

// Archive reads records older than Kafka's retention from the search index.
type Archive interface {
	// Range returns the records of partition p with from <= offset < to whose job is
	// one of jobs and whose timestamp is at or after since (zero: no bound), in offset
	// order, at most limit of them: the first ones (oldest) when first is true, else the last ones.
	Range(ctx context.Context, jobs []string, p int32, from, to int64, since time.Time, limit int, first bool) ([]*hub.Entry, error)
}

// maxArchiveLines bounds the lines one session reads from the archive
// (shared by its partitions): the newest ones below Kafka's retention are
// read, older ones are announced by a dropped frame.
const maxArchiveLines = 10000

// belowRetention returns, when the engine has an archive, the ranges of
// history that lie below the oldest offset Kafka retains: for since=, the
// partitions whose history starts at their oldest record (starts nil:
// from offset 0, bounded by the time); for a cursor, the partitions in
// starts, from the offset after the cursor. ranges are the Kafka ranges,
// which begin at the oldest retained offset where the archive is needed.
func (s *Session) belowRetention(ctx context.Context, ranges []hub.Gap, starts map[int32]int64) ([]hub.Gap, error) {
	if s.e.Archive == nil {
		return nil, nil
	}
	var below []hub.Gap
	for _, r := range ranges {
		if starts != nil {
			if from, ok := starts[r.Partition]; ok && from < r.From {
				below = append(below, hub.Gap{Partition: r.Partition, From: from, To: r.From})
			}
			continue
		}
		oldest, _, err := s.e.History.Bounds(ctx, r.Partition)
		if err != nil {
			return nil, UpstreamError{err}
		}
		if oldest > 0 && r.From <= oldest {
			below = append(below, hub.Gap{Partition: r.Partition, From: 0, To: oldest})
		}
	}
	return below, nil
}

// readBelow reads the archive's lines of the ranges below Kafka's
// retention, except on partitions whose Kafka history was cut by
// --max-history-scan (skipped: history is skipped oldest first), for the
// session to send before those partitions' Kafka history; the session's
// positions on them start before the first line read. It returns the
// drops of older archive lines left out (see fromArchive).
func (s *Session) readBelow(ctx context.Context, below []hub.Gap, skipped []hub.Drop) (drops []hub.Drop, err error) {
	for _, b := range below {
		if slices.ContainsFunc(skipped, func(d hub.Drop) bool { return d.Partition == b.Partition }) {
			continue
		}
		archived, drop, err := s.fromArchive(ctx, b, len(below))
		if err != nil {
			return nil, err
		}
		if drop != nil {
			drops = append(drops, *drop)
		}
		if len(archived) == 0 {
			continue
		}
		if s.archived == nil {
			s.archived = map[int32][]*hub.Entry{}
		}
		s.archived[b.Partition] = archived
		s.sent[b.Partition] = archived[0].Offset - 1
		s.pos[b.Partition] = archived[0].Offset - 1
	}
	return drops, nil
}

// fromArchive reads the jobs' lines of range b from the archive (since
// the session's since, if any): the newest ones, at most an equal share of
// maxArchiveLines among n ranges; when there are more, the older ones are
// returned as a drop (its count is of offsets, an upper bound on lines).
func (s *Session) fromArchive(ctx context.Context, b hub.Gap, n int) ([]*hub.Entry, *hub.Drop, error) {
	limit := max(1, int(min(s.e.MaxScan, maxArchiveLines))/max(1, n))
	list, err := s.e.Archive.Range(ctx, s.p.Jobs, b.Partition, b.From, b.To, s.p.Since, limit, false)
	if err != nil {
		return nil, nil, s.archiveError(ctx, err)
	}
	if len(list) < limit {
		return list, nil, nil
	}
	older, err := s.e.Archive.Range(ctx, s.p.Jobs, b.Partition, b.From, list[0].Offset, s.p.Since, 1, true)
	if err != nil {
		return nil, nil, s.archiveError(ctx, err)
	}
	if len(older) == 0 {
		return list, nil, nil
	}
	from := older[0].Offset
	return list, &hub.Drop{Partition: b.Partition, Count: list[0].Offset - from, From: from, To: list[0].Offset - 1}, nil
}

// archiveError turns a failed archive read into the session's end cause.
func (s *Session) archiveError(ctx context.Context, err error) error {
	return s.e.pageError(ctx, fmt.Errorf("reading the archive: %w", err))
}
