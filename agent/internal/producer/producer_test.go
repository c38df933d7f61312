package producer

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/logpipe/logpipe/agent/internal/testkit"
	"github.com/logpipe/logpipe/common/partition"
	"github.com/logpipe/logpipe/devstack/stack"
)

// owner records outcomes and releases every message.
type owner struct {
	mu   sync.Mutex
	ok   int
	errs []error
}

func (o *owner) Sent(*Message) {}

func (o *owner) Done(m *Message, err error) {
	o.mu.Lock()
	if err != nil {
		o.errs = append(o.errs, err)
	} else {
		o.ok++
	}
	o.mu.Unlock()
	m.Release()
}

func (o *owner) counts() (int, int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.ok, len(o.errs)
}

func newProducer(t *testing.T, brokers []string, mod func(*Config)) *Producer {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Brokers = brokers
	if mod != nil {
		mod(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close(10 * time.Second) })
	return p
}

func send(t *testing.T, p *Producer, o Owner, key, val string) error {
	t.Helper()
	m, err := p.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	v := append(m.Buffer(len(val)), val...)
	if err := p.Send(context.Background(), m, o, "logs", []byte(key), v); err != nil {
		m.Release()
		return err
	}
	return nil
}

func waitCounts(t *testing.T, o *owner, ok, failed int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		a, b := o.counts()
		if a >= ok && b >= failed {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("acked %d failed %d, want %d and %d", a, b, ok, failed)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSendAndAcknowledge(t *testing.T) {
	s := stack.New(t, stack.Options{Without: []string{stack.Etcd, stack.ES}})
	p := newProducer(t, s.KafkaAddrs(), nil)
	o := &owner{}
	const n = 500
	for i := range n {
		if err := send(t, p, o, "job-a", `{"message":"x `+strconv.Itoa(i)+`","@timestamp":"2026-11-21T10:00:00Z"}`); err != nil {
			t.Fatal(err)
		}
	}
	waitCounts(t, o, n, 0)
	if st := p.Stats(); st.Acked != n || st.Inflight != 0 || st.InflightBytes != 0 {
		t.Fatalf("stats %+v", st)
	}
	r := testkit.NewReader(t, s.KafkaAddrs(), "logs")
	recs := r.WaitFor(10*time.Second, "the records", func(recs []testkit.Record) bool { return len(recs) >= n })
	part := recs[0].Partition
	for i, rec := range recs {
		if rec.Key != "job-a" || rec.Partition != part || rec.Rec.Message != "x "+strconv.Itoa(i) {
			t.Fatalf("record %d: key %q partition %d message %q", i, rec.Key, rec.Partition, rec.Rec.Message)
		}
	}
}

func TestPoolBoundsInflight(t *testing.T) {
	s := stack.New(t, stack.Options{Without: []string{stack.Etcd, stack.ES}})
	p := newProducer(t, s.KafkaAddrs(), func(c *Config) { c.MaxInflight = 2 })
	a, _ := p.Acquire(context.Background())
	b, _ := p.Acquire(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := p.Acquire(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("third Acquire: %v, want a timeout", err)
	}
	a.Release()
	if c, err := p.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	} else {
		c.Release()
	}
	b.Release()
}

func TestBytesBudget(t *testing.T) {
	s := stack.New(t, stack.Options{Without: []string{stack.Etcd, stack.ES}})
	p := newProducer(t, s.KafkaAddrs(), func(c *Config) { c.MaxInflightSize = 4096; c.MaxMessageBytes = 4096 })
	if err := s.StopKafka(); err != nil {
		t.Fatal(err)
	}
	// Held messages keep their bytes: the owner never releases.
	held := ownerFunc(func(*Message, error) {})
	big := string(make([]byte, 3000))
	if err := send(t, p, held, "k", big); err != nil {
		t.Fatal(err)
	}
	m, _ := p.Acquire(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := p.Send(ctx, m, held, "logs", nil, append(m.Buffer(len(big)), big...)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("send over budget: %v", err)
	}
	m.Release()
	if err := s.StartKafka(); err != nil {
		t.Fatal(err)
	}
}

type ownerFunc func(*Message, error)

func (f ownerFunc) Sent(*Message)              {}
func (f ownerFunc) Done(m *Message, err error) { f(m, err) }

func TestOutageFailsThenRecovers(t *testing.T) {
	s := stack.New(t, stack.Options{Without: []string{stack.Etcd, stack.ES}})
	p := newProducer(t, s.KafkaAddrs(), nil)
	o := &owner{}
	if err := send(t, p, o, "k", "before"); err != nil {
		t.Fatal(err)
	}
	waitCounts(t, o, 1, 0)
	if err := s.StopKafka(); err != nil {
		t.Fatal(err)
	}
	if err := send(t, p, o, "k", "during"); err != nil {
		t.Fatal(err)
	}
	waitCounts(t, o, 1, 1)
	if err := s.StartKafka(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		if err := send(t, p, o, "k", "after"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		if ok, _ := o.counts(); ok >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no acknowledgement after Kafka came back")
		}
	}
}

func TestBackoff(t *testing.T) {
	if d := Backoff(0, 20); d != 0 {
		t.Fatalf("first retry waits %v", d)
	}
	for r := 1; r < 30; r++ {
		if d := Backoff(r, 20); d <= 0 || d > time.Second {
			t.Fatalf("retry %d waits %v", r, d)
		}
	}
}

func TestBudget(t *testing.T) {
	b := newBudget(10)
	ctx := context.Background()
	if err := b.Acquire(ctx, 6); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := b.Acquire(short, 6); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("over budget: %v", err)
	}
	got := make(chan error, 3)
	for range 3 {
		go func() { got <- b.Acquire(ctx, 4) }()
	}
	time.Sleep(20 * time.Millisecond)
	b.Release(6) // room for two of the three
	for range 2 {
		if err := <-got; err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-got:
		t.Fatal("a third waiter got room that is not there")
	case <-time.After(50 * time.Millisecond):
	}
	b.Release(4)
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if u := b.used.Load(); u != 8 {
		t.Fatalf("used %d, want 8", u)
	}
}

// The agent puts each job's lines on the partition Java's default
// partitioner picks, which franz-go's Kafka-compatible hasher computes too.
func TestPartitionLikeJava(t *testing.T) {
	s := stack.New(t, stack.Options{Without: []string{stack.Etcd, stack.ES}, Partitions: 7})
	p := newProducer(t, s.KafkaAddrs(), nil)
	o := &owner{}
	jobs := []string{"21", "foobar", "abc", "web-1", "a-little-bit-longer-string", "jöb-ü"}
	for _, job := range jobs {
		if err := send(t, p, o, job, `{"message":"x","@timestamp":"2026-11-21T10:00:00Z"}`); err != nil {
			t.Fatal(err)
		}
	}
	waitCounts(t, o, len(jobs), 0)
	java := kgo.StickyKeyPartitioner(nil).ForTopic("logs") // murmur2, as Kafka's Java client
	r := testkit.NewReader(t, s.KafkaAddrs(), "logs")
	recs := r.WaitFor(10*time.Second, "the records", func(recs []testkit.Record) bool { return len(recs) >= len(jobs) })
	for _, rec := range recs {
		want := int32(java.Partition(&kgo.Record{Key: []byte(rec.Key)}, 7))
		if rec.Partition != want || rec.Partition != partition.ForJob(rec.Key, 7) {
			t.Errorf("job %q on partition %d, want %d", rec.Key, rec.Partition, want)
		}
	}
}

// What the producer keeps for reuse is bounded by bytes whatever the
// record sizes, and favours the small buffers that most lines need.
func TestBuffersBoundedByBytes(t *testing.T) {
	b := newBuffers(1 << 20)
	for range 100 {
		b.put(make([]byte, 0, 48<<10))
	}
	if h := b.held(); h > 1<<20 || h < 1<<20-48<<10 {
		t.Fatalf("%d bytes kept of 100 buffers of 48 KiB, limit 1 MiB", h)
	}
	for range 4096 {
		b.put(make([]byte, 0, 256))
	}
	if h := b.held(); h > 1<<20 {
		t.Fatalf("%d bytes kept, limit 1 MiB", h)
	}
	large := 0
	for _, c := range b.free[len(classSizes)/2:] {
		large += len(c)
	}
	if large != 0 {
		t.Fatalf("%d large buffers kept while small ones were dropped", large)
	}
	b.put(make([]byte, 0, 8<<20)) // larger than any class
	if h := b.held(); h > 1<<20 {
		t.Fatalf("%d bytes kept after an oversized buffer", h)
	}
	for _, n := range []int{0, 1, 255, 256, 257, 1000, 48 << 10, 256<<10 + 300, 1000000, 5 << 20} {
		buf := b.get(n)
		if len(buf) != 0 || cap(buf) < n || (n > minClass && cap(buf) > n+n/stepsPerPow2) {
			t.Fatalf("get(%d): len %d cap %d", n, len(buf), cap(buf))
		}
	}
}

func TestValueBuffersReused(t *testing.T) {
	s := stack.New(t, stack.Options{Without: []string{stack.Etcd, stack.ES}})
	p := newProducer(t, s.KafkaAddrs(), nil)
	o := &owner{}
	m, _ := p.Acquire(context.Background())
	first := m.Buffer(1000)
	if err := p.Send(context.Background(), m, o, "logs", []byte("k"), append(first, strings.Repeat("v", 1000)...)); err != nil {
		t.Fatal(err)
	}
	waitCounts(t, o, 1, 0)
	if st := p.Stats(); st.KeptBytes < int64(cap(first)) {
		t.Fatalf("stats %+v: the released buffer is not kept", st)
	}
	m2, _ := p.Acquire(context.Background())
	defer m2.Release()
	if again := m2.Buffer(1000); &again[:1][0] != &first[:1][0] {
		t.Fatal("a kept buffer of the right class was not reused")
	}
}

// A record that Kafka failed is sent again as it was, keeping its bytes in
// the budget (it is not counted twice).
func TestResendAfterFailure(t *testing.T) {
	s := stack.New(t, stack.Options{Without: []string{stack.Etcd, stack.ES}})
	p := newProducer(t, s.KafkaAddrs(), nil)
	var mu sync.Mutex
	var failed []*Message
	var acked int
	held := ownerFunc(func(m *Message, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			failed = append(failed, m)
			return
		}
		acked++
		m.Release()
	})
	if err := s.StopKafka(); err != nil {
		t.Fatal(err)
	}
	if err := send(t, p, held, "k", `{"message":"again","@timestamp":"2026-11-21T10:00:00Z"}`); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(failed)
		mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the record did not fail while Kafka was down")
		}
		time.Sleep(10 * time.Millisecond)
	}
	used := p.budget.used.Load()
	if err := s.StartKafka(); err != nil {
		t.Fatal(err)
	}
	if err := p.Resend(context.Background(), failed[0]); err != nil {
		t.Fatal(err)
	}
	if u := p.budget.used.Load(); u != used {
		t.Fatalf("budget %d after a resend, was %d", u, used)
	}
	r := testkit.NewReader(t, s.KafkaAddrs(), "logs")
	r.WaitFor(30*time.Second, "the record sent again", func(recs []testkit.Record) bool {
		mu.Lock()
		defer mu.Unlock()
		return len(recs) == 1 && recs[0].Rec.Message == "again" && acked == 1
	})
	if u := p.budget.used.Load(); u != 0 {
		t.Fatalf("budget %d after the record was acknowledged and released", u)
	}
}
