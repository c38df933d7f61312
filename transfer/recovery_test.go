package main

import (
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/logpipe/logpipe/devstack/proc"
	"github.com/logpipe/logpipe/devstack/stack"
	"github.com/logpipe/logpipe/transfer/internal/kafka"
)

// TestRecoveryAfterTwoSIGKILLs is what a new user tries first: transfer
// with the default group flags (no --group-instance-id) is killed with
// SIGKILL, restarted, killed again a few seconds later, and restarted once
// more. Nobody left the group, so the dead members keep their partitions
// until their sessions end; then the last instance must consume every
// partition, and every record must be indexed exactly once.
//
// The second instance is killed while its JoinGroup waits for the first
// instance's session to end, as quick kills by hand do. Kafka arms the
// session expiry of every member when a join completes, answered or not,
// so the dead member is gone one session timeout after the join. kfake
// does not (see devstack/stack/reaper.go); the embedded broker's reaper
// removes such a member as Kafka would, and this test checks it on both
// kinds of backends.
//
// The bound is Kafka's, not a speed: the join that the second instance
// died in completes when the first instance's member leaves the group;
// from then the second one's member is gone within one session timeout,
// and the rebalance that follows, in which the last instance is the only
// live member, completes within the rebalance timeout. So the last
// instance owns every partition at most recoveryBound after the first
// instance's member left.
func TestRecoveryAfterTwoSIGKILLs(t *testing.T) {
	bin := transferBinary(t)
	stack.ForBackends(t, func(t *testing.T, kind string) {
		testRecovery(t, bin, newWorld(t, kind))
	})
}

// recoveryBound is the longest the group may take, after a dead member
// left it, to give every partition to the one live member when another
// dead member was handed partitions in the join that ended then: one
// session timeout, one rebalance, and a margin for a machine under heavy
// load. It follows transfer's default flags, which the test runs with:
//   - the session timeout is sarama's default (10 s), which transfer keeps
//     (transfer/internal/kafka.NewConfig);
//   - the rebalance timeout is --drain-timeout (10 s) plus 30 s, set by
//     group.saramaConfig (transfer/internal/group), 40 s in all.
//
// The dead member may lead that join, and the live member then waits in
// SyncGroup for an assignment that never comes. Kafka keeps the live
// member alive meanwhile, expires the dead leader one session timeout
// after the join completed, and answers the SyncGroup with
// REBALANCE_IN_PROGRESS; the embedded broker does the same through its
// reaper (devstack/stack/reaper.go), so the bound is the same on both
// kinds of backends.
func recoveryBound() time.Duration {
	const loadMargin = 20 * time.Second
	wait := kafka.NewConfig("", nil).Consumer.Group.Session.Timeout
	rebalance := DefaultConfig().DrainTimeout + 30*time.Second
	return wait + rebalance + loadMargin
}

func testRecovery(t *testing.T, bin string, w *world) {
	const (
		total   = 20000
		first   = 12000 // produced before the first start; the rest after the last
		waitMax = 3 * time.Minute
	)
	brokers := w.s.KafkaAddrs()
	p := w.newProducer()
	gw := watchGroup(t, brokers, w.group, w.topic)
	count := func() int {
		n, status := w.es.tryCount("")
		if status != http.StatusOK {
			return 0 // the data stream's shards are not ready yet
		}
		return n
	}

	p.send(first)

	// Instance a indexes part of the records and dies.
	a := startDefaultProc(t, bin, w)
	poll(t, waitMax, "instance a indexing", func() bool { return count() >= 1000 })
	a.Kill()
	beforeB := gw.membersSeen()

	// Instance b joins; the group waits for a's session to end.
	bStart := time.Now()
	bProc := startDefaultProc(t, bin, w)
	var bID string
	poll(t, waitMax, "instance b in the group", func() bool {
		bID = gw.newMember(beforeB)
		return bID != ""
	})
	time.Sleep(time.Until(bStart.Add(2 * time.Second)))
	if parts, stable := gw.assigned(bID); stable {
		t.Fatalf("instance b already owns partitions %v: not killed in its join as meant", parts)
	}
	bProc.Kill()
	t.Logf("instance b killed %s after its start", time.Since(bStart).Round(100*time.Millisecond))
	beforeC := gw.membersSeen()

	// Instance c must take every partition once the dead members are gone,
	// including those of records produced after it started.
	cStart := time.Now()
	c := startDefaultProc(t, bin, w)
	p.send(total - first)
	want := p.sentIDs()
	if len(want) != total {
		t.Fatalf("%d records produced, want %d", len(want), total)
	}
	parts := map[int32]bool{}
	for _, id := range want {
		parts[w.partitionOf(id)] = true
	}
	if len(parts) != w.s.Partitions() {
		t.Fatalf("records in %d partitions, want all %d", len(parts), w.s.Partitions())
	}
	end := w.offsets(w.topic)
	var owner string
	poll(t, waitMax, "one member owning every partition", func() bool {
		owner = gw.soleOwner(w.s.Partitions())
		return owner != ""
	})
	ownedAt := time.Now()
	if beforeC[owner] {
		t.Fatalf("member %s owns every partition, but it is a dead instance's", owner)
	}
	owned := ownedAt.Sub(cStart)
	// When the group was first described without instance a's member.
	aLeft, ok := gw.leftAt(beforeB)
	if !ok {
		t.Fatalf("instance a's members %v never left the group", beforeB)
	}
	if took, bound := ownedAt.Sub(aLeft), recoveryBound(); took > bound {
		t.Errorf("%s: the last instance owned every partition %s after instance a's member left the group, want at most %s (recoveryBound)",
			w.kind, took.Round(100*time.Millisecond), bound)
	} else {
		t.Logf("%s: the last instance owned every partition %s after instance a's member left the group (bound %s)",
			w.kind, took.Round(100*time.Millisecond), bound)
	}
	poll(t, waitMax, "every record indexed and committed", func() bool {
		return count() >= total && w.committedAt(end)
	})
	t.Logf("%s: after the last start, its member owned all %d partitions within %s, and every record was indexed and committed within %s",
		w.kind, w.s.Partitions(), owned.Round(100*time.Millisecond), time.Since(cStart).Round(100*time.Millisecond))

	w.checkExactly(want)

	// A graceful stop still exits 0.
	if code := c.Stop(t); code != 0 {
		t.Fatalf("transfer exited %d after SIGTERM, want 0", code)
	}
}

// poll checks cond every quarter of a second until it holds or limit
// passes: each check is a few requests to Kafka or Elasticsearch.
func poll(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// startDefaultProc starts the binary with the default group flags on the
// world's topics, data stream and group, until it is killed or the test
// ends.
func startDefaultProc(t testing.TB, bin string, w *world) *proc.Process {
	t.Helper()
	return startBinary(t, bin, w, "--batch-docs", "200", "--batch-wait", "50ms")
}

// groupWatch describes the consumer group a few times a second, logs each
// change of its members and their partitions, and remembers what it saw.
type groupWatch struct {
	t     testing.TB
	topic string
	start time.Time

	mu      sync.Mutex
	seen    map[string]bool      // every member id ever described
	left    map[string]time.Time // when a member seen before was first missing from a description
	owners  map[string][]int32   // the latest description: member -> partitions of the topic
	state   string
	summary string
}

func watchGroup(t testing.TB, brokers []string, group, topic string) *groupWatch {
	t.Helper()
	admin, err := sarama.NewClusterAdmin(brokers, sarama.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	w := &groupWatch{t: t, topic: topic, start: time.Now(), seen: map[string]bool{}, left: map[string]time.Time{}}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			w.describe(admin, group)
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
		_ = admin.Close()
	})
	return w
}

func (w *groupWatch) describe(admin sarama.ClusterAdmin, group string) {
	res, err := admin.DescribeConsumerGroups([]string{group})
	now := time.Now()
	if err != nil || len(res) != 1 || res[0].Err != sarama.ErrNoError {
		return // not there yet, or the broker is busy: the next tick tries again
	}
	owners := map[string][]int32{}
	var ids []string
	for id, m := range res[0].Members {
		ids = append(ids, id)
		var parts []int32
		if a, err := m.GetMemberAssignment(); err == nil && a != nil {
			parts = slices.Clone(a.Topics[w.topic])
			slices.Sort(parts)
		}
		owners[id] = parts
	}
	sort.Strings(ids)
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s:", res[0].State)
	for _, id := range ids {
		fmt.Fprintf(&sb, " %s%v", shortID(id), owners[id])
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for id := range w.seen {
		if _, in := owners[id]; !in && w.left[id].IsZero() {
			w.left[id] = now
		}
	}
	for _, id := range ids {
		w.seen[id] = true
	}
	w.owners, w.state = owners, res[0].State
	if s := sb.String(); s != w.summary {
		w.summary = s
		w.t.Logf("group at %5.1fs: %s", time.Since(w.start).Seconds(), s)
	}
}

// shortID is the end of a member id, enough to tell members apart in a log.
func shortID(id string) string { return id[max(0, len(id)-8):] }

// membersSeen returns every member id described so far.
func (w *groupWatch) membersSeen() map[string]bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]bool, len(w.seen))
	for id := range w.seen {
		out[id] = true
	}
	return out
}

// leftAt returns when the last of ids was first missing from the group's
// description; ok is false while one of them is still a member, or when
// ids is empty.
func (w *groupWatch) leftAt(ids map[string]bool) (at time.Time, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for id := range ids {
		t, gone := w.left[id]
		if _, in := w.owners[id]; !gone || in {
			return time.Time{}, false
		}
		if t.After(at) {
			at = t
		}
	}
	return at, len(ids) > 0
}

// newMember returns a member of the latest description that is not in
// before, or "".
func (w *groupWatch) newMember(before map[string]bool) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	for id := range w.owners {
		if !before[id] {
			return id
		}
	}
	return ""
}

// assigned returns the partitions of member id in the latest description,
// and whether the group was stable then.
func (w *groupWatch) assigned(id string) ([]int32, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.owners[id], w.state == "Stable"
}

// soleOwner returns the member of the group when the group is stable with
// one member that owns all n partitions of the topic; "" otherwise.
func (w *groupWatch) soleOwner(n int) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state != "Stable" || len(w.owners) != 1 {
		return ""
	}
	for id, parts := range w.owners {
		if len(parts) == n {
			return id
		}
	}
	return ""
}
