package backends

import (
	"context"
	"fmt"
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
	s := startStack(t, Options{Without: []string{Etcd, ES}})
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

// TestLeaderDeadBeforeSyncIsExpired is a consumer killed after its
// JoinGroup made it the group's leader, before it sent SyncGroup: leader D
// and follower F are in a group; D joins again, and its client is gone
// before F joins too and completes the join; F sends SyncGroup and waits
// for the assignment that D will never send. As on Kafka, D's session must
// end one session timeout after the join completed, F's SyncGroup must be
// answered REBALANCE_IN_PROGRESS, and F, joining again, must lead the
// group alone and be able to take every partition.
//
// The last joins have a short session timeout; the earlier ones a long
// one, and so the session timer that kfake armed for D when it answered
// D's earlier requests ends long after the test: it stands for the timer
// that kfake does not arm when the answer to D's last JoinGroup finds D's
// connection closed (then nothing but the reaper removes D). That answer
// does find it closed in about half of the runs (a select between the
// reply and the connection's end), so the test plays the scenario in
// several groups at once. The rebalance timeouts are long too, so that
// kfake's own limit on a join that is not synced cannot end the wait
// within the test.
func TestLeaderDeadBeforeSyncIsExpired(t *testing.T) {
	t.Parallel()
	s := startStack(t, Options{Without: []string{Etcd, ES}})
	admin := newFranzClient(t, s.KafkaAddrs())

	const groups = 8
	followers := make([]*rawMember, groups)
	syncs := make([]<-chan syncResult, groups)
	for i := range followers {
		group := "dead-leader-" + strconv.Itoa(i)
		followers[i], syncs[i] = killLeaderBeforeSync(t, s, admin, group)
	}
	for i, f := range followers {
		res := <-syncs[i]
		if res.err != nil {
			t.Fatalf("group %s: member F's SyncGroup after its leader died (answer awaited up to %v): %v", f.group, waitLimit, res.err)
		}
		if err := kerr.ErrorForCode(res.resp.ErrorCode); err != kerr.RebalanceInProgress {
			t.Fatalf("group %s: member F's SyncGroup after its leader died: %v, want %v", f.group, err, kerr.RebalanceInProgress)
		}
		if err := f.join(t.Context(), shortSession); err != nil {
			t.Fatal(err)
		}
		if f.leader != f.id || len(f.members) != 1 {
			t.Fatalf("group %s: member F joined again with leader %s and %d members, want itself alone", f.group, f.leader, len(f.members))
		}
		got := f.sync(t, map[string][]int32{f.id: allPartitions(s.Partitions())})
		if want := allPartitions(s.Partitions()); !slices.Equal(got, want) {
			t.Fatalf("group %s: member F was assigned partitions %v, want %v", f.group, got, want)
		}
	}
}

const (
	// shortSession is the session timeout of the joins that the reaper
	// must act on.
	shortSession = 2 * time.Second
	// longSession and longRebalance are beyond the waits of a test.
	longSession   = 4 * time.Minute
	longRebalance = 4 * time.Minute
)

// syncResult is the outcome of a SyncGroup.
type syncResult struct {
	resp *kmsg.SyncGroupResponse
	err  error
}

// killLeaderBeforeSync plays the scenario of TestLeaderDeadBeforeSyncIsExpired
// in group up to F's SyncGroup, which it sends in the background; it
// returns F and the channel on which the SyncGroup's outcome comes, within
// waitLimit.
func killLeaderBeforeSync(t *testing.T, s *Stack, admin *kgo.Client, group string) (*rawMember, <-chan syncResult) {
	t.Helper()
	var dialed dialLog
	d := newRawMember(t, s.KafkaAddrs(), group, kgo.Dialer(dialed.dial))
	f := newRawMember(t, s.KafkaAddrs(), group)

	// D joins alone and leads; F joins, and D, joining again, stays the
	// leader.
	if err := d.join(t.Context(), longSession); err != nil {
		t.Fatal(err)
	}
	d.sync(t, map[string][]int32{d.id: allPartitions(s.Partitions())})
	joined := make(chan error, 1)
	go func() { joined <- f.join(t.Context(), longSession) }()
	waitUntil(t, "member F in group "+group, func() bool { return len(describe(t, admin, group)) == 2 })
	if err := d.join(t.Context(), longSession); err != nil {
		t.Fatal(err)
	}
	if err := <-joined; err != nil {
		t.Fatal(err)
	}
	if d.leader != d.id {
		t.Fatalf("group %s: leader %s after D joined again, want D (%s)", group, d.leader, d.id)
	}
	d.sync(t, map[string][]int32{d.id: allPartitions(s.Partitions())})
	f.sync(t, nil)

	// D joins once more, and its client is gone before F joins.
	pending := make(chan error, 1)
	go func() {
		_, err := d.joinRequest(shortSession).RequestWith(context.Background(), d.cl)
		pending <- err
	}()
	waitUntil(t, "group "+group+" rebalancing", func() bool { return describeGroup(t, admin, group).State == "PreparingRebalance" })
	d.cl.Close()
	if err := <-pending; err == nil {
		t.Fatalf("group %s: member D's JoinGroup was answered before F joined", group)
	}
	dialed.waitClosed(t, s, "member D")

	// F's JoinGroup completes the join, with D as the leader.
	if err := f.join(t.Context(), shortSession); err != nil {
		t.Fatal(err)
	}
	if f.leader != d.id {
		t.Fatalf("group %s: leader %s after the join, want D (%s)", group, f.leader, d.id)
	}
	syncs := make(chan syncResult, 1)
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	req := f.syncRequest(nil)
	go func() {
		defer cancel()
		resp, err := req.RequestWith(ctx, f.cl)
		syncs <- syncResult{resp, err}
	}()
	return f, syncs
}

// rawMember is a classic consumer group member of "logs" that speaks
// through single requests, so that a test can stop it at any step.
type rawMember struct {
	cl         *kgo.Client
	group      string
	id         string
	generation int32
	leader     string
	members    []kmsg.JoinGroupResponseMember // when it leads
}

func newRawMember(tb testing.TB, addrs []string, group string, opts ...kgo.Opt) *rawMember {
	tb.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addrs...)}, opts...)...)
	if err != nil {
		tb.Fatalf("member of group %s: %v", group, err)
	}
	tb.Cleanup(cl.Close)
	return &rawMember{cl: cl, group: group}
}

func (m *rawMember) joinRequest(session time.Duration) *kmsg.JoinGroupRequest {
	meta := kmsg.NewConsumerMemberMetadata()
	meta.Topics = []string{"logs"}
	req := kmsg.NewPtrJoinGroupRequest()
	req.Group = m.group
	req.MemberID = m.id
	req.SessionTimeoutMillis = int32(session.Milliseconds())
	req.RebalanceTimeoutMillis = int32(longRebalance.Milliseconds())
	req.ProtocolType = "consumer"
	req.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: meta.AppendTo(nil)}}
	return req
}

// join joins the group, asking for a member ID first if m has none, and
// waits for the join to complete.
func (m *rawMember) join(ctx context.Context, session time.Duration) error {
	for {
		resp, err := m.joinRequest(session).RequestWith(ctx, m.cl)
		if err == nil {
			err = kerr.ErrorForCode(resp.ErrorCode)
		}
		if err == kerr.MemberIDRequired && m.id == "" {
			m.id = resp.MemberID
			continue
		}
		if err != nil {
			return fmt.Errorf("group %s: JoinGroup of member %q: %w", m.group, m.id, err)
		}
		m.generation = resp.Generation
		m.leader = resp.LeaderID
		m.members = resp.Members
		return nil
	}
}

func (m *rawMember) syncRequest(assignments map[string][]int32) *kmsg.SyncGroupRequest {
	req := kmsg.NewPtrSyncGroupRequest()
	req.Group = m.group
	req.MemberID = m.id
	req.Generation = m.generation
	req.ProtocolType = kmsg.StringPtr("consumer")
	req.Protocol = kmsg.StringPtr("range")
	for id, partitions := range assignments {
		a := kmsg.NewConsumerMemberAssignment()
		a.Topics = []kmsg.ConsumerMemberAssignmentTopic{{Topic: "logs", Partitions: partitions}}
		ga := kmsg.NewSyncGroupRequestGroupAssignment()
		ga.MemberID = id
		ga.MemberAssignment = a.AppendTo(nil)
		req.GroupAssignment = append(req.GroupAssignment, ga)
	}
	return req
}

// sync sends SyncGroup with assignments (the leader's; nil for a
// follower) and returns the partitions of "logs" assigned to m.
func (m *rawMember) sync(t *testing.T, assignments map[string][]int32) []int32 {
	t.Helper()
	resp, err := m.syncRequest(assignments).RequestWith(t.Context(), m.cl)
	if err == nil {
		err = kerr.ErrorForCode(resp.ErrorCode)
	}
	if err != nil {
		t.Fatalf("group %s: SyncGroup of member %s: %v", m.group, m.id, err)
	}
	if len(resp.MemberAssignment) == 0 {
		return nil // none given
	}
	var a kmsg.ConsumerMemberAssignment
	if err := a.ReadFrom(resp.MemberAssignment); err != nil {
		t.Fatalf("group %s: assignment of member %s: %v", m.group, m.id, err)
	}
	var partitions []int32
	for _, topic := range a.Topics {
		if topic.Topic == "logs" {
			partitions = append(partitions, topic.Partitions...)
		}
	}
	slices.Sort(partitions)
	return partitions
}

func allPartitions(n int) []int32 {
	partitions := make([]int32, n)
	for i := range partitions {
		partitions[i] = int32(i)
	}
	return partitions
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
	var ids []string
	for _, m := range describeGroup(t, cl, group).Members {
		ids = append(ids, m.MemberID)
	}
	return ids
}

// describeGroup returns the broker's description of group.
func describeGroup(t *testing.T, cl *kgo.Client, group string) kmsg.DescribeGroupsResponseGroup {
	t.Helper()
	req := kmsg.NewPtrDescribeGroupsRequest()
	req.Groups = []string{group}
	resp, err := req.RequestWith(t.Context(), cl)
	if err != nil {
		t.Fatalf("describing group %s: %v", group, err)
	}
	if len(resp.Groups) != 1 {
		t.Fatalf("describing group %s: %d groups in the answer", group, len(resp.Groups))
	}
	return resp.Groups[0]
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
