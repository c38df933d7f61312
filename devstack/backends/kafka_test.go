package backends

import (
	"context"
	"errors"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// saramaConfig is a client configuration with short retry backoffs.
func saramaConfig() *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.ClientID = "devstack-test"
	cfg.Net.DialTimeout = 2 * time.Second
	cfg.Net.ReadTimeout = 5 * time.Second
	cfg.Metadata.Retry.Backoff = 50 * time.Millisecond
	cfg.Producer.Retry.Backoff = 50 * time.Millisecond
	cfg.Consumer.Retry.Backoff = 50 * time.Millisecond
	cfg.Consumer.MaxWaitTime = 50 * time.Millisecond
	return cfg
}

// idempotentConfig is how the agent produces: acks=all, idempotent, one
// request in flight, lz4.
func idempotentConfig() *sarama.Config {
	cfg := saramaConfig()
	cfg.Producer.Idempotent = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Net.MaxOpenRequests = 1
	cfg.Producer.Compression = sarama.CompressionLZ4
	cfg.Producer.Return.Successes = true
	cfg.Producer.Retry.Max = 20
	return cfg
}

func syncProducer(tb testing.TB, addrs []string, cfg *sarama.Config) sarama.SyncProducer {
	tb.Helper()
	p, err := sarama.NewSyncProducer(addrs, cfg)
	if err != nil {
		tb.Fatalf("producer: %v", err)
	}
	tb.Cleanup(func() { p.Close() })
	return p
}

func saramaClient(tb testing.TB, addrs []string, cfg *sarama.Config) sarama.Client {
	tb.Helper()
	cl, err := sarama.NewClient(addrs, cfg)
	if err != nil {
		tb.Fatalf("client: %v", err)
	}
	tb.Cleanup(func() { cl.Close() })
	return cl
}

// produce sends n messages with values prefix-0 … prefix-(n-1), keyed over
// a few jobs, and returns them with their partitions and offsets.
func produce(tb testing.TB, p sarama.SyncProducer, topic, prefix string, n int) []*sarama.ProducerMessage {
	tb.Helper()
	msgs := make([]*sarama.ProducerMessage, n)
	for i := range msgs {
		msgs[i] = &sarama.ProducerMessage{
			Topic: topic,
			Key:   sarama.StringEncoder("job-" + strconv.Itoa(i%4)),
			Value: sarama.StringEncoder(prefix + "-" + strconv.Itoa(i)),
		}
	}
	if err := p.SendMessages(msgs); err != nil {
		tb.Fatalf("produce: %v", err)
	}
	return msgs
}

// readBack consumes every partition that msgs went to from the oldest
// offset and checks that it holds exactly those messages, in order.
func readBack(tb testing.TB, addrs []string, msgs []*sarama.ProducerMessage) {
	tb.Helper()
	want := map[int32][]*sarama.ProducerMessage{}
	topic := msgs[0].Topic
	for _, m := range msgs {
		want[m.Partition] = append(want[m.Partition], m)
	}
	c, err := sarama.NewConsumer(addrs, saramaConfig())
	if err != nil {
		tb.Fatalf("consumer: %v", err)
	}
	defer c.Close()
	// Subscribe to every partition first: the consumer batches
	// subscriptions.
	pcs := map[int32]sarama.PartitionConsumer{}
	for p := range want {
		pc, err := c.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			tb.Fatalf("consume partition %d: %v", p, err)
		}
		defer pc.Close()
		pcs[p] = pc
	}
	for _, p := range slices.Sorted(maps.Keys(want)) {
		pc := pcs[p]
		for i, w := range want[p] {
			select {
			case got := <-pc.Messages():
				wv, _ := w.Value.Encode()
				if got.Offset != w.Offset || string(got.Value) != string(wv) {
					tb.Errorf("partition %d record %d: got offset %d %q, want offset %d %q", p, i, got.Offset, got.Value, w.Offset, wv)
				}
			case err := <-pc.Errors():
				tb.Fatalf("partition %d: %v", p, err)
			case <-time.After(time.Minute):
				tb.Fatalf("partition %d: record %d of %d did not arrive", p, i, len(want[p]))
			}
		}
	}
}

func TestSaramaIdempotentProducer(t *testing.T) {
	t.Parallel()
	s := startStack(t, Options{Without: []string{Etcd, ES}})
	p := syncProducer(t, s.KafkaAddrs(), idempotentConfig())
	msgs := produce(t, p, "logs", "line", 200)
	parts := map[int32]bool{}
	for _, m := range msgs {
		parts[m.Partition] = true
	}
	if len(parts) < 2 {
		t.Errorf("records went to %d partition(s), want them spread by key", len(parts))
	}
	readBack(t, s.KafkaAddrs(), msgs)
}

func TestSaramaOffsetByTimestamp(t *testing.T) {
	t.Parallel()
	s := startStack(t, Options{Without: []string{Etcd, ES}})
	cfg := idempotentConfig()
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	p := syncProducer(t, s.KafkaAddrs(), cfg)
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	for i := range 5 {
		_, off, err := p.SendMessage(&sarama.ProducerMessage{
			Topic: "logs", Partition: 0, Timestamp: base.Add(time.Duration(i) * time.Second),
			Value: sarama.StringEncoder("at-" + strconv.Itoa(i)),
		})
		if err != nil || off != int64(i) {
			t.Fatalf("produce %d: offset %d, %v", i, off, err)
		}
	}
	cl := saramaClient(t, s.KafkaAddrs(), saramaConfig())
	cases := map[string]struct {
		at   int64
		want int64
	}{
		"before all":     {base.Add(-time.Minute).UnixMilli(), 0},
		"exactly second": {base.Add(time.Second).UnixMilli(), 1},
		"between":        {base.Add(2500 * time.Millisecond).UnixMilli(), 3},
		"exactly last":   {base.Add(4 * time.Second).UnixMilli(), 4},
		"after all":      {base.Add(time.Minute).UnixMilli(), -1},
		"newest":         {sarama.OffsetNewest, 5},
		"oldest":         {sarama.OffsetOldest, 0},
	}
	for name, c := range cases {
		got, err := cl.GetOffset("logs", 0, c.at)
		if err != nil || got != c.want {
			t.Errorf("%s: GetOffset = %d, %v; want %d", name, got, err, c.want)
		}
	}
}

// groupMember is one sarama consumer group member that consumes until
// stopped and reports its assignments and messages.
type groupMember struct {
	name   string
	group  sarama.ConsumerGroup
	stop   func()
	done   chan struct{}
	claims chan map[string][]int32 // each session's assignment
	msgs   chan *sarama.ConsumerMessage
}

func startMember(tb testing.TB, addrs []string, group, name string) *groupMember {
	tb.Helper()
	cfg := saramaConfig()
	cfg.ClientID = name
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.AutoCommit.Interval = 50 * time.Millisecond
	cfg.Consumer.Group.Session.Timeout = 2 * time.Second
	cfg.Consumer.Group.Heartbeat.Interval = 100 * time.Millisecond
	cfg.Consumer.Group.Rebalance.Timeout = 10 * time.Second
	cfg.Consumer.Group.Rebalance.Retry.Backoff = 50 * time.Millisecond
	g, err := sarama.NewConsumerGroup(addrs, group, cfg)
	if err != nil {
		tb.Fatalf("consumer group member %s: %v", name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &groupMember{
		name:   name,
		group:  g,
		done:   make(chan struct{}),
		claims: make(chan map[string][]int32, 100),
		msgs:   make(chan *sarama.ConsumerMessage, 1000),
	}
	var once sync.Once
	m.stop = func() {
		once.Do(func() {
			cancel()
			<-m.done
			if err := g.Close(); err != nil {
				tb.Errorf("member %s: close: %v", name, err)
			}
		})
	}
	go func() {
		defer close(m.done)
		for ctx.Err() == nil {
			if err := g.Consume(ctx, []string{"logs"}, m); err != nil && !errors.Is(err, sarama.ErrClosedConsumerGroup) {
				tb.Logf("member %s: consume: %v", name, err)
				time.Sleep(50 * time.Millisecond)
			}
		}
	}()
	tb.Cleanup(m.stop)
	return m
}

func (m *groupMember) Setup(s sarama.ConsumerGroupSession) error {
	m.claims <- s.Claims()
	return nil
}

func (m *groupMember) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (m *groupMember) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for {
		select {
		case msg, ok := <-c.Messages():
			if !ok {
				return nil
			}
			select {
			case m.msgs <- msg:
			case <-s.Context().Done():
				return nil
			}
			s.MarkMessage(msg, "")
		case <-s.Context().Done():
			return nil
		}
	}
}

// waitClaims waits for an assignment of m with n partitions of "logs".
func (m *groupMember) waitClaims(tb testing.TB, n int) []int32 {
	tb.Helper()
	deadline := time.After(time.Minute)
	for {
		select {
		case c := <-m.claims:
			if len(c["logs"]) == n {
				return slices.Sorted(slices.Values(c["logs"]))
			}
		case <-deadline:
			tb.Fatalf("member %s: no assignment of %d partitions", m.name, n)
		}
	}
}

// receive waits for n messages and returns their values.
func (m *groupMember) receive(tb testing.TB, n int) []string {
	tb.Helper()
	var got []string
	deadline := time.After(time.Minute)
	for len(got) < n {
		select {
		case msg := <-m.msgs:
			got = append(got, string(msg.Value))
		case <-deadline:
			tb.Fatalf("member %s: got %d of %d messages", m.name, len(got), n)
		}
	}
	return got
}

// waitCommitted waits until group has committed offsets that add up to total.
func waitCommitted(tb testing.TB, addrs []string, group string, partitions, total int) {
	tb.Helper()
	admin, err := sarama.NewClusterAdmin(addrs, saramaConfig())
	if err != nil {
		tb.Fatalf("admin: %v", err)
	}
	defer admin.Close()
	all := make([]int32, partitions)
	for i := range all {
		all[i] = int32(i)
	}
	var sum int64
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		resp, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{"logs": all})
		if err != nil {
			tb.Fatalf("committed offsets: %v", err)
		}
		sum = 0
		for _, b := range resp.Blocks["logs"] {
			if b.Offset > 0 {
				sum += b.Offset
			}
		}
		if sum == int64(total) {
			return
		}
	}
	tb.Fatalf("group %s: committed offsets add up to %d, want %d", group, sum, total)
}

func TestSaramaConsumerGroup(t *testing.T) {
	t.Parallel()
	s := startStack(t, Options{Without: []string{Etcd, ES}})
	addrs := s.KafkaAddrs()
	p := syncProducer(t, addrs, idempotentConfig())
	first := produce(t, p, "logs", "first", 60)

	a := startMember(t, addrs, "g", "a")
	if got := a.waitClaims(t, 6); len(got) != 6 {
		t.Fatalf("a alone: got partitions %v", got)
	}
	if got := a.receive(t, len(first)); !sameSet(got, values(first)) {
		t.Fatalf("a alone: got %v", got)
	}
	waitCommitted(t, addrs, "g", 6, len(first))

	// A second member joins: the partitions are split between the two.
	b := startMember(t, addrs, "g", "b")
	pa, pb := a.waitClaims(t, 3), b.waitClaims(t, 3)
	if both := slices.Sorted(slices.Values(append(slices.Clone(pa), pb...))); !slices.Equal(both, []int32{0, 1, 2, 3, 4, 5}) {
		t.Fatalf("split: a has %v, b has %v", pa, pb)
	}
	second := produce(t, p, "logs", "second", 60)
	got := append(a.receive(t, countIn(second, pa)), b.receive(t, countIn(second, pb))...)
	if !sameSet(got, values(second)) {
		t.Fatalf("split: got %v", got)
	}
	waitCommitted(t, addrs, "g", 6, len(first)+len(second))

	// It leaves: the first member gets everything back.
	b.stop()
	a.waitClaims(t, 6)
	a.stop()

	// A new member resumes from the committed offsets.
	third := produce(t, p, "logs", "third", 24)
	c := startMember(t, addrs, "g", "c")
	c.waitClaims(t, 6)
	if got := c.receive(t, len(third)); !sameSet(got, values(third)) {
		t.Fatalf("resume: got %v, want only the records produced after the commit", got)
	}
}

func values(msgs []*sarama.ProducerMessage) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		v, _ := m.Value.Encode()
		out[i] = string(v)
	}
	return out
}

func countIn(msgs []*sarama.ProducerMessage, partitions []int32) int {
	n := 0
	for _, m := range msgs {
		if slices.Contains(partitions, m.Partition) {
			n++
		}
	}
	return n
}

func sameSet(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}

func TestStopStartKafka(t *testing.T) {
	t.Parallel()
	s := startStack(t, Options{Without: []string{Etcd, ES}})
	addrs := s.KafkaAddrs()
	p := syncProducer(t, addrs, idempotentConfig())
	before := produce(t, p, "logs", "before", 30)

	if err := s.StopKafka(); err != nil {
		t.Fatalf("StopKafka: %v", err)
	}
	if c, err := net.DialTimeout("tcp", addrs[0], time.Second); err == nil {
		c.Close()
		t.Fatalf("dial %s while stopped: connected, want refused", addrs[0])
	}
	checkPortHeld(t, addrs[0])
	if err := s.StartKafka(); err != nil {
		t.Fatalf("StartKafka: %v", err)
	}
	if got := s.KafkaAddrs(); !slices.Equal(got, addrs) {
		t.Fatalf("address after restart: %v, want %v", got, addrs)
	}

	// The producer from before the outage reconnects and goes on.
	after := produce(t, p, "logs", "after", 30)
	readBack(t, addrs, append(before, after...))
}

func TestRestartOnDataDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := testContext(t, 30*time.Second)

	s1, err := Start(ctx, Options{DataDir: dir, Without: []string{ES}})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	p, err := sarama.NewSyncProducer(s1.KafkaAddrs(), idempotentConfig())
	if err != nil {
		t.Fatalf("producer: %v", err)
	}
	msgs := produce(t, p, "logs", "kept", 50)
	p.Close()
	m := startMember(t, s1.KafkaAddrs(), "g", "a")
	m.receive(t, len(msgs))
	waitCommitted(t, s1.KafkaAddrs(), "g", DefaultPartitions, len(msgs))
	m.stop()
	cli := etcdClient(t, s1)
	if _, err := cli.Put(ctx, "/logpipe/agents/kept", "yes"); err != nil {
		t.Fatalf("etcd put: %v", err)
	}
	cli.Close()
	if err := s1.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	s2 := startStack(t, Options{DataDir: dir, Without: []string{ES}, Topics: []string{"logs", "logs.dlq", "extra"}})
	readBack(t, s2.KafkaAddrs(), msgs)
	waitCommitted(t, s2.KafkaAddrs(), "g", DefaultPartitions, len(msgs))
	cl := saramaClient(t, s2.KafkaAddrs(), saramaConfig())
	for _, topic := range []string{"logs", "logs.dlq", "extra"} {
		if ps, err := cl.Partitions(topic); err != nil || len(ps) != DefaultPartitions {
			t.Errorf("topic %s after restart: partitions %v, %v; want %d", topic, ps, err, DefaultPartitions)
		}
	}
	resp, err := etcdClient(t, s2).Get(ctx, "/logpipe/agents/kept")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "yes" {
		t.Fatalf("etcd get after restart: %v, %v", resp, err)
	}
}

func TestOptions(t *testing.T) {
	t.Parallel()
	cases := map[string]Options{
		"negative partitions": {Partitions: -1},
		"unknown backend":     {Without: []string{"redis"}},
		"empty topic":         {Topics: []string{"logs", ""}},
	}
	for name, o := range cases {
		if _, err := Start(t.Context(), o); !errors.Is(err, ErrOptions) {
			t.Errorf("%s: got %v, want ErrOptions", name, err)
		}
	}
}

func TestPortInUse(t *testing.T) {
	t.Parallel()
	ln, err := listen("")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	for _, o := range []Options{
		{KafkaAddr: addr, Without: []string{Etcd, ES}},
		{EtcdAddr: addr, Without: []string{Kafka, ES}},
		{ESAddr: addr, Without: []string{Etcd, Kafka}},
	} {
		_, err := Start(t.Context(), o)
		if !errors.Is(err, syscall.EADDRINUSE) {
			t.Errorf("%+v: got %v, want address in use", o, err)
		}
		if err != nil && !strings.Contains(err.Error(), addr) {
			t.Errorf("error %q does not name %s", err, addr)
		}
	}
}

// checkPortHeld fails unless binding addr fails because it is in use: a
// backend taken off the network keeps its port, so that no other process
// can take it before the backend comes back.
func checkPortHeld(t *testing.T, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		ln.Close()
		t.Fatalf("listen on %s while stopped: the port was free, want it kept", addr)
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("listen on %s while stopped: %v, want address in use", addr, err)
	}
}
