package status

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/logpipe/logpipe/devstack/stack"
)

func setup(t *testing.T) *clientv3.Client {
	t.Helper()
	_, cli := setupStack(t)
	return cli
}

func setupStack(t *testing.T) (*stack.Stack, *clientv3.Client) {
	t.Helper()
	s := stack.New(t, stack.Options{Without: []string{stack.Kafka, stack.ES}})
	cli, err := clientv3.New(clientv3.Config{Endpoints: s.EtcdEndpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return s, cli
}

func get(t *testing.T, cli *clientv3.Client, key string) (Status, int64, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return Status{}, 0, false
	}
	var st Status
	if err := json.Unmarshal(resp.Kvs[0].Value, &st); err != nil {
		t.Fatal(err)
	}
	return st, resp.Kvs[0].Lease, true
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPublishesUnderLeaseAndRevokes(t *testing.T) {
	cli := setup(t)
	var rev atomic.Int64
	rev.Store(7)
	p := New(cli, Options{Key: "/s/a", Interval: time.Hour, TTL: 10 * time.Second}, func() Status {
		return Status{ConfigRevision: rev.Load(), Errors: []string{}}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()

	var lease int64
	waitFor(t, "the status key", func() bool {
		st, l, ok := get(t, cli, "/s/a")
		lease = l
		return ok && st.ConfigRevision == 7
	})
	if lease == 0 {
		t.Fatal("status written without a lease")
	}
	ttl, err := cli.TimeToLive(context.Background(), clientv3.LeaseID(lease))
	if err != nil || ttl.GrantedTTL != 10 {
		t.Fatalf("lease TTL %+v %v", ttl, err)
	}
	rev.Store(8)
	p.Kick()
	waitFor(t, "the kicked update", func() bool { st, _, _ := get(t, cli, "/s/a"); return st.ConfigRevision == 8 })

	// A lease lost in etcd is granted again.
	if _, err := cli.Revoke(context.Background(), clientv3.LeaseID(lease)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the key to go with its lease", func() bool { _, _, ok := get(t, cli, "/s/a"); return !ok })
	p.Kick()
	waitFor(t, "the key under a new lease", func() bool { _, l, ok := get(t, cli, "/s/a"); return ok && l != lease })

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, _, ok := get(t, cli, "/s/a"); ok {
		t.Fatal("status key left after Run returned")
	}
}

// TestStopDuringPublishRevokes stops the publisher while a write is under
// way (held up by an etcd outage): the lease must still be revoked, so that
// the status key goes at once and not only when its lease runs out.
func TestStopDuringPublishRevokes(t *testing.T) {
	s, cli := setupStack(t)
	publishing := make(chan struct{}, 1)
	p := New(cli, Options{Key: "/s/b", Interval: time.Hour, TTL: time.Hour, Timeout: time.Minute}, func() Status {
		select {
		case publishing <- struct{}{}:
		default:
		}
		return Status{Errors: []string{}}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	<-publishing
	waitFor(t, "the status key", func() bool { _, _, ok := get(t, cli, "/s/b"); return ok })

	if err := s.StopEtcd(); err != nil {
		t.Fatal(err)
	}
	p.Kick()
	<-publishing // the next write is under way, and cannot reach etcd
	cancel()
	if err := s.StartEtcd(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("Run did not return")
	}
	if _, _, ok := get(t, cli, "/s/b"); ok {
		t.Fatal("status key left after Run returned: its lease was not revoked")
	}
}
