package registry

import (
	"errors"
	"testing"

	"github.com/logpipe/logpipe/agent/internal/producer"
	"github.com/logpipe/logpipe/agent/internal/tail"
)

// Acked tells the agent to save when Kafka acknowledged records, coalesced
// while nobody listens, and not for records that failed.
func TestAckedSignalsAcknowledgements(t *testing.T) {
	r := openReg(t, t.TempDir())
	tr, _, err := r.Attach(tail.Identity{Dev: 1, Ino: 2}, "a.log", always, 0)
	if err != nil {
		t.Fatal(err)
	}
	ready := func() bool {
		select {
		case <-r.Acked():
			return true
		default:
			return false
		}
	}
	if ready() {
		t.Fatal("Acked ready before any acknowledgement")
	}
	ms := []*producer.Message{msg(0, 10), msg(10, 20), msg(20, 30)}
	for _, m := range ms {
		tr.Push(m, m.End)
	}
	tr.Done(ms[0], errors.New("broker down"))
	if ready() {
		t.Fatal("Acked ready after a failed record")
	}
	tr.Done(ms[1], nil)
	tr.Done(ms[2], nil)
	if !ready() {
		t.Fatal("Acked not ready after two acknowledgements")
	}
	if ready() {
		t.Fatal("two acknowledgements heard twice: not coalesced")
	}
}
