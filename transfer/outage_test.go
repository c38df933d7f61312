package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/logpipe/logpipe/devstack/esfake"
	"github.com/logpipe/logpipe/devstack/proc"
	"github.com/logpipe/logpipe/devstack/stack"
)

// switchedES serves one esfake server on an address that can be taken off
// the network and brought back: a relay in front of it, which refuses
// connections while down.
type switchedES struct {
	fake  *esfake.Server
	srv   *httptest.Server
	relay *proc.Relay
}

// newSwitchedES starts esfake behind a relay, and leaves the relay down.
func newSwitchedES(t testing.TB) *switchedES {
	t.Helper()
	e := &switchedES{fake: esfake.New()}
	e.srv = httptest.NewServer(e.fake)
	t.Cleanup(e.srv.Close)
	e.relay = proc.NewRelay(t)
	return e
}

func (e *switchedES) url() string { return "http://" + e.relay.Addr() }

// up brings Elasticsearch back on the network.
func (e *switchedES) up() { e.relay.To(e.srv.Listener.Addr().String()) }

// down takes it off: connections are cut and refused.
func (e *switchedES) down() {
	e.relay.To("")
	e.relay.Cut()
}

// commitInterval is how often transfer's consumer group commits the offsets
// it marked (Consumer.Offsets.AutoCommit.Interval in internal/group). A test
// that checks that nothing was committed waits past more than one.
const commitInterval = time.Second

// failedBulks counts the bulk requests that got no answer.
const failedBulks = `transfer_bulk_requests_total{status="error"}`

// metricSum is the sum of the series of a metric (or the value of one
// series, name{labels}) on the /metrics page at addr, 0 when there is none
// yet.
func metricSum(t testing.TB, addr, name string) float64 {
	t.Helper()
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, name+" ") || (!strings.Contains(name, "{") && strings.HasPrefix(line, name+"{")) {
			fields := strings.Fields(line)
			v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			sum += v
		}
	}
	return sum
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
	waitFor(t, within, "a not-ready report naming Elasticsearch", func() bool {
		code, body := readyz(t, r.svc.Addr())
		return code == http.StatusServiceUnavailable && strings.Contains(body, "elasticsearch")
	})
	if res, err := http.Get("http://" + r.svc.Addr() + "/healthz"); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("/healthz during the outage: %v %v", res, err)
	} else {
		res.Body.Close()
	}
	// transfer consumes only once the index template is in (Run), so what
	// this shows is that a not-ready transfer takes nothing from Kafka:
	// no bulk request, and no offset committed past two commit intervals.
	time.Sleep(2*commitInterval + commitInterval/2)
	if c := committed(t, s.KafkaAddrs(), cfg.Group, testTopic); len(c) != 0 {
		t.Fatalf("offsets committed with Elasticsearch unreachable: %v", c)
	}
	if n := metricSum(t, r.svc.Addr(), "transfer_bulk_requests_total"); n != 0 {
		t.Fatalf("%v bulk requests before the index template was installed", n)
	}

	es.up()
	waitFor(t, within, "catching up after the start outage", func() bool { return es.fake.Count(testIndex) >= 1000 })
	waitFor(t, within, "ready", func() bool { code, _ := readyz(t, r.svc.Addr()); return code == http.StatusOK })

	es.down()
	failed := metricSum(t, r.svc.Addr(), failedBulks)
	p.send(1000)
	waitFor(t, within, "not ready during the second outage", func() bool {
		code, _ := readyz(t, r.svc.Addr())
		return code == http.StatusServiceUnavailable
	})
	// The check below means something only once transfer holds records it
	// could not index: see a bulk request of them fail, then let two commit
	// intervals pass.
	waitFor(t, within, "a bulk request failing during the second outage", func() bool {
		return metricSum(t, r.svc.Addr(), failedBulks) > failed
	})
	time.Sleep(2*commitInterval + commitInterval/2)
	checkCommittedIn(t, s, es.fake, cfg.Group)

	es.up()
	want := p.sent()
	waitFor(t, within, "catching up after the second outage", func() bool { return es.fake.Count(testIndex) >= len(want) })
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
	waitFor(t, within, "retries", func() bool { return scrape(t, r.svc.Addr(), "transfer_bulk_retries_total") >= 5 })

	start := time.Now()
	r.stop()
	// Without the drain timeout it would not end while Elasticsearch refuses;
	// the bound is far above the timeout, for a loaded machine.
	if d := time.Since(start); d > time.Minute {
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
	w.waitCount(within, 600)
	w.checkExactly(p.sentIDs())
	r2.stop()
}
