package tail

import (
	"context"
	"fmt"
	"time"

	"github.com/coder/websocket"

	"github.com/logpipe/logpipe/livetail/internal/hub"
)

// conn is the part of *websocket.Conn a session writes to; the session is
// its only writer.
type conn interface {
	Write(ctx context.Context, typ websocket.MessageType, p []byte) error
	Ping(ctx context.Context) error
}

// session is one live tail: history, then live entries, on one connection.
type session struct {
	h    *Handler
	c    conn
	p    Params
	part int32
	sub  *hub.Sub
	join int64 // first offset the subscription queues

	lastSent  int64 // highest offset sent (entries at or below it are skipped)
	frame     []byte
	items     []hub.Item
	pend      []*hub.Entry
	ping      *time.Ticker
	lastFlush time.Time
}

// run sends the session's frames until ctx ends or something fails, and
// returns why it stopped.
func (s *session) run(ctx context.Context) error {
	s.ping = time.NewTicker(s.h.opts.PingInterval)
	defer s.ping.Stop()
	err := s.stream(ctx)
	if ctx.Err() != nil {
		// However the last call failed, the session's context says why.
		return context.Cause(ctx)
	}
	return err
}

func (s *session) stream(ctx context.Context) error {
	if err := s.write(helloFrame(s.p.Job, s.part, time.Now())); err != nil {
		return err
	}
	start, pre, gap, err := s.start(ctx)
	if err != nil {
		return err
	}
	s.lastSent = start - 1
	if s.p.Mode == ModeTail {
		s.lastSent = -1 // pre holds the lines before start
	}
	if gap.Count > 0 {
		if err := s.write(droppedFrame(s.frame[:0], gap)); err != nil {
			return err
		}
	}
	if err := s.sendEntries(pre); err != nil {
		return err
	}
	if err := s.catchUp(ctx, start); err != nil {
		return err
	}
	return s.live(ctx)
}

// start returns the offset history starts at, the entries already read for
// tail=N, and the range lost to retention for a cursor older than the data.
func (s *session) start(ctx context.Context) (start int64, pre []*hub.Entry, gap hub.Drop, err error) {
	switch s.p.Mode {
	case ModeCursor:
		start = s.p.Cursor + 1
		oldest, newest, err := s.h.hist.Bounds(ctx, s.part)
		if err != nil {
			return 0, nil, gap, upstreamError{err}
		}
		if start > newest {
			return 0, nil, gap, &ParamError{Param: "cursor", Reason: fmt.Sprintf("offset %d is beyond the end of partition %d (next offset %d)", s.p.Cursor, s.part, newest)}
		}
		if start < oldest {
			// Retention deleted what followed the cursor: the count is of
			// offsets, an upper bound on the job's lines.
			gap = hub.Drop{Count: oldest - start, From: start, To: oldest - 1}
			start = oldest
		}
		return start, nil, gap, nil
	case ModeSince:
		off, err := s.h.hist.OffsetAt(ctx, s.part, s.p.Since)
		if err != nil {
			return 0, nil, gap, upstreamError{err}
		}
		return off, nil, gap, nil
	case ModeTail:
		if s.p.Tail == 0 {
			return s.join, nil, gap, nil
		}
		pre, err := s.lastLines(ctx, s.p.Tail)
		return s.join, pre, gap, err
	}
	return s.join, nil, gap, nil
}

// lastLines reads the job's last n lines, scanning the partition backwards
// in growing windows, at most MaxScan records, from its end (or from the
// join offset if the hub is ahead of what Bounds saw). Live entries the
// subscription queued up to there are skipped as already sent.
func (s *session) lastLines(ctx context.Context, n int) ([]*hub.Entry, error) {
	oldest, newest, err := s.h.hist.Bounds(ctx, s.part)
	if err != nil {
		return nil, upstreamError{err}
	}
	hi := max(s.join, newest)
	window := int64(max(4*n, 1024))
	var scanned int64
	var chunks [][]*hub.Entry
	total := 0
	for hi > oldest && total < n && scanned < s.h.opts.MaxScan {
		lo := max(oldest, hi-window, hi-(s.h.opts.MaxScan-scanned))
		need := n - total
		var chunk []*hub.Entry
		err := s.h.hist.Read(ctx, s.part, lo, hi, s.p.Job, func(e *hub.Entry) error {
			if s.p.Grep != nil && !s.p.Grep.MatchString(e.Line) {
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
			return nil, upstreamError{err}
		}
		if len(chunk) > need {
			chunk = chunk[len(chunk)-need:]
		}
		chunks = append(chunks, chunk)
		total += len(chunk)
		scanned += hi - lo
		hi = lo
		window *= 2
	}
	out := make([]*hub.Entry, 0, total)
	for i := len(chunks) - 1; i >= 0; i-- {
		out = append(out, chunks[i]...)
	}
	return out, nil
}

// catchUp sends history from start up to the join offset, then what the
// subscription queued meanwhile; when the queue overflowed it reads the
// missing range from Kafka too, and so on until it has caught up. Then it
// sends caught_up.
func (s *session) catchUp(ctx context.Context, start int64) error {
	from, to := start, s.join
	caught := s.join - 1
	for round := 0; ; round++ {
		if from < to {
			if err := s.readHistory(ctx, from, to); err != nil {
				return err
			}
		}
		caught = max(caught, to-1)
	settle:
		for {
			st := s.sub.Settle(round >= maxCatchUpRounds)
			switch st.Step {
			case hub.StepDrain:
				if err := s.takeAndSend(); err != nil {
					return err
				}
			case hub.StepGap:
				from, to = st.From, st.To
				break settle
			case hub.StepDone:
				return s.write(caughtUpFrame(s.frame[:0], max(s.lastSent, caught)))
			}
		}
	}
}

// readHistory sends the job's entries in [from, to) read from Kafka.
func (s *session) readHistory(ctx context.Context, from, to int64) error {
	var sendErr error
	err := s.h.hist.Read(ctx, s.part, from, to, s.p.Job, func(e *hub.Entry) error {
		if s.p.Grep != nil && !s.p.Grep.MatchString(e.Line) {
			return nil
		}
		s.pend = append(s.pend, e)
		if len(s.pend) < s.h.opts.BatchSize {
			return nil
		}
		sendErr = s.flushPending()
		if sendErr == nil {
			sendErr = s.pingIfDue()
		}
		return sendErr
	})
	switch {
	case sendErr != nil:
		return sendErr
	case err != nil:
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		return upstreamError{err}
	}
	return s.flushPending()
}

func (s *session) flushPending() error {
	err := s.sendEntries(s.pend)
	clear(s.pend)
	s.pend = s.pend[:0]
	return err
}

// live sends queued entries as they come, at most one frame per BatchWait
// unless a batch is full, and pings the peer.
func (s *session) live(ctx context.Context) error {
	flush := time.NewTimer(time.Hour)
	flush.Stop()
	defer flush.Stop()
	var flushC <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-s.ping.C:
			if err := s.doPing(); err != nil {
				return err
			}
		case <-s.sub.Notify():
			if wait := s.h.opts.BatchWait - time.Since(s.lastFlush); wait > 0 && s.sub.Len() < s.h.flushAt {
				if flushC == nil {
					flush.Reset(wait)
					flushC = flush.C
				}
				continue
			}
			if flushC != nil {
				flush.Stop()
				flushC = nil
			}
			if err := s.takeAndSend(); err != nil {
				return err
			}
		case <-flushC:
			flushC = nil
			if err := s.takeAndSend(); err != nil {
				return err
			}
		}
	}
}

// takeAndSend sends everything queued. An upstream failure is returned
// after what was queued before it has been sent.
func (s *session) takeAndSend() error {
	items, upErr := s.sub.Take(s.items)
	s.items = items
	if len(items) > 0 {
		s.lastFlush = time.Now()
	}
	start := -1 // first entry of the current run of entries
	for i := range items {
		if items[i].Entry != nil {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 {
			if err := s.sendItems(items[start:i]); err != nil {
				return err
			}
			start = -1
		}
		if err := s.write(droppedFrame(s.frame[:0], items[i].Drop)); err != nil {
			return err
		}
	}
	if start >= 0 {
		if err := s.sendItems(items[start:]); err != nil {
			return err
		}
	}
	if upErr != nil {
		return upErr
	}
	return nil
}

func (s *session) sendItems(items []hub.Item) error {
	for i := range items {
		s.pend = append(s.pend, items[i].Entry)
	}
	return s.flushPending()
}

// sendEntries writes entries frames, skipping what was sent already.
func (s *session) sendEntries(entries []*hub.Entry) error {
	b := append(s.frame[:0], entriesPrefix...)
	n := 0
	for _, e := range entries {
		if e.Offset <= s.lastSent {
			continue
		}
		if n > 0 && (n >= s.h.opts.BatchSize || len(b)+len(e.JSON) > maxFrameBytes) {
			if err := s.writeEntries(b, n); err != nil {
				return err
			}
			b, n = append(s.frame[:0], entriesPrefix...), 0
		}
		if n > 0 {
			b = append(b, ',')
		}
		b = append(b, e.JSON...)
		n++
		s.lastSent = e.Offset
	}
	if n == 0 {
		return nil
	}
	return s.writeEntries(b, n)
}

func (s *session) writeEntries(b []byte, n int) error {
	b = append(b, ']', '}')
	err := s.write(b)
	if cap(b) > 256<<10 {
		s.frame = nil // do not keep a large buffer for the session's life
	} else {
		s.frame = b[:0]
	}
	if err == nil {
		s.h.m.Sent.Add(float64(n))
	}
	return err
}

// write writes one frame within the ping interval. Its context is not the
// session's: cancelling a write closes the connection, and a session that
// ends must still be able to send its close frame.
func (s *session) write(b []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.h.opts.PingInterval)
	defer cancel()
	if err := s.c.Write(ctx, websocket.MessageText, b); err != nil {
		return fmt.Errorf("%w: write: %w", errPeerGone, err)
	}
	return nil
}

func (s *session) pingIfDue() error {
	select {
	case <-s.ping.C:
		return s.doPing()
	default:
		return nil
	}
}

// doPing pings the peer and waits for the pong, at most the ping interval.
func (s *session) doPing() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.h.opts.PingInterval)
	defer cancel()
	if err := s.c.Ping(ctx); err != nil {
		return fmt.Errorf("%w: no pong within %s: %w", errPeerGone, s.h.opts.PingInterval, err)
	}
	return nil
}
