package watch

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/logpipe/logpipe/devstack/stack"
)

func setup(t *testing.T) (*stack.Stack, *clientv3.Client) {
	t.Helper()
	s := stack.New(t, stack.Options{Without: []string{stack.Kafka, stack.ES}})
	cli, err := clientv3.New(clientv3.Config{Endpoints: s.EtcdEndpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return s, cli
}

// recorder collects applied values.
type recorder struct {
	mu   sync.Mutex
	vals []Value
}

func (r *recorder) apply(v Value) {
	r.mu.Lock()
	r.vals = append(r.vals, v)
	r.mu.Unlock()
}

func (r *recorder) waitFor(t *testing.T, what string, cond func(Value) bool) Value {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		for _, v := range r.vals {
			if cond(v) {
				r.mu.Unlock()
				return v
			}
		}
		r.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("never applied %s", what)
	return Value{}
}

func run(t *testing.T, cli *clientv3.Client, key string) *recorder {
	t.Helper()
	r := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, cli, Options{Key: key, MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, GetTimeout: time.Second}, r.apply)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return r
}

func put(t *testing.T, cli *clientv3.Client, key, val string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := cli.Put(ctx, key, val)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

func TestCurrentValueThenChanges(t *testing.T) {
	_, cli := setup(t)
	rev1 := put(t, cli, "/k", "one")
	r := run(t, cli, "/k")
	r.waitFor(t, "the current value", func(v Value) bool { return v.Exists && string(v.Data) == "one" && v.Revision == rev1 })
	rev2 := put(t, cli, "/k", "two")
	r.waitFor(t, "a change", func(v Value) bool { return string(v.Data) == "two" && v.Revision == rev2 })
	put(t, cli, "/other", "x") // another key: not applied
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cli.Delete(ctx, "/k"); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, "the deletion", func(v Value) bool { return !v.Exists && v.Revision > rev2 })
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range r.vals {
		if string(v.Data) == "x" {
			t.Fatal("applied another key")
		}
	}
}

func TestMissingKey(t *testing.T) {
	_, cli := setup(t)
	r := run(t, cli, "/missing")
	r.waitFor(t, "an empty value", func(v Value) bool { return !v.Exists && v.Revision == 0 })
	put(t, cli, "/missing", "now")
	r.waitFor(t, "the new key", func(v Value) bool { return string(v.Data) == "now" })
}

func TestSurvivesEtcdOutage(t *testing.T) {
	s, cli := setup(t)
	put(t, cli, "/k", "before")
	r := run(t, cli, "/k")
	r.waitFor(t, "the first value", func(v Value) bool { return string(v.Data) == "before" })
	if err := s.StopEtcd(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	if err := s.StartEtcd(); err != nil {
		t.Fatal(err)
	}
	put(t, cli, "/k", "after")
	r.waitFor(t, "the value put after the outage", func(v Value) bool { return string(v.Data) == "after" })
}

func TestFollowEndsOnCompaction(t *testing.T) {
	_, cli := setup(t)
	first := put(t, cli, "/k", "a")
	put(t, cli, "/k", "b")
	last := put(t, cli, "/k", "c")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cli.Compact(ctx, last); err != nil {
		t.Fatal(err)
	}
	var got []Value
	err := follow(ctx, cli, "/k", first+1, func(v Value) { got = append(got, v) })
	if !errors.Is(err, rpctypes.ErrCompacted) {
		t.Fatalf("follow from a compacted revision: %v (applied %v)", err, got)
	}
}

func TestFollowEndsWhenCancelled(t *testing.T) {
	_, cli := setup(t)
	rev := put(t, cli, "/k", "a")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- follow(ctx, cli, "/k", rev+1, func(Value) {}) }()
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("follow returned no reason")
		}
	case <-time.After(time.Minute):
		t.Fatal("follow did not end")
	}
}
