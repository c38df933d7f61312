package stack

import (
	"context"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// waitLimit bounds the waits of the reaper's test: a guard against a hang,
// far above what they take.
const waitLimit = time.Minute

// TestMemberDeadInJoinIsExpired is a consumer killed while its JoinGroup
// waits: a live member B owns every partition; member A joins, and its
// client is gone before the group completes the join; B rejoins, leads,
// gives A half of the partitions and syncs. As on Kafka, A's session must
// end, and B must own every partition again.
//
// kfake arms A's session timer when the answer to its JoinGroup finds A's
// connection closed in about half of the runs (a select between the reply
// and the connection's end), so the test plays the scenario in several
// groups at once: without the reaper, some of them keep a dead member.
func TestMemberDeadInJoinIsExpired(t *testing.T) {
	t.Parallel()
	s := New(t, Options{Without: []string{Etcd, ES}})
	hold := holdHeartbeats(s.Kafka())
	admin := newFranzClient(t, s.KafkaAddrs())

	const groups = 8
	owners := make([]*owner, groups)
	for i := range owners {
		group := "dead-in-join-" + strconv.Itoa(i)
		b := startOwner(t, s.KafkaAddrs(), group)
		b.waitOwns(t, s.Partitions())

		// B does not hear of the rebalance that A's join starts until
		// A's client is gone.
		hold.set(group, true)
		a := joinAndDie(t, s, admin, group)
		hold.set(group, false)

		// B rejoins, leads, and gives the dead A half of the partitions.
		b.waitOwns(t, s.Partitions()/2)
		t.Logf("group %s: dead member %s was given half of the partitions", group, a)
		owners[i] = b
	}
	for _, b := range owners {
		b.waitOwns(t, s.Partitions())
	}
}

// joinAndDie joins group as member A through a client of its own, whose
// JoinGroup stays pending because the group's member must rejoin too, and
// closes the client while it waits. It returns when the broker has seen the
// client's connections close, with A's member ID.
func joinAndDie(t *testing.T, s *Stack, admin *kgo.Client, group string) string {
	t.Helper()
	var dialed dialLog
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.KafkaAddrs()...), kgo.Dialer(dialed.dial))
	if err != nil {
		t.Fatalf("member A's client: %v", err)
	}
	defer cl.Close()

	meta := kmsg.NewConsumerMemberMetadata()
	meta.Topics = []string{"logs"}
	join := kmsg.NewPtrJoinGroupRequest()
	join.Group = group
	join.SessionTimeoutMillis = 300
	join.RebalanceTimeoutMillis = 1000
	join.ProtocolType = "consumer"
	join.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: meta.AppendTo(nil)}}
	resp, err := join.RequestWith(t.Context(), cl)
	if err != nil {
		t.Fatalf("member A's first JoinGroup: %v", err)
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != kerr.MemberIDRequired {
		t.Fatalf("member A's first JoinGroup: %v, want %v", err, kerr.MemberIDRequired)
	}
	id := resp.MemberID
	join.MemberID = id
	pending := make(chan error, 1)
	go func() {
		_, err := join.RequestWith(context.Background(), cl)
		pending <- err
	}()
	waitUntil(t, "member A in group "+group, func() bool {
		return slices.Contains(describe(t, admin, group), id)
	})

	cl.Close()
	if err := <-pending; err == nil {
		t.Fatalf("member A's JoinGroup was answered while the group's member was held back")
	}
	dialed.waitClosed(t, s, "member A")
	return id
}

// dialLog is a kgo dialer that notes the client's ends of its connections.
type dialLog struct {
	mu    sync.Mutex
	local []string
}

func (l *dialLog) dial(ctx context.Context, network, host string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, host)
	if err == nil {
		l.mu.Lock()
		l.local = append(l.local, c.LocalAddr().String())
		l.mu.Unlock()
	}
	return c, err
}

// waitClosed waits until the embedded broker has seen every connection
// that l dialed close.
func (l *dialLog) waitClosed(tb testing.TB, s *Stack, who string) {
	tb.Helper()
	waitUntil(tb, "the broker seeing the connections of "+who+" close", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return !connectedFrom(s.kafka.g, l.local)
	})
}

// describe returns the member IDs of group.
func describe(t *testing.T, cl *kgo.Client, group string) []string {
	t.Helper()
	req := kmsg.NewPtrDescribeGroupsRequest()
	req.Groups = []string{group}
	resp, err := req.RequestWith(t.Context(), cl)
	if err != nil {
		t.Fatalf("describing group %s: %v", group, err)
	}
	var ids []string
	for _, g := range resp.Groups {
		for _, m := range g.Members {
			ids = append(ids, m.MemberID)
		}
	}
	return ids
}

// connectedFrom reports whether g has an open connection from any of addrs.
func connectedFrom(g *gate, addrs []string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for c := range g.conns {
		if slices.Contains(addrs, c.RemoteAddr().String()) {
			return true
		}
	}
	return false
}

// heartbeatHold answers, in kfake's place, the Heartbeats of the groups
// that it holds with success, so that their members hear of a rebalance
// only once the test lets them.
type heartbeatHold struct {
	mu     sync.Mutex
	groups map[string]bool
}

func holdHeartbeats(c *kfake.Cluster) *heartbeatHold {
	h := &heartbeatHold{groups: map[string]bool{}}
	c.ControlKey(int16(kmsg.Heartbeat), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		hb := req.(*kmsg.HeartbeatRequest)
		h.mu.Lock()
		held := h.groups[hb.Group]
		h.mu.Unlock()
		if !held {
			return nil, nil, false
		}
		return hb.ResponseKind(), nil, true
	})
	return h
}

func (h *heartbeatHold) set(group string, held bool) {
	h.mu.Lock()
	h.groups[group] = held
	h.mu.Unlock()
}

// owner is a franz-go consumer group member of "logs" that keeps count of
// the partitions it owns.
type owner struct {
	name  string
	mu    sync.Mutex
	owned map[int32]bool
	seen  []int // the number owned after each change
}

func startOwner(tb testing.TB, addrs []string, group string) *owner {
	tb.Helper()
	o := &owner{name: group, owned: map[int32]bool{}}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics("logs"),
		kgo.Balancers(kgo.RangeBalancer()),
		kgo.SessionTimeout(10*time.Second),
		kgo.HeartbeatInterval(100*time.Millisecond),
		kgo.RebalanceTimeout(5*time.Second),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) { o.change(m["logs"], true) }),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, m map[string][]int32) { o.change(m["logs"], false) }),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) { o.change(m["logs"], false) }),
	)
	if err != nil {
		tb.Fatalf("member B of group %s: %v", group, err)
	}
	tb.Cleanup(cl.Close)
	return o
}

func (o *owner) change(partitions []int32, owned bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, p := range partitions {
		if owned {
			o.owned[p] = true
		} else {
			delete(o.owned, p)
		}
	}
	o.seen = append(o.seen, len(o.owned))
}

// waitOwns waits until a change, after those that earlier waits took,
// leaves o with n partitions.
func (o *owner) waitOwns(tb testing.TB, n int) {
	tb.Helper()
	from := 0
	waitUntil(tb, "member B of group "+o.name+" owning "+strconv.Itoa(n)+" partitions", func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		for ; from < len(o.seen); from++ {
			if o.seen[from] == n {
				o.seen = o.seen[from+1:]
				return true
			}
		}
		return false
	})
}

func newFranzClient(tb testing.TB, addrs []string) *kgo.Client {
	tb.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		tb.Fatalf("kafka client: %v", err)
	}
	tb.Cleanup(cl.Close)
	return cl
}

// waitUntil waits until cond holds, failing the test after waitLimit.
func waitUntil(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	for deadline := time.Now().Add(waitLimit); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not within %v", what, waitLimit)
		}
	}
}
