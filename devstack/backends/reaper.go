package backends

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The embedded broker expires consumer group members as Kafka does.
//
// Apache Kafka arms the session expiry of every member of a classic group
// when a join completes, answered or not, and removes the members that have
// not sent SyncGroup within the rebalance timeout; a member whose JoinGroup
// or SyncGroup waits for an answer is kept alive meanwhile. So a consumer
// killed in a rebalance is gone one session timeout after the join
// completed, and the group rebalances without it.
//
// kfake (pkg/kfake v0.0.0-20260918054303-01f206a7e32c) falls short of that
// in three ways, all in groups.go:
//
//   - (*group).reply arms a member's session timer (updateHeartbeat) only
//     when the answer could be handed to the member's connection, and
//     (*clientReq).reply in client_conn.go picks at random between handing
//     it over and seeing the connection closed. A member that died while
//     its JoinGroup waited (a consumer killed during a rebalance) often gets
//     no timer when completeRebalance answers it.
//   - If another member leads and sends SyncGroup, completeLeaderSync stops,
//     through clearPendingSync, the timer that drops members which never
//     sync (tPendingSync): the group turns Stable and the dead member keeps
//     its partitions for good.
//   - If the dead member leads, the group stays CompletingRebalance, and the
//     live followers wait in SyncGroup for the assignment. handleSync
//     leaves their session timers running from the JoinGroup answer, so
//     each follower is removed one session timeout later (updateHeartbeat's
//     timer calls updateMemberAndRebalance, whose removeMember does not
//     answer the waiting SyncGroup), while the dead leader stays. The group
//     then waits in PreparingRebalance for the leader's JoinGroup, and every
//     JoinGroup of the follower, which gives up on an unanswered request
//     after its client's request timeout, restarts that wait (rebalance
//     resets tRebalance to the largest rebalance timeout of the members).
//     A consumer whose request timeout is the shorter, as sarama's is by
//     default (30 s against 60 s), never sees the group settle.
//
// memberReaper makes up for those. It watches JoinGroup, SyncGroup,
// Heartbeat and OffsetCommit through kfake's control hooks, only observing
// (kfake still answers them), and remembers for each member when it last
// sent one, the session timeout of its latest JoinGroup, and whether it has
// sent a SyncGroup, or anything, since that JoinGroup. For the groups with
// a member silent for longer than its session timeout, or one that has
// sent nothing since its JoinGroup, it asks the broker for the group's
// state (DescribeGroups) every reapInterval, and then:
//
//   - in a Stable group, a member silent for longer than its session
//     timeout since the group's last SyncGroup as well is dead. That is
//     never sooner than Kafka: a Stable group has answered every member's
//     JoinGroup by its leader's SyncGroup, from when Kafka counts the
//     session, and has no member waiting in JoinGroup or SyncGroup, so a
//     live member heartbeats within its session timeout;
//   - in a CompletingRebalance group, a member that has sent nothing since
//     its JoinGroup is dead once its session timeout has passed since the
//     reaper first saw the group in that state. That is never sooner than
//     Kafka either, as the join completed before; a JoinGroup of any member
//     starts the count anew, as a new join may have completed since. A
//     member that has sent SyncGroup since its JoinGroup is waiting for
//     the leader's assignment, alive: the reaper keeps it so with a
//     Heartbeat on its behalf (for the generation of its SyncGroup) each
//     half session timeout, which resets kfake's timer as a waiting
//     SyncGroup does in Kafka.
//
// A dead member is removed with a LeaveGroup on its behalf, as its session
// expiry would: the group rebalances, and kfake answers the waiting
// SyncGroups with REBALANCE_IN_PROGRESS, so their members join again.
//
// Two simpler rules do not fit. Silence for the rebalance timeout plus the
// session timeout after the member's last request is late by the rebalance
// timeout (transfer's is 40 s), and not even certain in kfake, which
// restarts the rebalance wait whenever another member joins. Noticing that
// the member's connection closed (in the gate) would need to know which
// connection a request came on, which control hooks do not tell, and a live
// member may reconnect.
//
// A member that joins with JoinGroup v3 or older is given its ID in the
// answer, unseen here; if it dies in that first join it is not reaped.
// Clients of Kafka 2.2 and later (franz-go, sarama from V2_2_0_0) join with
// v4 and up, which has them send their ID first.
//
// Remove the reaper once kfake arms the session timer of a member whose
// JoinGroup answer could not be sent and keeps a member alive while its
// SyncGroup waits.
type memberReaper struct {
	addr       string
	clientOpts []kgo.Opt // security options of its client
	log        logrus.FieldLogger

	mu     sync.Mutex
	groups map[string]*groupActivity

	cancel context.CancelFunc
	done   chan struct{}
}

// groupActivity is what the reaper saw of one consumer group.
type groupActivity struct {
	members  map[string]*memberActivity // by member ID
	lastSync time.Time                  // the latest SyncGroup of any member
	joins    int                        // JoinGroups seen, to tell a DescribeGroups answer older than one
	// completing is when a DescribeGroups answer first showed the group
	// CompletingRebalance after its latest JoinGroup; zero if none has.
	completing time.Time
}

// memberActivity is what the reaper saw of one group member.
type memberActivity struct {
	last    time.Time     // its latest request
	session time.Duration // of its latest JoinGroup
	// Since its latest JoinGroup:
	active     bool  // it sent a SyncGroup, Heartbeat or OffsetCommit
	synced     bool  // it sent a SyncGroup
	generation int32 // of that SyncGroup
}

const (
	// reapInterval is how often the reaper looks for silent members.
	// Without consumer groups a look costs a lock of an empty map;
	// DescribeGroups is asked only for groups with a silent member or
	// one that has sent nothing since its JoinGroup.
	reapInterval = 250 * time.Millisecond
	// reapRequestLimit bounds the reaper's requests to the broker, which
	// fail while it is taken off the network (StopKafka).
	reapRequestLimit = 5 * time.Second
)

// startReaper starts watching c's classic consumer groups, served on
// addr; stop stops it.
func startReaper(c *kfake.Cluster, addr string, clientOpts []kgo.Opt, log logrus.FieldLogger) *memberReaper {
	ctx, cancel := context.WithCancel(context.Background())
	r := &memberReaper{
		addr:       addr,
		clientOpts: clientOpts,
		log:        log.WithField("backend", "kafka"),
		groups:     map[string]*groupActivity{},
		cancel:     cancel,
		done:       make(chan struct{}),
	}
	for _, key := range []kmsg.Key{kmsg.JoinGroup, kmsg.SyncGroup, kmsg.Heartbeat, kmsg.OffsetCommit} {
		// A control function that does not handle the request stays
		// registered, and kfake goes on to answer the request.
		c.ControlKey(int16(key), r.observe)
	}
	go r.run(ctx)
	return r
}

// stop stops the reaper and waits until it has stopped. The control hooks
// stay: they only record, and go with the cluster.
func (r *memberReaper) stop() {
	r.cancel()
	<-r.done
}

// observe records a group request; it runs as a kfake control function,
// while kfake's loop waits for it, so it must not call into the cluster.
// The reaper's own Heartbeats come through here too.
func (r *memberReaper) observe(req kmsg.Request) (kmsg.Response, error, bool) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	switch req := req.(type) {
	case *kmsg.JoinGroupRequest:
		g := r.groups[req.Group]
		if g == nil {
			if req.MemberID == "" {
				break // the broker gives it an ID in the answer
			}
			g = &groupActivity{members: map[string]*memberActivity{}}
			r.groups[req.Group] = g
		}
		// Any JoinGroup may start a new join, which the group's
		// CompletingRebalance state seen so far may predate.
		g.joins++
		g.completing = time.Time{}
		if req.MemberID == "" {
			break
		}
		g.members[req.MemberID] = &memberActivity{
			last:    now,
			session: time.Duration(req.SessionTimeoutMillis) * time.Millisecond,
		}
	case *kmsg.SyncGroupRequest:
		g := r.groups[req.Group]
		if g == nil {
			break
		}
		g.lastSync = now
		if m := g.member(req.MemberID); m != nil {
			m.last = now
			m.active = true
			m.synced = true
			m.generation = req.Generation
		}
	case *kmsg.HeartbeatRequest:
		r.seen(req.Group, req.MemberID, now)
	case *kmsg.OffsetCommitRequest:
		r.seen(req.Group, req.MemberID, now)
	}
	return nil, nil, false
}

// seen notes a request of a member known from its JoinGroup; mu is held.
func (r *memberReaper) seen(group, member string, now time.Time) {
	if m := r.groups[group].member(member); m != nil {
		m.last = now
		m.active = true
	}
}

func (g *groupActivity) member(id string) *memberActivity {
	if g == nil {
		return nil
	}
	return g.members[id]
}

// silent reports whether m has sent nothing for longer than its session
// timeout, counted from the group's last SyncGroup at the earliest.
func (g *groupActivity) silent(m *memberActivity, now time.Time) bool {
	since := m.last
	if g.lastSync.After(since) {
		since = g.lastSync
	}
	return now.Sub(since) > m.session
}

// quietSinceCompleting reports whether m, having sent nothing since its
// JoinGroup, has been so for longer than its session timeout since the
// group was first seen CompletingRebalance.
func (g *groupActivity) quietSinceCompleting(m *memberActivity, now time.Time) bool {
	if m.active || g.completing.IsZero() {
		return false
	}
	since := m.last
	if g.completing.After(since) {
		since = g.completing
	}
	return now.Sub(since) > m.session
}

// watched reports whether the reaper must ask for g's state: a member is
// silent, or has sent nothing since its JoinGroup (the group may be
// CompletingRebalance, whose start the reaper must see).
func (g *groupActivity) watched(now time.Time) bool {
	for _, m := range g.members {
		if !m.active || g.silent(m, now) {
			return true
		}
	}
	return false
}

func (r *memberReaper) run(ctx context.Context) {
	defer close(r.done)
	var cl *kgo.Client // made when first needed
	defer func() {
		if cl != nil {
			cl.Close()
		}
	}()
	tick := time.NewTicker(reapInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		groups := r.watchedGroups(time.Now())
		if len(groups) == 0 {
			continue
		}
		if cl == nil {
			var err error
			if cl, err = kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(r.addr)}, r.clientOpts...)...); err != nil {
				r.log.WithError(err).Warn("kafka: consumer group reaper: making a client")
				continue
			}
		}
		r.reap(ctx, cl, groups)
	}
}

// watchedGroups are the groups whose state the reaper must ask for, with
// the number of JoinGroups seen in each so far.
func (r *memberReaper) watchedGroups(now time.Time) map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	groups := map[string]int{}
	for name, g := range r.groups {
		if g.watched(now) {
			groups[name] = g.joins
		}
	}
	return groups
}

// reap describes the groups, removes their dead members and keeps alive
// those that wait for their SyncGroup's answer. joins has the number of
// JoinGroups seen in each group before the groups were described.
func (r *memberReaper) reap(ctx context.Context, cl *kgo.Client, joins map[string]int) {
	ctx, cancel := context.WithTimeout(ctx, reapRequestLimit)
	defer cancel()
	req := kmsg.NewPtrDescribeGroupsRequest()
	for name := range joins {
		req.Groups = append(req.Groups, name)
	}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		r.log.WithError(err).Debug("kafka: consumer group reaper: describing groups")
		return
	}
	for _, desc := range resp.Groups {
		dead, waiting := r.judge(desc, joins[desc.Group], time.Now())
		if len(dead) > 0 {
			r.leave(ctx, cl, desc.Group, dead)
		}
		r.keepAlive(ctx, cl, desc.Group, waiting)
	}
}

// waitingMember is a member whose SyncGroup waits for the leader's
// assignment.
type waitingMember struct {
	id         string
	generation int32
}

// judge updates the reaper's view of a group from its description, made
// when joins JoinGroups of the group had been seen, forgets the members
// that are no longer in it, and returns the members that are dead and
// those that wait in SyncGroup and are due a Heartbeat.
func (r *memberReaper) judge(desc kmsg.DescribeGroupsResponseGroup, joins int, now time.Time) (dead []string, waiting []waitingMember) {
	if err := kerr.ErrorForCode(desc.ErrorCode); err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		return nil, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	g := r.groups[desc.Group]
	if g == nil {
		return nil, nil
	}
	if g.joins != joins {
		// A JoinGroup came after the description: it may list a member
		// too few, or a state that is over.
		return nil, nil
	}
	listed := make(map[string]bool, len(desc.Members))
	for _, m := range desc.Members {
		listed[m.MemberID] = true
	}
	for id := range g.members {
		if !listed[id] {
			delete(g.members, id) // it left or expired
		}
	}
	if len(g.members) == 0 {
		delete(r.groups, desc.Group)
		return nil, nil
	}
	switch desc.State {
	case "Stable":
		g.completing = time.Time{}
		for id, m := range g.members {
			if g.silent(m, now) {
				dead = append(dead, id)
			}
		}
	case "CompletingRebalance":
		if g.completing.IsZero() {
			g.completing = now // the join completed before
		}
		for id, m := range g.members {
			switch {
			case g.quietSinceCompleting(m, now):
				dead = append(dead, id)
			case m.synced && now.Sub(m.last) > m.session/2:
				waiting = append(waiting, waitingMember{id: id, generation: m.generation})
			}
		}
	default:
		// Members may be waiting in JoinGroup, which kfake keeps alive.
		g.completing = time.Time{}
	}
	return dead, waiting
}

// leave removes members from group on their behalf, as their session
// expiry would.
func (r *memberReaper) leave(ctx context.Context, cl *kgo.Client, group string, members []string) {
	req := kmsg.NewPtrLeaveGroupRequest()
	req.Group = group
	req.MemberID = members[0] // read below v3 only, which names one member
	for _, id := range members {
		m := kmsg.NewLeaveGroupRequestMember()
		m.MemberID = id
		m.Reason = kmsg.StringPtr("silent for its session timeout after its join completed")
		req.Members = append(req.Members, m)
	}
	resp, err := req.RequestWith(ctx, cl)
	if err == nil {
		err = kerr.ErrorForCode(resp.ErrorCode)
	}
	if err != nil {
		r.log.WithError(err).WithField("group", group).Debug("kafka: consumer group reaper: removing silent members")
		return
	}
	for _, m := range resp.Members {
		err := kerr.ErrorForCode(m.ErrorCode)
		log := r.log.WithFields(logrus.Fields{"group": group, "member": m.MemberID})
		switch {
		case err == nil:
			log.Info("kafka: removed a consumer group member silent for its session timeout since its join completed")
		case errors.Is(err, kerr.UnknownMemberID):
			// Gone already.
		default:
			log.WithError(err).Debug("kafka: consumer group reaper: removing a silent member")
			continue
		}
		r.forget(group, m.MemberID)
	}
}

func (r *memberReaper) forget(group, member string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if g := r.groups[group]; g != nil {
		delete(g.members, member)
		if len(g.members) == 0 {
			delete(r.groups, group)
		}
	}
}

// keepAlive sends a Heartbeat for each member waiting in SyncGroup, which
// resets its session timer in kfake. One that is no longer waiting (its
// SyncGroup was answered since the group was described) is answered
// ILLEGAL_GENERATION or UNKNOWN_MEMBER_ID, or, in the generation it
// synced, is alive anyway.
func (r *memberReaper) keepAlive(ctx context.Context, cl *kgo.Client, group string, members []waitingMember) {
	for _, m := range members {
		req := kmsg.NewPtrHeartbeatRequest()
		req.Group = group
		req.MemberID = m.id
		req.Generation = m.generation
		resp, err := req.RequestWith(ctx, cl)
		if err == nil {
			err = kerr.ErrorForCode(resp.ErrorCode)
		}
		if err != nil {
			r.log.WithError(err).WithFields(logrus.Fields{"group": group, "member": m.id}).
				Debug("kafka: consumer group reaper: heartbeat for a member waiting in SyncGroup")
		}
	}
}
