package harvest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/sirupsen/logrus"

	"github.com/logpipe/logpipe/agent/internal/multiline"
	"github.com/logpipe/logpipe/agent/internal/notify"
	"github.com/logpipe/logpipe/agent/internal/producer"
	"github.com/logpipe/logpipe/agent/internal/registry"
	"github.com/logpipe/logpipe/agent/internal/tail"
	"github.com/logpipe/logpipe/common/record"
)

var (
	// errStopped ends a reader whose context is done.
	errStopped = errors.New("harvest: stopped")
	// errFailed interrupts reading when Kafka failed a record of the file.
	errFailed = errors.New("harvest: records failed")
)

var (
	flagsTruncated = []string{record.FlagTruncated}
	flagsMultiline = []string{record.FlagMultiline}
	flagsBoth      = []string{record.FlagMultiline, record.FlagTruncated}
)

// reader sends the lines of one open file to Kafka.
type reader struct {
	h     *harvester
	f     *tail.File
	track *registry.Track
	ml    *multiline.Grouper
	mlCfg multiline.Config
	log   logrus.FieldLogger

	key    []byte
	topic  string
	job    string
	base   record.Record      // the fields every line of the file shares, but the generation
	enc    *encoder           // base in the current generation
	ctx    context.Context    // the reader's life
	pass   context.Context    // also ends when a record fails
	cancel context.CancelFunc // of pass
	maxRec int

	prev    *reader       // the file this one replaced at the path
	rotated chan struct{} // closed when the path no longer names this file
	rotOnce sync.Once
	drained chan struct{} // closed when read to the end after rotation
	drOnce  sync.Once

	size atomic.Int64
}

// newReader opens the file at path (the harvester's path, or where a file of
// it was renamed to) for the harvester. Its records carry the harvester's
// path and job.
func newReader(h *harvester, path string, prev *reader) (*reader, error) {
	m := h.t.m
	f, err := tail.Open(path, m.opts.MaxLineBytes)
	if err != nil {
		return nil, err
	}
	e := h.t.entry
	r := &reader{
		h:       h,
		f:       f,
		key:     []byte(h.job),
		topic:   e.Topic,
		prev:    prev,
		maxRec:  m.opts.MaxRecordBytes,
		rotated: make(chan struct{}),
		drained: make(chan struct{}),
		log:     m.opts.Log.WithFields(logrus.Fields{"path": h.path, "inode": f.Identity().Ino}),
		job:     h.job,
		base: record.Record{
			Job:   h.job,
			Host:  record.Host{Name: m.opts.HostName},
			Agent: record.Agent{Name: m.opts.AgentName},
			Log: record.Log{File: record.File{
				Path:        h.path,
				DeviceID:    strconv.FormatUint(f.Identity().Dev, 10),
				Inode:       strconv.FormatUint(f.Identity().Ino, 10),
				Fingerprint: fpPlaceholder, // each line's own, see tail.File.LineFingerprint
			}},
			Labels: e.Labels,
		},
	}
	if e.Multiline != nil {
		cfg, err := multiline.FromEntry(e.Multiline, m.opts.MaxLineBytes)
		if err != nil {
			f.Close()
			return nil, err
		}
		r.ml, r.mlCfg = multiline.New(cfg), cfg
	}
	return r, nil
}

// attached positions the reader at its Track's committed offset and
// counts it among the open files. On error the file is released.
func (r *reader) attached(t *registry.Track) error {
	m := r.h.t.m
	r.track = t
	if err := r.f.SeekTo(t.Committed()); err != nil {
		t.Close()
		r.f.Close()
		return err
	}
	r.f.SetFingerprint(t.Fingerprint())
	r.setGeneration(t.Generation())
	m.mu.Lock()
	m.readers[r] = struct{}{}
	m.mu.Unlock()
	m.opts.Metrics.FilesTailed.Inc()
	return nil
}

// setGeneration makes the lines encoded from now on carry gen.
func (r *reader) setGeneration(gen string) {
	rec := r.base
	rec.Log.File.Generation = gen
	r.enc = newEncoder(rec)
}

// rotate tells the reader that its path names another file now.
func (r *reader) rotate() { r.rotOnce.Do(func() { close(r.rotated) }) }

func (r *reader) isRotated() bool {
	select {
	case <-r.rotated:
		return true
	default:
		return false
	}
}

func (r *reader) status() FileStatus {
	return FileStatus{
		Path:   r.h.path,
		Job:    r.h.job,
		Offset: r.track.Committed(),
		Size:   r.size.Load(),
		Inode:  r.f.Identity().Ino,
	}
}

// run reads until the context is done or, for a rotated file, until it has
// been idle for RotatedIdle; then it waits for the records in flight and
// releases the file.
func (r *reader) run(ctx context.Context) {
	m := r.h.t.m
	r.ctx = ctx
	defer r.finish()
	if r.prev != nil {
		// Let the previous file at this path reach its end first, so that
		// lines written before the rotation are sent before the new ones.
		select {
		case <-r.prev.drained:
		case <-ctx.Done():
			return
		}
		r.prev = nil
	}
	// Changes to the file wake the reader; polling stays as the safety
	// net (every PollMax) and, where changes are not notified, as the way
	// to follow the file (PollMin after fresh data, doubling up to PollMax
	// while idle).
	sub := m.notify.Watch(r.f.Path(), notify.Write)
	defer sub.Close()
	rotated := r.rotated
	lag := m.opts.Metrics.LagBytes.WithLabelValues(r.h.path)
	poll := m.opts.PollMin
	lastGrowth := time.Now()
	var backoff time.Duration
	retryAcked := uint64(0) // set while recovering from failed records
	retrying := false
	r.pass, r.cancel = context.WithCancel(ctx)
	r.track.OnFail(r.cancel)
	defer func() {
		r.track.OnFail(nil)
		r.cancel()
	}()
	for {
		if ctx.Err() != nil {
			return
		}
		r.renewPass()
		if failed, err := r.track.Failed(); failed {
			if !r.retry(ctx, err, &backoff) {
				return
			}
			retrying, retryAcked = true, r.track.Acked()
			continue
		}
		if retrying && r.track.Acked() > retryAcked {
			r.log.Info("Kafka acknowledges records again")
			m.setErr(r.h.path, nil)
			retrying, backoff = false, 0
		}
		size, err := r.f.Size()
		if err != nil {
			m.setErr(r.h.path, err)
			return
		}
		r.size.Store(size)
		if size < r.f.ReadOffset() {
			if !r.truncated(ctx, size, &backoff) {
				return
			}
			continue
		}
		before := r.f.ReadOffset()
		err = r.f.ReadLines(r.line)
		if errors.Is(err, errStopped) || ctx.Err() != nil {
			return
		}
		if errors.Is(err, errFailed) {
			continue
		}
		if errors.Is(err, tail.ErrTruncated) {
			if !r.truncated(ctx, size, &backoff) {
				return
			}
			continue
		}
		if err != nil {
			m.setErr(r.h.path, err)
			return
		}
		if fp := r.f.ReadFingerprint(); fp != r.track.Fingerprint() {
			r.track.SetFingerprint(fp)
		}
		now := time.Now()
		lag.Set(float64(size - r.track.Committed()))
		// A rotated file is renamed or deleted: changes to it are no longer
		// reported under the name watched.
		notified := sub.Notified() && !r.isRotated()
		if r.f.ReadOffset() > before {
			poll = m.opts.PollMin
			lastGrowth = now
			if !notified {
				continue
			}
			// Read to the end: a write since then has left a notification.
		} else {
			// At the end of the file.
			if r.ml != nil && now.Sub(lastGrowth) >= m.opts.MultilineFlush {
				if err := r.ml.Flush(r.event); errors.Is(err, errStopped) {
					return
				}
			}
			if r.isRotated() {
				r.drOnce.Do(func() { close(r.drained) })
				if now.Sub(lastGrowth) >= m.opts.RotatedIdle {
					// Done with this file once Kafka has everything of it.
					if err := r.flush(); errors.Is(err, errStopped) {
						return
					}
					select {
					case <-r.track.Idle():
					case <-ctx.Done():
						return
					}
					if failed, _ := r.track.Failed(); !failed {
						return
					}
					continue
				}
			}
		}
		wait := poll
		if notified {
			wait = m.opts.PollMax
			if r.ml != nil && multilinePending(r.ml) {
				// Wake when the pending event is due to be sent.
				wait = min(wait, max(lastGrowth.Add(m.opts.MultilineFlush).Sub(now), 0)+time.Millisecond)
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-sub.C():
			t.Stop()
			m.opts.Metrics.wokenByNotification.Inc()
			// Under load, lines gather for up to ReadGap after the last read
			// that found some, and go to Kafka in batches; a line after a
			// quiet spell is read at once.
			if d := m.opts.ReadGap - time.Since(lastGrowth); d > 0 && !sleep(ctx, d) {
				return
			}
		case <-rotated:
			t.Stop()
			rotated = nil
		case <-t.C:
			m.opts.Metrics.wokenByPoll.Inc()
			if !notified {
				poll = min(2*poll, m.opts.PollMax)
			}
		}
	}
}

// renewPass starts a new pass after a failure ended the last one.
func (r *reader) renewPass() {
	if r.pass.Err() != nil {
		r.pass, r.cancel = context.WithCancel(r.ctx)
		r.track.OnFail(r.cancel)
	}
}

// flush sends what is left of a file that will not grow any more: a last
// line without a newline and a pending multiline event.
func (r *reader) flush() error {
	if err := r.f.Flush(r.line); err != nil {
		return err
	}
	if r.ml != nil {
		return r.ml.Flush(r.event)
	}
	return nil
}

// finish waits for the records in flight and releases the file.
func (r *reader) finish() {
	m := r.h.t.m
	r.drOnce.Do(func() { close(r.drained) })
	t := time.NewTimer(m.opts.StopTimeout)
	select {
	case <-r.track.Idle():
	case <-t.C:
		r.log.Warnf("stopping with %d records unacknowledged; they will be sent again after a restart", r.track.Inflight())
	}
	t.Stop()
	m.opts.Metrics.LagBytes.DeleteLabelValues(r.h.path)
	r.track.Close()
	r.f.Close()
	m.mu.Lock()
	delete(m.readers, r)
	m.mu.Unlock()
	m.opts.Metrics.FilesTailed.Dec()
}

// retry waits until Kafka has answered for every record in flight, then,
// after a backoff, sends the records it failed again, as they were read,
// and reads on after the last record sent (the lines read meanwhile, whose
// sending the failure interrupted, are read again).
func (r *reader) retry(ctx context.Context, cause error, backoff *time.Duration) bool {
	m := r.h.t.m
	if !r.resend(ctx, cause, backoff) {
		return false
	}
	if err := r.f.SeekTo(r.track.Consumed()); err != nil {
		m.setErr(r.h.path, err)
		return false
	}
	if r.ml != nil {
		r.ml = multiline.New(r.mlCfg)
	}
	return true
}

// resend waits until nothing is in flight, backs off, and sends the failed
// records again from memory: the file may no longer hold them (truncated).
func (r *reader) resend(ctx context.Context, cause error, backoff *time.Duration) bool {
	m := r.h.t.m
	select {
	case <-r.track.Idle():
	case <-ctx.Done():
		return false
	}
	*backoff = min(max(2**backoff, 100*time.Millisecond), 5*time.Second)
	m.setErr(r.h.path, fmt.Errorf("sending records again from offset %d: Kafka failed them: %w", r.track.Committed(), cause))
	if !sleep(ctx, *backoff/2+rand.N(*backoff/2+1)) {
		return false
	}
	msgs := r.track.Retry()
	m.opts.Metrics.Rewinds.Inc()
	for i, msg := range msgs {
		if err := m.prod.Resend(ctx, msg); err != nil {
			for _, rest := range msgs[i+1:] {
				r.track.Done(rest, err)
			}
			return false
		}
	}
	return true
}

// truncated handles a file that became shorter than the read offset or no
// longer starts with the bytes it had. What was read before is sent first
// (from memory: the file no longer holds it), a partial last line
// included; then reading starts again at 0.
func (r *reader) truncated(ctx context.Context, size int64, backoff *time.Duration) bool {
	m := r.h.t.m
	m.opts.Metrics.Rotations.Inc()
	r.log.WithField("size", size).Info("file truncated: reading it again from the start")
	if !r.drain(ctx, backoff) {
		return false
	}
	r.renewPass()
	if err := r.flush(); errors.Is(err, errStopped) {
		return false
	}
	if !r.drain(ctx, backoff) {
		return false
	}
	if err := r.f.SeekTo(0); err != nil {
		m.setErr(r.h.path, err)
		return false
	}
	r.track.Advance(0)
	r.track.SetFingerprint(tail.Fingerprint{})
	// What the file holds now is a new generation of it, written to the
	// registry before any of its lines is sent.
	for failed := false; ; failed = true {
		gen, err := r.track.NewGeneration()
		if err == nil {
			r.setGeneration(gen)
			if failed {
				m.setErr(r.h.path, nil)
			}
			break
		}
		m.setErr(r.h.path, err)
		*backoff = min(max(2**backoff, 100*time.Millisecond), 5*time.Second)
		if !sleep(ctx, *backoff) {
			return false
		}
	}
	if r.ml != nil {
		r.ml = multiline.New(r.mlCfg)
	}
	return true
}

// drain waits until Kafka has acknowledged every record in flight, sending
// the failed ones again.
func (r *reader) drain(ctx context.Context, backoff *time.Duration) bool {
	for {
		select {
		case <-r.track.Idle():
		case <-ctx.Done():
			return false
		}
		failed, err := r.track.Failed()
		if !failed {
			return true
		}
		if !r.resend(ctx, err, backoff) {
			return false
		}
	}
}

// line handles one physical line.
func (r *reader) line(l tail.Line) error {
	if r.ml != nil {
		return r.ml.Add(l, r.event)
	}
	flags := []string(nil)
	if l.Truncated {
		flags = flagsTruncated
		r.h.t.m.opts.Metrics.Truncated.Inc()
	}
	return r.send(l.Offset, l.End, l.Text, flags)
}

// event handles one multiline event.
func (r *reader) event(ev multiline.Event) error {
	var flags []string
	switch {
	case ev.Lines > 1 && ev.Truncated:
		flags = flagsBoth
		r.h.t.m.opts.Metrics.Truncated.Inc()
	case ev.Lines > 1:
		flags = flagsMultiline
	case ev.Truncated:
		flags = flagsTruncated
		r.h.t.m.opts.Metrics.Truncated.Inc()
	}
	return r.send(ev.Offset, ev.End, ev.Text, flags)
}

// send encodes one record and hands it to the producer, waiting for room.
func (r *reader) send(start, end int64, text []byte, flags []string) error {
	m := r.h.t.m
	msg, err := m.prod.Acquire(r.pass)
	if err != nil {
		return r.interrupted()
	}
	now := r.f.ReadTime()
	if now.IsZero() {
		now = time.Now()
	}
	fp := r.f.LineFingerprint(start)
	val := r.encode(msg.Buffer(r.enc.size(len(text), len(flags))), text, now, start, fp, flags)
	msg.Start, msg.End = start, end
	m.opts.Metrics.LinesRead.Inc()
	msg.Timestamp = now
	if err := m.prod.Send(r.pass, msg, r.track, r.topic, r.key, val); err != nil {
		msg.Release()
		return r.interrupted()
	}
	return nil
}

// interrupted tells why waiting for the producer ended.
func (r *reader) interrupted() error {
	if r.ctx.Err() != nil {
		return errStopped
	}
	return errFailed
}

// encode appends the record's JSON, cutting the message further when the
// record would exceed the Kafka limit (escaping can make a line grow up to
// six times).
func (r *reader) encode(dst, text []byte, now time.Time, start int64, fp uint64, flags []string) []byte {
	val := r.enc.append(dst, now, text, start, fp, flags)
	for len(val) > r.maxRec && len(text) > 0 {
		over := len(val) - r.maxRec
		n := len(text) - over
		if over*4 > len(text) {
			n = len(text) * r.maxRec / len(val) * 9 / 10
		}
		text = cutUTF8(text, max(n, 0))
		switch {
		case len(flags) == 0:
			flags = flagsTruncated
		case len(flags) == 1 && flags[0] == record.FlagMultiline:
			flags = flagsBoth
		}
		r.h.t.m.opts.Metrics.Truncated.Inc()
		val = r.enc.append(val[:0], now, text, start, fp, flags)
	}
	return val
}

func cutUTF8(b []byte, n int) []byte {
	if n >= len(b) {
		return b
	}
	b = b[:n]
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				return b[:i]
			}
			break
		}
	}
	return b
}

// lastLineStart is where a file is read from when it starts at its end: just
// after the last newline, so that a line being written is not cut.
func lastLineStart(f *tail.File) (int64, error) {
	size, err := f.Size()
	if err != nil || size == 0 {
		return 0, err
	}
	const window = 64 << 10
	from := max(size-window, 0)
	buf := make([]byte, size-from)
	n, err := f.ReadAt(buf, from)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, err
	}
	buf = buf[:n]
	if i := bytes.LastIndexByte(buf, '\n'); i >= 0 {
		return from + int64(i) + 1, nil
	}
	return size, nil
}

func identityOf(fi os.FileInfo) tail.Identity { return tail.IdentityOf(fi) }

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

var _ producer.Owner = (*registry.Track)(nil)

func multilinePending(g *multiline.Grouper) bool {
	_, pending := g.Pending()
	return pending
}
