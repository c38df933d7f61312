package session

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/logpipe/logpipe/livetail/internal/hub"
)

// Why a page of earlier lines is the last one (Page.Stop).
const (
	StopStart     = "start"     // nothing older exists: the start of the topic, or of the archive
	StopRetention = "retention" // Kafka's retention ends here, and there is no archive
)

// archivePage is how many records one archive request of a page asks for
// at least.
const archivePage = 200

// Page is one page of earlier lines ("load earlier").
type Page struct {
	Entries []*hub.Entry // oldest first, merged by time
	Before  []Position   // where the next older page ends: per partition, lines strictly below
	More    bool         // older lines may exist
	Stop    string       // when More is false, why: StopStart or StopRetention
}

// EarlierParams are what a page of earlier lines is of.
type EarlierParams struct {
	Jobs   []string
	Grep   *regexp.Regexp // nil: every line
	Before []Position     // per partition, the offset of the oldest line the client holds
	Limit  int
}

// partPage is one partition's part of a page.
type partPage struct {
	lines     []*hub.Entry // in offset order
	next      int64        // where the partition's next page ends, unless some of lines are left out
	exhausted bool         // nothing of the jobs lies below lines on the partition
	retention bool         // exhausted at Kafka's oldest offset above the topic's start, with no archive
}

// Earlier returns the last Limit lines of the jobs below Before: on each
// partition it names, Kafka's lines below the offset, scanned backwards
// (as tail=N), then, below the oldest offset Kafka retains, the archive's
// (when the engine has one); the partitions' lines merged by time, the
// newest Limit kept. All of a page's reads together scan at most MaxScan
// records; a page cut short by that says More, and the next one goes on
// from where the scan stopped.
func (e *Engine) Earlier(ctx context.Context, p EarlierParams) (Page, error) {
	n := e.Hub.Partitions()
	for _, b := range p.Before {
		if b.Partition < 0 || int(b.Partition) >= n {
			return Page{}, &ParamError{Param: "before", Reason: fmt.Sprintf("partition %d does not exist (the topic has %d)", b.Partition, n)}
		}
	}
	parts, err := e.earlierOfEach(ctx, p)
	if err != nil {
		return Page{}, err
	}
	var lists [][]*hub.Entry
	for _, pp := range parts {
		lists = append(lists, pp.lines)
	}
	merged := mergeByTime(lists)
	if len(merged) > p.Limit {
		merged = merged[len(merged)-p.Limit:]
	}
	page := Page{Entries: merged, Stop: StopStart}
	for i, b := range p.Before {
		pp := parts[i]
		next := pp.next
		kept := slices.IndexFunc(merged, func(e *hub.Entry) bool { return e.Partition == b.Partition })
		switch {
		case kept >= 0 && len(pp.lines) > 0 && merged[kept] != pp.lines[0]:
			// Some of the partition's lines did not fit: the next page
			// ends at the oldest one that did.
			next, pp.exhausted = merged[kept].Offset, false
		case kept < 0 && len(pp.lines) > 0:
			next, pp.exhausted = b.Offset, false // none fitted: read again next time
		}
		page.Before = append(page.Before, Position{Partition: b.Partition, Offset: next})
		if !pp.exhausted {
			page.More, page.Stop = true, ""
		} else if pp.retention && !page.More {
			page.Stop = StopRetention
		}
	}
	return page, nil
}

// earlierOfEach reads the partitions' parts of a page at once, one
// goroutine per partition, each within an equal share of MaxScan.
func (e *Engine) earlierOfEach(ctx context.Context, p EarlierParams) ([]partPage, error) {
	share := max(1, e.MaxScan/int64(max(1, len(p.Before))))
	parts := make([]partPage, len(p.Before))
	errs := make([]error, len(p.Before))
	var wg sync.WaitGroup
	for i, b := range p.Before {
		wg.Go(func() { parts[i], errs[i] = e.earlierOf(ctx, p, b, share) })
	}
	wg.Wait()
	return parts, errors.Join(errs...)
}

// earlierOf reads one partition's part of a page: the last Limit lines
// below b, from Kafka and then the archive, scanning at most maxScan
// records.
func (e *Engine) earlierOf(ctx context.Context, p EarlierParams, b Position, maxScan int64) (partPage, error) {
	oldest, newest, err := e.History.Bounds(ctx, b.Partition)
	if err != nil {
		return partPage{}, UpstreamError{err}
	}
	var pp partPage
	hi := min(b.Offset, newest)
	if hi > oldest {
		lines, reached, err := e.linesBelow(ctx, p.Jobs, p.Grep, b.Partition, oldest, hi, p.Limit, maxScan, nil)
		if err != nil {
			return partPage{}, e.pageError(ctx, err)
		}
		pp.lines = lines
		switch {
		case len(lines) >= p.Limit: // what lay below them in their window was left out
			pp.next = lines[0].Offset
			return pp, nil
		case reached > oldest: // the scan's budget ran out
			pp.next = reached
			return pp, nil
		}
		maxScan -= hi - reached
	}
	hi = min(hi, oldest)
	if e.Archive == nil || hi <= 0 {
		pp.next, pp.exhausted, pp.retention = hi, true, hi > 0
		return pp, nil
	}
	older, next, exhausted, err := e.archivedBelow(ctx, p, b.Partition, hi, p.Limit-len(pp.lines), maxScan)
	if err != nil {
		return partPage{}, err
	}
	pp.lines = append(older, pp.lines...)
	pp.next, pp.exhausted = next, exhausted
	return pp, nil
}

// archivedBelow reads from the archive the last n lines of the jobs (that
// grep matches) of partition part below offset hi, backwards in pages, at
// most maxScan records. It returns them in offset order, where the next
// page ends, and whether the archive holds nothing older.
func (e *Engine) archivedBelow(ctx context.Context, p EarlierParams, part int32, hi int64, n int, maxScan int64) (lines []*hub.Entry, next int64, exhausted bool, err error) {
	var chunks [][]*hub.Entry
	total := 0
	for total < n && maxScan > 0 {
		ask := int(min(int64(max(n-total, archivePage)), maxScan))
		got, err := e.Archive.Range(ctx, p.Jobs, part, 0, hi, time.Time{}, ask, false)
		if err != nil {
			return nil, 0, false, e.pageError(ctx, fmt.Errorf("reading the archive: %w", err))
		}
		maxScan -= int64(len(got))
		var chunk []*hub.Entry
		for _, x := range got {
			if p.Grep == nil || p.Grep.MatchString(x.Line) {
				chunk = append(chunk, x)
			}
		}
		trimmed := false
		if need := n - total; len(chunk) > need {
			chunk, trimmed = chunk[len(chunk)-need:], true
		}
		chunks = append(chunks, chunk)
		total += len(chunk)
		switch {
		case trimmed: // the next page ends at the oldest line kept
			hi = chunk[0].Offset
		case len(got) < ask:
			exhausted, hi = true, 0
		default:
			hi = got[0].Offset
			continue
		}
		break
	}
	for i := len(chunks) - 1; i >= 0; i-- {
		lines = append(lines, chunks[i]...)
	}
	return lines, hi, exhausted, nil
}

// pageError turns a failed read of Kafka or of the archive into the
// error of the page or session it was for: the cause of ctx's end, or an
// UpstreamError.
func (e *Engine) pageError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return UpstreamError{err}
}
