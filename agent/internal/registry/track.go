package registry

import (
	"sync"

	"github.com/logpipe/logpipe/agent/internal/producer"
	"github.com/logpipe/logpipe/agent/internal/tail"
)

// Track follows the records of one open file through Kafka. Its committed
// offset is the start of the oldest record not yet acknowledged or, with
// nothing in flight, the offset up to which the reader has consumed the file.
//
// When Kafka reports a record as failed (sarama gave up retrying), the
// records after it stop counting: once nothing is in flight the reader calls
// Rewind and reads the file again from the failed record, so that a file's
// records reach Kafka in file order, with at worst some duplicates.
type Track struct {
	reg *Registry
	id  tail.Identity

	mu       sync.Mutex
	q        []*producer.Message
	head     int
	consumed int64
	fp       tail.Fingerprint
	inflight int
	failed   int
	lastErr  error
	idle     chan struct{} // closed while nothing is in flight
	closed   bool
	acked    uint64
	onFail   func()
}

func newTrack(r *Registry, id tail.Identity, off int64, fp tail.Fingerprint) *Track {
	idle := make(chan struct{})
	close(idle)
	return &Track{reg: r, id: id, consumed: off, fp: fp, idle: idle}
}

// Identity is the file's identity.
func (t *Track) Identity() tail.Identity { return t.id }

// Push counts m as in flight and records that the reader has consumed the
// file up to consumed. It is called just before m is handed to Kafka, and
// in that order, so that the committed offset never passes m unacknowledged.
func (t *Track) Push(m *producer.Message, consumed int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.q = append(t.q, m)
	if t.inflight == 0 {
		t.idle = make(chan struct{})
	}
	t.inflight++
	t.consumed = consumed
}

// Sent implements producer.Owner: m is in flight and the file is consumed
// up to its end.
func (t *Track) Sent(m *producer.Message) { t.Push(m, m.End) }

// Advance records that the reader consumed the file up to off without
// sending anything (a start at the end, data skipped).
func (t *Track) Advance(off int64) {
	t.mu.Lock()
	t.consumed = off
	t.mu.Unlock()
}

// OnFail sets a function called (under the Track's lock: it must not call
// back) when a record fails after none had since the last Rewind. A reader
// uses it to stop waiting for room in the producer, which the failed
// records hold until it rewinds.
func (t *Track) OnFail(f func()) {
	t.mu.Lock()
	t.onFail = f
	t.mu.Unlock()
}

// SetFingerprint stores the file's current fingerprint.
func (t *Track) SetFingerprint(fp tail.Fingerprint) {
	t.mu.Lock()
	t.fp = fp
	t.mu.Unlock()
}

// Fingerprint is the stored fingerprint.
func (t *Track) Fingerprint() tail.Fingerprint {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.fp
}

// Done implements producer.Owner.
func (t *Track) Done(m *producer.Message, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m.Acked = true
	if err != nil {
		m.Failed = true
		t.failed++
		t.lastErr = err
		if t.failed == 1 && t.onFail != nil {
			t.onFail()
		}
	} else {
		t.acked++
	}
	t.inflight--
	t.pop()
	if t.inflight == 0 {
		close(t.idle)
	}
}

// pop releases acknowledged records at the head of the queue.
func (t *Track) pop() {
	for t.head < len(t.q) {
		m := t.q[t.head]
		if !m.Acked || (m.Failed && !t.closed) {
			break
		}
		m.Release()
		t.q[t.head] = nil
		t.head++
	}
	if t.head == len(t.q) {
		t.q, t.head = t.q[:0], 0
	} else if t.head > 4096 && t.head > len(t.q)/2 {
		n := copy(t.q, t.q[t.head:])
		clear(t.q[n:])
		t.q, t.head = t.q[:n], 0
	}
}

// Failed reports whether a record failed since the last Rewind, and the
// last error.
func (t *Track) Failed() (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failed > 0, t.lastErr
}

// Idle returns a channel closed once nothing is in flight.
func (t *Track) Idle() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.idle
}

// Inflight is the number of records in flight.
func (t *Track) Inflight() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.inflight
}

// Acked is the number of records acknowledged.
func (t *Track) Acked() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.acked
}

// Rewind forgets every record after the committed offset and returns that
// offset, where the reader must continue. Call it only when Idle.
func (t *Track) Rewind() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	off := t.committed()
	for _, m := range t.q[t.head:] {
		m.Release()
	}
	clear(t.q)
	t.q, t.head = t.q[:0], 0
	t.failed, t.lastErr = 0, nil
	t.consumed = off
	return off
}

// Committed is the offset of the first byte not yet acknowledged.
func (t *Track) Committed() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.committed()
}

func (t *Track) committed() int64 {
	if t.head < len(t.q) {
		return t.q[t.head].Start
	}
	return t.consumed
}

func (t *Track) snapshot() (int64, tail.Fingerprint) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.committed(), t.fp
}

// Close releases the file's identity in the registry, keeping its committed
// offset. Records still in flight keep being tracked until they return.
func (t *Track) Close() {
	t.reg.detach(t) // takes the committed offset first
	t.mu.Lock()
	t.closed = true // from now on failed records are only returned to the pool
	t.pop()
	t.mu.Unlock()
}
