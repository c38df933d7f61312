package watch

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// flaky fails its first reads, then serves a value and a watch that ends at
// once, so that Run reads again.
type flaky struct {
	clientv3.KV
	clientv3.Watcher
	fails int
	reads []time.Time
}

func (f *flaky) Get(ctx context.Context, key string, _ ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	f.reads = append(f.reads, time.Now())
	if len(f.reads) <= f.fails {
		return nil, errors.New("etcd unreachable")
	}
	resp := &clientv3.GetResponse{Kvs: []*mvccpb.KeyValue{{Key: []byte(key), Value: []byte("v"), ModRevision: 5}}}
	resp.Header = &etcdserverpb.ResponseHeader{Revision: 5}
	return resp, nil
}

func (f *flaky) Watch(ctx context.Context, _ string, _ ...clientv3.OpOption) clientv3.WatchChan {
	ch := make(chan clientv3.WatchResponse)
	close(ch) // the watch ends at once: Run reads the key again
	return ch
}

func TestRetriesWithBoundedBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &flaky{fails: 8}
		ctx, cancel := context.WithCancel(t.Context())
		applied := 0
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = Run(ctx, f, Options{Key: "/k", MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}, func(Value) { applied++ })
		}()
		time.Sleep(time.Minute)
		cancel()
		<-done
		if applied == 0 {
			t.Fatal("never applied after etcd came back")
		}
		for i := 1; i <= f.fails; i++ {
			gap := f.reads[i].Sub(f.reads[i-1])
			if gap > time.Second {
				t.Fatalf("retry %d after %v: more than the maximum backoff", i, gap)
			}
			if i > 4 && gap < 500*time.Millisecond {
				t.Fatalf("retry %d after only %v: backoff does not grow", i, gap)
			}
		}
		// After a watch ends, the key is read again after the minimum
		// backoff, not in a busy loop.
		last := f.reads[len(f.reads)-1]
		prev := f.reads[len(f.reads)-2]
		if last.Sub(prev) < 100*time.Millisecond {
			t.Fatalf("reads %v apart after a watch ended", last.Sub(prev))
		}
	})
}
