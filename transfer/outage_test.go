package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/logpipe/logpipe/devstack/esfake"
	"github.com/logpipe/logpipe/devstack/stack"
)

// switchedES serves one esfake server on a fixed address that can be taken
// off the network and brought back.
type switchedES struct {
	fake *esfake.Server
	addr string
	mu   sync.Mutex
	srv  *http.Server
	done chan struct{}
}

// newSwitchedES reserves an address and leaves it down.
func newSwitchedES(t testing.TB) *switchedES {
	t.Helper()
	e := &switchedES{fake: esfake.New(), addr: freeLoopbackAddr(t)}
	t.Cleanup(e.down)
	return e
}

// freeLoopbackAddr returns a free loopback address with a port below the
// ephemeral range, so that no outgoing connection takes it meanwhile.
func freeLoopbackAddr(t testing.TB) string {
	t.Helper()
	for i := 0; i < 100; i++ {
		addr := fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		ln.Close()
		return addr
	}
	t.Fatal("no free loopback port")
	return ""
}

func (e *switchedES) url() string { return "http://" + e.addr }

func (e *switchedES) up(t testing.TB) {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", e.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	e.srv = &http.Server{Handler: e.fake}
	e.done = make(chan struct{})
	go func(srv *http.Server, done chan struct{}) {
		defer close(done)
		_ = srv.Serve(ln)
	}(e.srv, e.done)
}

func (e *switchedES) down() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.srv == nil {
		return
	}
	_ = e.srv.Close()
	<-e.done
	e.srv = nil
}

func readyz(t testing.TB, addr string) (int, string) {
	t.Helper()
	res, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestElasticsearchOutage: with Elasticsearch unreachable at start and again
// mid-stream, transfer stays up, reports not ready, commits nothing it has
// not indexed, and catches up exactly once when Elasticsearch returns.
func TestElasticsearchOutage(t *testing.T) {
	s := stack.New(t, stack.Options{Without: []string{stack.Etcd, stack.ES}})
	es := newSwitchedES(t)
	p := newProducer(t, s.KafkaAddrs(), testTopic)
	cfg := testConfig(t, s)
	must(t, cfg.ESAddresses.Set(es.url()))
	r := startService(t, "transfer", cfg)

	p.send(1000)
	waitFor(t, 10*time.Second, "a not-ready report naming Elasticsearch", func() bool {
		code, body := readyz(t, r.svc.Addr())
		return code == http.StatusServiceUnavailable && strings.Contains(body, "elasticsearch")
	})
	if res, err := http.Get("http://" + r.svc.Addr() + "/healthz"); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("/healthz during the outage: %v %v", res, err)
	} else {
		res.Body.Close()
	}
	time.Sleep(300 * time.Millisecond)
	if c := committed(t, s.KafkaAddrs(), cfg.Group, testTopic); len(c) != 0 {
		t.Fatalf("offsets committed with Elasticsearch unreachable: %v", c)
	}

	es.up(t)
	waitFor(t, 30*time.Second, "catching up after the start outage", func() bool { return es.fake.Count(testIndex) >= 1000 })
	waitFor(t, 15*time.Second, "ready", func() bool { code, _ := readyz(t, r.svc.Addr()); return code == http.StatusOK })

	es.down()
	p.send(1000)
	waitFor(t, 15*time.Second, "not ready during the second outage", func() bool {
		code, _ := readyz(t, r.svc.Addr())
		return code == http.StatusServiceUnavailable
	})
	time.Sleep(1500 * time.Millisecond) // past an auto-commit interval
	checkCommittedIn(t, s, es.fake, cfg.Group)

	es.up(t)
	want := p.sent()
	waitFor(t, 30*time.Second, "catching up after the second outage", func() bool { return es.fake.Count(testIndex) >= len(want) })
	ids := map[string]int{}
	for _, d := range es.fake.Docs(testIndex) {
		ids[d.ID]++
	}
	for id := range want {
		if ids[id] != 1 {
			t.Fatalf("document %s indexed %d times", id, ids[id])
		}
	}
	if len(ids) != len(want) {
		t.Fatalf("%d documents for %d records", len(ids), len(want))
	}
	checkCommittedIn(t, s, es.fake, cfg.Group)
	r.stop()
}

// checkCommittedIn is checkCommitted against an esfake server outside the stack.
func checkCommittedIn(t testing.TB, s *stack.Stack, fake *esfake.Server, group string) {
	t.Helper()
	indexed := map[string]bool{}
	for _, d := range fake.Docs(testIndex) {
		indexed[d.ID] = true
	}
	for part, c := range committed(t, s.KafkaAddrs(), group, testTopic) {
		for off := int64(0); off < c; off++ {
			if id := fmt.Sprintf("%s-%d-%d", testTopic, part, off); !indexed[id] {
				t.Fatalf("partition %d committed at %d, but %s is not indexed", part, c, id)
			}
		}
	}
}

// TestShutdownAbandonsUncommitted: stopping while Elasticsearch refuses
// every bulk request returns within the drain timeout and commits nothing;
// the next run indexes every record once.
func TestShutdownAbandonsUncommitted(t *testing.T) {
	w := newWorld(t, stack.Embedded)
	p := w.newProducer()
	cfg := w.config()
	cfg.DrainTimeout = 500 * time.Millisecond
	w.s.ES().FailBulk(1<<30, http.StatusServiceUnavailable)
	r := startService(t, "first", cfg)
	p.send(600)
	waitFor(t, 20*time.Second, "retries", func() bool { return scrape(t, r.svc.Addr(), "transfer_bulk_retries_total") >= 5 })

	start := time.Now()
	r.stop()
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("shutdown took %s with a drain timeout of %s", d, cfg.DrainTimeout)
	}
	if c := w.committed(); len(c) != 0 {
		t.Fatalf("offsets committed for abandoned batches: %v", c)
	}
	if n := w.es.count(""); n != 0 {
		t.Fatalf("%d documents indexed through a 503 storm", n)
	}

	w.s.ES().FailBulk(0, http.StatusServiceUnavailable)
	r2 := startService(t, "second", cfg)
	w.waitCount(30*time.Second, 600)
	w.checkExactly(p.sentIDs())
	r2.stop()
}
