package upstream

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/logpipe/logpipe/devstack/stack"
	"github.com/logpipe/logpipe/livetail/internal/hub"
)

// A read whose caller stops taking entries (a session waiting on another
// partition to merge by time, a stuck client) does not hold up the reads
// that share its scan: the scan leaves it behind after readerWait, the
// others get every entry, and it still gets the rest of its range on its
// own once its caller takes entries again.
func TestScanLeavesStuckReaderBehind(t *testing.T) {
	s := stack.New(t, stack.Options{Without: []string{stack.Etcd, stack.ES}})
	const n = 3 * readerQueue
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.KafkaAddrs()...), kgo.DefaultProduceTopic("logs"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	rs := make([]*kgo.Record, n)
	for i := range rs {
		rs[i] = &kgo.Record{Key: []byte("j"), Value: []byte(`{"job":"j","message":"m"}`), Partition: 0}
	}
	if err := cl.ProduceSync(t.Context(), rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.Brokers, cfg.Topic = s.KafkaAddrs(), "logs"
	c, err := Dial(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	release := make(chan struct{})
	unstick := sync.OnceFunc(func() { close(release) })
	defer unstick() // before Close, should the test fail
	stuck := make(chan error, 1)
	stuckGot := 0
	go func() {
		stuck <- c.Read(t.Context(), 0, 0, n, []string{"j"}, func(e *hub.Entry) error {
			if e == nil {
				return nil
			}
			if stuckGot++; stuckGot == 1 {
				<-release // the caller stops taking entries
			}
			return nil
		})
	}()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	got := 0
	err = c.Read(ctx, 0, 0, n, []string{"j"}, func(e *hub.Entry) error {
		if e != nil {
			got++
		}
		return nil
	})
	if err != nil || got != n {
		t.Fatalf("the read beside a stuck one: %v after %d of %d entries", err, got, n)
	}
	unstick()
	if err := <-stuck; err != nil || stuckGot != n {
		t.Fatalf("the read left behind: %v after %d of %d entries", err, stuckGot, n)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatal("timed out")
	}
}
