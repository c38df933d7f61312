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
	"github.com/logpipe/logpipe/livetail/internal/wire"
)

// coverEvery is how often a live session moves its cursor past records of
// other jobs, so that a resume does not scan them again.
const coverEvery = time.Second

// Session is one live tail: history, then live entries, on one connection.
//
// A job's lines may be on several partitions (producers with different
// partitioners, partitions added): the session follows the job on every
// partition, reads history from those where its lines are or may be
// (deps), merges partitions by time, and keeps, per partition, the last
// offset sent (to skip what was sent already) and the cursor position.
//
// It also skips lines the agent sent twice (see sources): history and live
// alike go through sendEntries, in the order the client gets them, so a
// resend is skipped whether its first copy came from history or live. A
// resend is not a gap: it moves the cursor as a sent line does, and no
// dropped frame announces it.
type Session struct {
	e     *Engine
	c     Conn
	p     Params
	home  int32   // the job's partition under DESIGN.md's partitioner
	deps  []int32 // partitions history is read from, in order
	sub   *hub.Sub
	joins []int64 // per partition, the first offset the subscription queues

	sent      map[int32]int64 // per partition, the highest offset sent (entries at or below are skipped)
	pos       map[int32]int64 // the cursor: per partition, the last offset the client has everything up to
	srcs      sources         // per source file, the highest log.offset sent
	pings     wire.Pinger
	frame     []byte
	items     []hub.Item
	pend      []*hub.Entry
	ping      *time.Ticker // while history is sent
	lastCover time.Time
	caughtUp  bool
	tailEnd   map[int32]int64        // tail=N: per partition, the end of what was read
	archived  map[int32][]*hub.Entry // per partition, the lines read from the archive, sent before its Kafka history
	live      live
}

// New returns a session of p on c, p resolved by Partitions into home and
// deps; sub queues its live lines from joins on (hub.Subscribe). stop ends
// the session (cancels the context it is run with), with the cause: a ping
// that goes unanswered calls it.
func (e *Engine) New(c Conn, p Params, home int32, deps []int32, sub *hub.Sub, joins []int64, stop context.CancelCauseFunc) *Session {
	return &Session{
		e: e, c: c, p: p, home: home, deps: deps, sub: sub, joins: joins,
		sent: map[int32]int64{}, pos: map[int32]int64{},
		pings: wire.Pinger{Conn: c, Interval: e.PingInterval, Fail: stop},
	}
}

// Run sends the session's frames until ctx ends or something fails, and
// returns why it stopped: Open, then the live phase (GoLive). It returns
// once the ping outstanding at the end, if any, is answered or times out.
func (s *Session) Run(ctx context.Context) error {
	err := s.Open(ctx)
	if err == nil {
		ended := make(chan error, 1)
		s.GoLive(ctx, func(cause error) { ended <- cause })
		err = <-ended
	}
	s.Wait()
	return err
}

// Wait returns once the session's ping, if one is outstanding, has been
// answered or has failed. Call it once the session has ended and its
// connection is closed.
func (s *Session) Wait() { s.pings.Wait() }

// Open sends hello and the history asked for, up to caught_up, and returns
// why it stopped if the session ended meanwhile; then the session goes
// live (GoLive).
func (s *Session) Open(ctx context.Context) error {
	s.ping = time.NewTicker(s.e.PingInterval)
	err := s.stream(ctx)
	if err != nil {
		s.ping.Stop()
	}
	if ctx.Err() != nil {
		// However the last call failed, the session's context says why.
		return context.Cause(ctx)
	}
	return err
}

func (s *Session) stream(ctx context.Context) error {
	if err := s.write(s.helloFrame(ctx)); err != nil {
		return err
	}
	ranges, pre, gaps, err := s.start(ctx)
	if err != nil {
		return err
	}
	for _, g := range gaps {
		if err := s.write(s.droppedFrame(g)); err != nil {
			return err
		}
	}
	if err := s.sendEntries(pre); err != nil {
		return err
	}
	for p, hi := range s.tailEnd {
		// What tail=N read beyond the join offset and left out is older
		// than the last N lines: the queued copies are skipped too.
		s.sent[p] = max(s.sentOf(p), hi-1)
		s.pos[p] = max(s.posOf(p), hi-1)
	}
	if err := s.readRanges(ctx, ranges); err != nil {
		return err
	}
	return s.catchUp(ctx)
}

// helloFrame opens the stream (see wire.Hello).
func (s *Session) helloFrame(ctx context.Context) []byte {
	return wire.HelloFrame(wire.Hello{
		Jobs: s.p.Jobs, Partition: s.home, Partitions: s.deps,
		HistoryFrom: s.historyFrom(ctx), Archive: s.e.Archive != nil,
	}, time.Now())
}

// historyFrom returns the time of the oldest record Kafka holds on the
// session's partitions, when History can tell it (OldestTimes); zero when
// it cannot, or the partitions are empty.
func (s *Session) historyFrom(ctx context.Context) time.Time {
	ot, ok := s.e.History.(OldestTimes)
	if !ok {
		return time.Time{}
	}
	var from time.Time
	for _, p := range s.deps {
		t, err := ot.OldestTime(ctx, p)
		if err != nil || t.IsZero() {
			continue // unknown here: left out of the minimum
		}
		if from.IsZero() || t.Before(from) {
			from = t
		}
	}
	return from
}

// join returns the first offset of p the subscription queues.
func (s *Session) join(p int32) int64 {
	if int(p) < len(s.joins) {
		return s.joins[p]
	}
	return 0
}

// start works out the history: the ranges to read from Kafka, the entries
// already read for tail=N, and the ranges skipped (a cursor older than the
// retained data, or history beyond --max-history-scan). It sets, per
// partition, where the session's cursor and duplicate check begin.
func (s *Session) start(ctx context.Context) (ranges []hub.Gap, pre []*hub.Entry, gaps []hub.Drop, err error) {
	var below []hub.Gap // ranges to read from the archive, below Kafka's oldest offsets
	for _, p := range s.deps {
		s.pos[p] = s.join(p) - 1
		if s.p.Mode != ModeTail { // tail=N sends lines before the join offsets
			s.sent[p] = s.join(p) - 1
		}
	}
	switch s.p.Mode {
	case ModeTail:
		if s.p.Tail > 0 {
			pre, err = s.lastLines(ctx, s.p.Tail)
		}
		return nil, pre, nil, err
	case ModeSince:
		for _, p := range s.deps {
			off, err := s.e.History.OffsetAt(ctx, p, s.p.Since)
			if err != nil {
				return nil, nil, nil, UpstreamError{err}
			}
			end, err := s.historyEnd(ctx, p)
			if err != nil {
				return nil, nil, nil, err
			}
			ranges = append(ranges, hub.Gap{Partition: p, From: off, To: end})
		}
		below, err = s.belowRetention(ctx, ranges, nil)
		if err != nil {
			return nil, nil, nil, err
		}
	case ModeCursor:
		starts := map[int32]int64{} // where the cursor asks for more than Kafka retains
		given := map[int32]bool{}
		for _, c := range s.p.Cursor { // the handler resolved a bare offset's partition
			p := c.Partition
			given[p] = true
			oldest, newest, err := s.e.History.Bounds(ctx, p)
			if err != nil {
				return nil, nil, nil, UpstreamError{err}
			}
			start := c.Offset + 1
			end := max(newest, s.join(p)) // see historyEnd
			if start > end {
				return nil, nil, nil, &ParamError{Param: "cursor", Reason: fmt.Sprintf("offset %d is beyond the end of partition %d (next offset %d)", c.Offset, p, end)}
			}
			if start < oldest && s.e.Archive != nil {
				starts[p] = start // read from the archive up to oldest
				start = oldest
			}
			if start < oldest {
				// Retention deleted what followed the cursor: the count is of
				// offsets, an upper bound on the jobs' lines.
				gaps = append(gaps, hub.Drop{Partition: p, Count: oldest - start, From: start, To: oldest - 1})
				start = oldest
			}
			ranges = append(ranges, hub.Gap{Partition: p, From: start, To: end})
		}
		// Where the job's lines appeared after the cursor was made (a
		// producer with another partitioner, partitions added), read them
		// from the first this process saw.
		for _, seen := range s.seenElsewhere(given) {
			end, err := s.historyEnd(ctx, seen.Partition)
			if err != nil {
				return nil, nil, nil, err
			}
			if seen.First < end {
				ranges = append(ranges, hub.Gap{Partition: seen.Partition, From: seen.First, To: end})
			}
		}
		below, err = s.belowRetention(ctx, ranges, starts)
		if err != nil {
			return nil, nil, nil, err
		}
	default:
		return nil, nil, nil, nil
	}
	ranges, skipped := bound(ranges, s.e.MaxScan)
	for _, r := range ranges {
		s.sent[r.Partition] = r.From - 1
		s.pos[r.Partition] = r.From - 1
	}
	older, err := s.readBelow(ctx, below, skipped)
	if err != nil {
		return nil, nil, nil, err
	}
	gaps = append(gaps, older...)
	return ranges, nil, append(gaps, skipped...), nil
}

// seenElsewhere returns, per partition the cursor does not name, the first
// offset of any of the jobs this process saw there.
func (s *Session) seenElsewhere(given map[int32]bool) []hub.Seen {
	var out []hub.Seen
	for _, job := range s.p.Jobs {
		for _, seen := range s.e.Hub.JobPartitions(job) {
			if given[seen.Partition] {
				continue
			}
			i := slices.IndexFunc(out, func(o hub.Seen) bool { return o.Partition == seen.Partition })
			if i < 0 {
				out = append(out, seen)
			} else {
				out[i].First = min(out[i].First, seen.First)
			}
		}
	}
	return out
}

// historyEnd returns where the history of partition p ends: at the
// partition's end when the session started, or at the subscription's join
// offset when the hub is past it. Right after livetail starts, its
// consumers are still reading back the records before the end
// (--jobs-scan) when the first sessions join, so the join offsets lag; the
// lines already in Kafka are history all the same, read here and merged
// by time with the other partitions' (tail=N does the same), and the
// consumers' copies, queued later, are skipped as sent.
func (s *Session) historyEnd(ctx context.Context, p int32) (int64, error) {
	_, newest, err := s.e.History.Bounds(ctx, p)
	if err != nil {
		return 0, UpstreamError{err}
	}
	return max(newest, s.join(p)), nil
}

// bound shortens ranges so that together they hold at most budget records,
// each range losing its oldest part and no range shrinking below an equal
// share of the budget while another is longer; it returns the ranges to
// read and what was cut off (as drops: counts of offsets, upper bounds on
// the job's lines).
func bound(ranges []hub.Gap, budget int64) (kept []hub.Gap, cut []hub.Drop) {
	var total int64
	for _, r := range ranges {
		total += max(0, r.To-r.From)
	}
	if total <= budget {
		return ranges, nil
	}
	// Water-fill: the shortest ranges are read whole, the rest get equal
	// shares of what is left.
	order := make([]int, len(ranges))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		la, lb := ranges[a].To-ranges[a].From, ranges[b].To-ranges[b].From
		return int(la - lb)
	})
	allow := make([]int64, len(ranges))
	left := budget
	for i, idx := range order {
		share := left / int64(len(order)-i)
		n := min(max(0, ranges[idx].To-ranges[idx].From), share)
		allow[idx] = n
		left -= n
	}
	for i, r := range ranges {
		if from := r.To - allow[i]; from > r.From {
			cut = append(cut, hub.Drop{Partition: r.Partition, Count: from - r.From, From: r.From, To: from - 1})
			r.From = from
		}
		kept = append(kept, r)
	}
	return kept, cut
}

// lastLines reads the job's last n lines over its partitions: each
// partition is scanned backwards in growing windows from its end (or from
// the subscription's join offset if the hub is ahead of what Bounds saw),
// within an equal share of MaxScan records; the partitions' lines are merged
// by time and the last n kept.
func (s *Session) lastLines(ctx context.Context, n int) ([]*hub.Entry, error) {
	share := max(1, s.e.MaxScan/int64(max(1, len(s.deps))))
	var lists [][]*hub.Entry
	for _, p := range s.deps {
		list, err := s.lastLinesOf(ctx, p, n, share)
		if err != nil {
			return nil, err
		}
		if len(list) > 0 {
			lists = append(lists, list)
		}
	}
	out := mergeByTime(lists)
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out, nil
}

func (s *Session) lastLinesOf(ctx context.Context, p int32, n int, maxScan int64) ([]*hub.Entry, error) {
	oldest, newest, err := s.e.History.Bounds(ctx, p)
	if err != nil {
		return nil, UpstreamError{err}
	}
	hi := max(s.join(p), newest)
	if s.tailEnd == nil {
		s.tailEnd = map[int32]int64{}
	}
	s.tailEnd[p] = hi
	lines, _, err := s.e.linesBelow(ctx, s.p.Jobs, s.p.Grep, p, oldest, hi, n, maxScan, s.pingIfDue)
	if err != nil {
		return nil, s.readError(ctx, err)
	}
	return lines, nil
}

// linesBelow reads the last n lines of jobs (that grep matches, when not
// nil) of partition p in [lo, hi) from Kafka, scanning backwards from hi
// in growing windows, at most maxScan records. It returns them in offset
// order and the lowest offset it scanned (lo when it reached it).
// progress, when not nil, is called now and then while it scans.
func (e *Engine) linesBelow(ctx context.Context, jobs []string, grep *regexp.Regexp, p int32, lo, hi int64, n int, maxScan int64, progress func()) (lines []*hub.Entry, reached int64, err error) {
	window := int64(max(4*n, 1024))
	var scanned int64
	var chunks [][]*hub.Entry
	total := 0
	for hi > lo && total < n && scanned < maxScan {
		from := max(lo, hi-window, hi-(maxScan-scanned))
		need := n - total
		var chunk []*hub.Entry
		err := e.History.Read(ctx, p, from, hi, jobs, func(e *hub.Entry) error {
			if e == nil {
				if progress != nil {
					progress()
				}
				return nil
			}
			if grep != nil && !grep.MatchString(e.Line) {
				return nil
			}
			chunk = append(chunk, e)
			if len(chunk) >= 2*need { // keep only the last need entries
				copy(chunk, chunk[len(chunk)-need:])
				clear(chunk[need:])
				chunk = chunk[:need]
			}
			return nil
		})
		if err != nil {
			return nil, hi, err
		}
		if len(chunk) > need {
			chunk = chunk[len(chunk)-need:]
		}
		chunks = append(chunks, chunk)
		total += len(chunk)
		scanned += hi - from
		hi = from
		window *= 2
	}
	lines = make([]*hub.Entry, 0, total)
	for i := len(chunks) - 1; i >= 0; i-- {
		lines = append(lines, chunks[i]...)
	}
	return lines, hi, nil
}

// mergeByTime merges lists, each in offset order, into one ordered by time
// where lists differ; each list's own order is kept.
func mergeByTime(lists [][]*hub.Entry) []*hub.Entry {
	if len(lists) == 1 {
		return lists[0]
	}
	n := 0
	for _, l := range lists {
		n += len(l)
	}
	out := make([]*hub.Entry, 0, n)
	next := make([]int, len(lists))
	for len(out) < n {
		best := -1
		for i, l := range lists {
			if next[i] < len(l) && (best < 0 || l[next[i]].TS < lists[best][next[best]].TS) {
				best = i
			}
		}
		out = append(out, lists[best][next[best]])
		next[best]++
	}
	return out
}

// readError turns a failed history read into the session's end cause.
func (s *Session) readError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if errors.Is(err, wire.ErrPeerGone) {
		return err
	}
	return UpstreamError{err}
}

// catchUp sends what the subscription queued while history was read; when
// the queue overflowed it reads the missing ranges from Kafka too, and so
// on until it has caught up. Then it sends caught_up.
func (s *Session) catchUp(ctx context.Context) error {
	for round := 0; ; round++ {
	settle:
		for {
			st := s.sub.Settle(round >= maxCatchUpRounds)
			switch st.Step {
			case hub.StepDrain:
				if err := s.takeAndSend(); err != nil {
					return err
				}
			case hub.StepGap:
				if err := s.readRanges(ctx, st.Gaps); err != nil {
					return err
				}
				break settle
			case hub.StepDone:
				s.caughtUp = true
				return s.write(s.caughtUpFrame())
			}
		}
	}
}

// stream is one partition's history read by its own goroutine.
type stream struct {
	ch   chan *hub.Entry
	head *hub.Entry
	done bool
	err  error // set before ch is closed
}

// readRanges sends the job's entries in ranges, read from Kafka, one
// goroutine per range, merged by time. It pings the client while it waits
// for them; leaving (the client gone, the session ended) stops the reads.
func (s *Session) readRanges(ctx context.Context, ranges []hub.Gap) error {
	ranges = slices.DeleteFunc(slices.Clone(ranges), func(r hub.Gap) bool {
		return r.From >= r.To && len(s.archived[r.Partition]) == 0
	})
	if len(ranges) == 0 {
		return nil
	}
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	var streams []*stream
	grep := s.p.Grep
	for _, r := range ranges {
		st := &stream{ch: make(chan *hub.Entry, 256)}
		streams = append(streams, st)
		archived := s.archived[r.Partition]
		delete(s.archived, r.Partition)
		wg.Go(func() {
			defer close(st.ch)
			for _, e := range archived { // older than the Kafka range, in offset order
				if grep != nil && !grep.MatchString(e.Line) {
					continue
				}
				select {
				case st.ch <- e:
				case <-rctx.Done():
					st.err = rctx.Err()
					return
				}
			}
			st.err = s.e.History.Read(rctx, r.Partition, r.From, r.To, s.p.Jobs, func(e *hub.Entry) error {
				if e == nil || (grep != nil && !grep.MatchString(e.Line)) {
					return nil
				}
				select {
				case st.ch <- e:
					return nil
				case <-rctx.Done():
					return rctx.Err()
				}
			})
		})
	}
	for {
		for _, st := range streams {
			for st.head == nil && !st.done {
				if err := s.receive(ctx, st); err != nil {
					return err
				}
			}
		}
		var best *stream
		for _, st := range streams {
			if st.head != nil && (best == nil || st.head.TS < best.head.TS) {
				best = st
			}
		}
		if best == nil {
			break
		}
		s.pend = append(s.pend, best.head)
		best.head = nil
		if len(s.pend) >= s.e.BatchSize {
			if err := s.flushPending(); err != nil {
				return err
			}
		}
	}
	for i, r := range ranges {
		if err := streams[i].err; err != nil {
			return s.readError(ctx, err)
		}
		s.pos[r.Partition] = max(s.pos[r.Partition], r.To-1)
	}
	return s.flushPending()
}

// receive waits for st's next entry, sending what is pending first and
// pinging the client meanwhile.
func (s *Session) receive(ctx context.Context, st *stream) error {
	select {
	case e, ok := <-st.ch:
		st.head, st.done = e, !ok
		return nil
	default:
	}
	if err := s.flushPending(); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-s.ping.C:
			s.pings.Ping()
		case e, ok := <-st.ch:
			st.head, st.done = e, !ok
			return nil
		}
	}
}

func (s *Session) flushPending() error {
	err := s.sendEntries(s.pend)
	clear(s.pend)
	s.pend = s.pend[:0]
	return err
}

// takeAndSend sends everything queued that passes grep. An upstream
// failure is returned after what was queued before it has been sent. Now
// and then it also moves the cursor past the records of other jobs that the
// partitions published meanwhile.
func (s *Session) takeAndSend() error {
	var cover map[int32]int64
	if now := time.Now(); s.caughtUp && now.Sub(s.lastCover) >= coverEvery {
		s.lastCover = now
		// Read before Take: every record below these offsets has been
		// offered to the queue, so it is in what Take returns (or dropped,
		// and announced).
		cover = make(map[int32]int64, len(s.pos))
		for p := range s.pos {
			cover[p] = s.e.Hub.Next(p) - 1
		}
	}
	items, upErr := s.sub.Take(s.items)
	s.items = items
	for i := range items {
		if e := items[i].Entry; e != nil {
			if s.p.Grep == nil || s.p.Grep.MatchString(e.Line) {
				s.pend = append(s.pend, e)
			}
			continue
		}
		if err := s.flushPending(); err != nil {
			return err
		}
		d := items[i].Drop
		s.sent[d.Partition] = max(s.sentOf(d.Partition), d.To)
		s.pos[d.Partition] = max(s.posOf(d.Partition), d.To)
		if err := s.write(s.droppedFrame(d)); err != nil {
			return err
		}
	}
	for p, off := range cover {
		s.pos[p] = max(s.pos[p], off)
	}
	if err := s.flushPending(); err != nil {
		return err
	}
	return upErr
}

func (s *Session) sentOf(p int32) int64 {
	if off, ok := s.sent[p]; ok {
		return off
	}
	return -1
}

func (s *Session) posOf(p int32) int64 {
	if off, ok := s.pos[p]; ok {
		return off
	}
	return -1
}

// sendEntries writes entries frames, skipping what was sent already: a
// record at or below the last Kafka offset sent of its partition, and a
// line the agent sent again (at or below the highest log.offset sent of
// its source file).
func (s *Session) sendEntries(entries []*hub.Entry) error {
	b := wire.AppendEntriesStart(s.frame[:0])
	n, resent := 0, 0
	defer func() {
		if resent > 0 {
			s.e.Resent.Add(float64(resent))
		}
	}()
	for _, e := range entries {
		if e.Offset <= s.sentOf(e.Partition) {
			continue
		}
		if e.Src != 0 && s.srcs.resent(e.Src, e.Pos) {
			s.sent[e.Partition] = e.Offset
			s.pos[e.Partition] = max(s.posOf(e.Partition), e.Offset)
			resent++
			continue
		}
		if n > 0 && (n >= s.e.BatchSize || len(b)+len(e.JSON) > maxFrameBytes) {
			if err := s.writeEntries(b, n); err != nil {
				return err
			}
			b, n = wire.AppendEntriesStart(s.frame[:0]), 0
		}
		if n > 0 {
			b = append(b, ',')
		}
		b = append(b, e.JSON...)
		n++
		s.sent[e.Partition] = e.Offset
		s.pos[e.Partition] = max(s.posOf(e.Partition), e.Offset)
	}
	if n == 0 {
		return nil
	}
	return s.writeEntries(b, n)
}

func (s *Session) writeEntries(b []byte, n int) error {
	b = wire.AppendEntriesEnd(b, s.pos)
	err := s.write(b)
	if cap(b) > 256<<10 {
		s.frame = nil // do not keep a large buffer for the session's life
	} else {
		s.frame = b[:0]
	}
	if err == nil {
		s.e.Sent.Add(float64(n))
	}
	return err
}

func (s *Session) caughtUpFrame() []byte {
	return wire.CaughtUpFrame(s.frame[:0], s.posOf(s.home), s.pos)
}

func (s *Session) droppedFrame(d hub.Drop) []byte {
	return wire.DroppedFrame(s.frame[:0], d.Partition, d.Count, d.From, d.To, s.pos)
}

// write writes one frame; the connection fails it when the peer does not
// take it within its timeout (the ping interval, wire.Conn).
func (s *Session) write(b []byte) error {
	if err := s.c.Write(b); err != nil {
		return fmt.Errorf("%w: write: %w", wire.ErrPeerGone, err)
	}
	return nil
}

// pingIfDue starts a ping when one is due (see wire.Pinger); an unanswered one
// ends the session through its context, which stops the history reads.
func (s *Session) pingIfDue() {
	select {
	case <-s.ping.C:
		s.pings.Ping()
	default:
	}
}
