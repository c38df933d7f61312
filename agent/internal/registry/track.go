package registry

import (
	"fmt"
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
// Retry and sends them all again from the failed one, as they were read,
// before anything newer: whatever happened to the file meanwhile (it may
// have been truncated), the last copies of its records in Kafka are in
// file order.
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
	gen      string

	movedFrom tail.Identity // set by Attach; not changed after
}

func newTrack(r *Registry, id tail.Identity, off int64, fp tail.Fingerprint, gen string) *Track {
	idle := make(chan struct{})
	close(idle)
	return &Track{reg: r, id: id, consumed: off, fp: fp, gen: gen, idle: idle}
}

// Identity is the file's identity.
func (t *Track) Identity() tail.Identity { return t.id }

// MovedFrom is the identity under which the registry knew the file when
// Attach found it at another device number; ok is false otherwise.
func (t *Track) MovedFrom() (id tail.Identity, ok bool) {
	return t.movedFrom, t.movedFrom != (tail.Identity{})
}

// Generation is the file generation whose lines the reader sends: empty
// for a file first read by an agent that had none, until its next
// generation starts.
func (t *Track) Generation() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.gen
}

// NewGeneration starts a new generation of the file (the reader found it
// truncated and reads it again from 0; call it once nothing is in flight
// and the offset is back at 0) and writes the registry before it returns,
// so that no line of the generation can be sent before the generation is
// durable. Truncations are rare next to lines, so the write is cheap. On
// error the generation has started all the same, but it is not durable:
// call again before sending a line.
func (t *Track) NewGeneration() (string, error) {
	gen := NewGeneration()
	t.mu.Lock()
	t.gen = gen
	t.mu.Unlock()
	if err := t.reg.Save(); err != nil {
		return "", fmt.Errorf("recording a new file generation: %w", err)
	}
	return gen, nil
}

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
// back) when a record fails after none had since the last Retry. A reader
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
		if t.reg != nil {
			t.reg.notifyAcked()
		}
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

// Failed reports whether a record failed since the last Retry, and the
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

// Retry counts the records from the first one Kafka failed as in flight
// again, acknowledged ones after it included, and returns them in file
// order for the reader to send again as they are (producer.Resend): their
// values are kept until the records before them are acknowledged. Kafka
// may have acknowledged some later records before it failed an earlier
// one; sending the whole run again means that its last copies are in file
// order. Call it only when Idle.
func (t *Track) Retry() []*producer.Message {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*producer.Message, 0, len(t.q)-t.head)
	for _, m := range t.q[t.head:] {
		m.Acked, m.Failed = false, false
		out = append(out, m)
	}
	if len(out) > 0 {
		t.idle = make(chan struct{})
		t.inflight = len(out)
	}
	t.failed, t.lastErr = 0, nil
	return out
}

// Consumed is the offset up to which the reader has handed the file to
// Kafka: the end of the last record sent, or where Advance put it.
func (t *Track) Consumed() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.consumed
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

func (t *Track) snapshot() (int64, tail.Fingerprint, string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.committed(), t.fp, t.gen
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
