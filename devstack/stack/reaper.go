package stack

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
// kfake (pkg/kfake v0.0.0-20260918054303-01f206a7e32c, groups.go) arms a
// classic group member's session timer in (*group).reply only when the
// answer could be handed to the member's connection. A member whose
// connection closed while its JoinGroup waited (a consumer killed during a
// rebalance) gets no timer when completeRebalance answers it. If another
// member then leads and sends SyncGroup, completeLeaderSync stops, through
// clearPendingSync, the timer that drops members which never sync, too:
// the group stays Stable and the dead member keeps its partitions for
// good. Apache Kafka arms the session expiry of every member when a join
// completes, answered or not, so there the dead member is gone one session
// timeout later and the group rebalances.
//
// memberReaper makes up for the missing timer. It watches JoinGroup,
// SyncGroup, Heartbeat and OffsetCommit through kfake's control hooks,
// only observing (kfake still answers them), and remembers when each
// member last sent one and the session timeout of its latest JoinGroup. A
// member silent for longer than its session timeout is a suspect; the
// reaper then asks the broker for its group (DescribeGroups), and if the
// group is Stable and the member silent for longer than its session timeout
// since the group's last SyncGroup as well, it sends a LeaveGroup on the
// member's behalf, which removes it and rebalances the group, as its
// session expiry would. That is never sooner than Kafka: a Stable group has
// answered every member's JoinGroup by its leader's SyncGroup, from when
// Kafka counts the session, and has no member waiting in JoinGroup or
// SyncGroup, so a live member heartbeats within its session timeout.
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
// JoinGroup answer could not be sent.
type memberReaper struct {
	addr string
	log  logrus.FieldLogger

	mu     sync.Mutex
	groups map[string]*groupActivity

	cancel context.CancelFunc
	done   chan struct{}
}

// groupActivity is what the reaper saw of one consumer group.
type groupActivity struct {
	members  map[string]*memberActivity // by member ID
	lastSync time.Time                  // the latest SyncGroup of any member
}

// memberActivity is what the reaper saw of one group member.
type memberActivity struct {
	last    time.Time     // its latest request
	session time.Duration // of its latest JoinGroup
}

const (
	// reapInterval is how often the reaper looks for silent members.
	// Without consumer groups a look costs a lock of an empty map;
	// DescribeGroups is asked only for groups with a suspect.
	reapInterval = 250 * time.Millisecond
	// reapRequestLimit bounds the reaper's requests to the broker, which
	// fail while it is taken off the network (StopKafka).
	reapRequestLimit = 5 * time.Second
)

// startReaper starts watching c's classic consumer groups, served on
// addr; stop stops it.
func startReaper(c *kfake.Cluster, addr string, log logrus.FieldLogger) *memberReaper {
	ctx, cancel := context.WithCancel(context.Background())
	r := &memberReaper{
		addr:   addr,
		log:    log.WithField("backend", "kafka"),
		groups: map[string]*groupActivity{},
		cancel: cancel,
		done:   make(chan struct{}),
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
func (r *memberReaper) observe(req kmsg.Request) (kmsg.Response, error, bool) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	switch req := req.(type) {
	case *kmsg.JoinGroupRequest:
		if req.MemberID == "" {
			break // the broker gives it an ID in the answer
		}
		g := r.groups[req.Group]
		if g == nil {
			g = &groupActivity{members: map[string]*memberActivity{}}
			r.groups[req.Group] = g
		}
		g.members[req.MemberID] = &memberActivity{
			last:    now,
			session: time.Duration(req.SessionTimeoutMillis) * time.Millisecond,
		}
	case *kmsg.SyncGroupRequest:
		if g := r.groups[req.Group]; g != nil {
			g.lastSync = now
		}
		r.seen(req.Group, req.MemberID, now)
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
		groups := r.suspectGroups(time.Now())
		if len(groups) == 0 {
			continue
		}
		if cl == nil {
			var err error
			if cl, err = kgo.NewClient(kgo.SeedBrokers(r.addr)); err != nil {
				r.log.WithError(err).Warn("kafka: consumer group reaper: making a client")
				continue
			}
		}
		r.reap(ctx, cl, groups)
	}
}

// suspectGroups are the groups with a silent member.
func (r *memberReaper) suspectGroups(now time.Time) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var names []string
	for name, g := range r.groups {
		for _, m := range g.members {
			if g.silent(m, now) {
				names = append(names, name)
				break
			}
		}
	}
	return names
}

// reap describes the groups and removes their dead members.
func (r *memberReaper) reap(ctx context.Context, cl *kgo.Client, groups []string) {
	ctx, cancel := context.WithTimeout(ctx, reapRequestLimit)
	defer cancel()
	req := kmsg.NewPtrDescribeGroupsRequest()
	req.Groups = groups
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		r.log.WithError(err).Debug("kafka: consumer group reaper: describing groups")
		return
	}
	for _, g := range resp.Groups {
		if dead := r.dead(g, time.Now()); len(dead) > 0 {
			r.leave(ctx, cl, g.Group, dead)
		}
	}
}

// dead forgets the members that are no longer in the described group and
// returns those that are dead.
func (r *memberReaper) dead(desc kmsg.DescribeGroupsResponseGroup, now time.Time) []string {
	if err := kerr.ErrorForCode(desc.ErrorCode); err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	g := r.groups[desc.Group]
	if g == nil {
		return nil
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
		return nil
	}
	if desc.State != "Stable" {
		return nil // members may be waiting in JoinGroup or SyncGroup
	}
	var dead []string
	for id, m := range g.members {
		if g.silent(m, now) {
			dead = append(dead, id)
		}
	}
	return dead
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
