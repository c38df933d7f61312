package backends

import (
	"context"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// etcdClient connects to the stack's etcd and closes the client when the
// test ends.
func etcdClient(tb testing.TB, s *Stack) *clientv3.Client {
	tb.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   s.EtcdEndpoints(),
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		tb.Fatalf("etcd client: %v", err)
	}
	tb.Cleanup(func() { cli.Close() })
	return cli
}

func testContext(tb testing.TB, d time.Duration) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), d)
	tb.Cleanup(cancel)
	return ctx
}

func TestEtcdPutGetWatch(t *testing.T) {
	t.Parallel()
	start := time.Now()
	s := startStack(t, Options{Without: []string{Kafka, ES}})
	t.Logf("etcd up in %v at %v", time.Since(start), s.EtcdEndpoints())
	cli := etcdClient(t, s)
	ctx := testContext(t, 20*time.Second)

	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	wch := cli.Watch(wctx, "/logpipe/agents/", clientv3.WithPrefix())
	if _, err := cli.Put(ctx, "/logpipe/agents/a", `[{"path":"./xx.log"}]`); err != nil {
		t.Fatalf("put: %v", err)
	}
	resp, err := cli.Get(ctx, "/logpipe/agents/a")
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != `[{"path":"./xx.log"}]` {
		t.Fatalf("get: got %v", resp.Kvs)
	}
	select {
	case wr := <-wch:
		if len(wr.Events) != 1 || string(wr.Events[0].Kv.Key) != "/logpipe/agents/a" {
			t.Fatalf("watch: got %+v", wr)
		}
	case <-ctx.Done():
		t.Fatal("watch: no event")
	}
}

func TestStopStartEtcd(t *testing.T) {
	t.Parallel()
	s := startStack(t, Options{Without: []string{Kafka, ES}})
	endpoints := s.EtcdEndpoints()
	cli := etcdClient(t, s)
	ctx := testContext(t, 30*time.Second)

	if _, err := cli.Put(ctx, "/k", "v1"); err != nil {
		t.Fatalf("put: %v", err)
	}
	wch := cli.Watch(ctx, "/k")

	if err := s.StopEtcd(); err != nil {
		t.Fatalf("StopEtcd: %v", err)
	}
	addr := strings.TrimPrefix(endpoints[0], "http://")
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("dial %s while stopped: connected, want refused", addr)
	}
	checkPortHeld(t, addr)
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err := cli.Get(short, "/k")
	cancel()
	if err == nil {
		t.Fatal("get while stopped: no error")
	}

	if err := s.StartEtcd(); err != nil {
		t.Fatalf("StartEtcd: %v", err)
	}
	if got := s.EtcdEndpoints(); !slices.Equal(got, endpoints) {
		t.Fatalf("endpoints after restart: %v, want %v", got, endpoints)
	}
	resp, err := cli.Get(ctx, "/k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v1" {
		t.Fatalf("get after restart: %v, %v", resp, err)
	}
	// The watch opened before the outage resumes.
	if _, err := cli.Put(ctx, "/k", "v2"); err != nil {
		t.Fatalf("put after restart: %v", err)
	}
	for {
		select {
		case wr := <-wch:
			for _, ev := range wr.Events {
				if string(ev.Kv.Value) == "v2" {
					return
				}
			}
		case <-ctx.Done():
			t.Fatal("watch: no event after restart")
		}
	}
}

// etcd's HTTP/JSON gateway (what curl users reach) answers on the public address.
func TestEtcdJSONGateway(t *testing.T) {
	st := startStack(t, Options{Without: []string{Kafka, ES}})
	body := strings.NewReader(`{"key":"` + base64.StdEncoding.EncodeToString([]byte("/k")) + `","value":"` + base64.StdEncoding.EncodeToString([]byte("v")) + `"}`)
	resp, err := http.Post(st.EtcdEndpoints()[0]+"/v3/kv/put", "application/json", body)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("PUT via gateway: %s: %s", resp.Status, b)
	}
}
