package upstream

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/logpipe/logpipe/livetail/internal/hub"
)

// growingSource is a topic whose partitions can be added: its partition
// consumers wait for the end, and its lookups of the partitions are
// counted and may be held back.
type growingSource struct {
	mu       sync.Mutex
	n        int             // partitions Kafka has
	err      error           // of the next lookups
	boundErr error           // of reading the bounds of partitions from 2 on
	hold     chan struct{}   // when not nil, a lookup waits for it to close
	lookedUp []time.Time     // when each lookup was made
	consumed map[int32]int64 // partition → offset its consumer started at
}

func (g *growingSource) partitions() (int, error) {
	g.mu.Lock()
	g.lookedUp = append(g.lookedUp, time.Now())
	hold := g.hold
	g.mu.Unlock()
	if hold != nil {
		<-hold
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.n, g.err
}

// bounds gives partition p the oldest offset 10*p.
func (g *growingSource) bounds(p int32) (int64, int64, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if p >= 2 && g.boundErr != nil {
		return 0, 0, g.boundErr
	}
	return 10 * int64(p), 100, nil
}

func (g *growingSource) consume(ctx context.Context, p int32, from int64, opened func(), _ func([]hub.Record, int64)) error {
	g.mu.Lock()
	if g.consumed == nil {
		g.consumed = map[int32]int64{}
	}
	g.consumed[p] = from
	g.mu.Unlock()
	opened()
	<-ctx.Done()
	return ctx.Err()
}

func (g *growingSource) set(n int, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n, g.err = n, err
}

func (g *growingSource) lookups() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.lookedUp)
}

// running runs runPartitions over src and h (refreshing every hour) until
// the test ends; ask asks for a lookup as Client.RefreshPartitions does.
type running struct {
	asks   *lookups
	grown  []int
	cancel context.CancelFunc
	done   chan struct{}
}

func runFake(t *testing.T, src source, h *hub.Hub) *running {
	cfg := testConfig()
	cfg.Refresh = time.Hour
	ctx, cancel := context.WithCancel(t.Context())
	r := &running{asks: newLookups(), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		runPartitions(ctx, newFollower(src, h, cfg), r.asks, func(n int) { r.grown = append(r.grown, n) })
	}()
	t.Cleanup(r.stop)
	return r
}

func (r *running) ask(ctx context.Context) error {
	return r.asks.wait(ctx)
}

func (r *running) stop() {
	r.cancel()
	<-r.done
}

// Many sessions asking at once, as after a replica's shutdown, cost one
// lookup: each is answered once the partitions added are in the hub, from
// their oldest records, and their consumers started.
func TestLookupsCoalesce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := hub.New(2, hub.Options{})
		src := &growingSource{n: 4, hold: make(chan struct{})}
		r := runFake(t, src, h)
		const sessions = 50
		errs := make(chan error, sessions)
		for range sessions {
			go func() { errs <- r.ask(t.Context()) }()
		}
		synctest.Wait() // every session asked; the lookup is under way
		close(src.hold)
		for range sessions {
			if err := <-errs; err != nil {
				t.Fatalf("lookup: %v", err)
			}
		}
		if n := src.lookups(); n != 1 {
			t.Fatalf("%d lookups for %d sessions asking at once, want 1", n, sessions)
		}
		if n := h.Partitions(); n != 4 {
			t.Fatalf("hub has %d partitions, want 4", n)
		}
		if h.Next(2) != 20 || h.Next(3) != 30 {
			t.Fatalf("added partitions start at %d and %d, want their oldest offsets 20 and 30", h.Next(2), h.Next(3))
		}
		synctest.Wait()
		src.mu.Lock()
		started := len(src.consumed)
		src.mu.Unlock()
		if started != 4 {
			t.Fatalf("%d partition consumers, want 4", started)
		}
		r.stop()
		if len(r.grown) != 1 || r.grown[0] != 4 {
			t.Fatalf("the client learnt the counts %v, want [4]", r.grown)
		}
	})
}

// A session that keeps naming a partition the topic does not have (a
// client reconnecting with a bogus cursor) is answered each time after a
// lookup, and lookups start at most once a second.
func TestLookupsAtMostOneASecond(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := hub.New(2, hub.Options{})
		src := &growingSource{n: 2}
		r := runFake(t, src, h)
		start := time.Now()
		const asks = 20
		for range asks {
			if err := r.ask(t.Context()); err != nil {
				t.Fatalf("lookup: %v", err)
			}
		}
		if n := src.lookups(); n != asks {
			t.Fatalf("%d lookups for %d requests one after the other, want one each", n, asks)
		}
		for i := 1; i < len(src.lookedUp); i++ {
			if d := src.lookedUp[i].Sub(src.lookedUp[i-1]); d < time.Second {
				t.Fatalf("lookup %d came %v after the previous one, want at least a second", i, d)
			}
		}
		if d := time.Since(start); d > asks*time.Second {
			t.Fatalf("%d requests answered in %v, want at most a lookup's gap each", asks, d)
		}
	})
}

// A lookup that fails is answered with its error and the hub is left as
// it was; so is one that finds partitions added but cannot read where one
// of them starts, which adds those before it; a later lookup adds the rest.
func TestLookupsFail(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := hub.New(1, hub.Options{})
		refused := errors.New("connection refused")
		src := &growingSource{n: 3, err: refused}
		r := runFake(t, src, h)
		if err := r.ask(t.Context()); !errors.Is(err, refused) {
			t.Fatalf("lookup: %v, want %v", err, refused)
		}
		if n := h.Partitions(); n != 1 {
			t.Fatalf("hub has %d partitions after a failed lookup, want 1", n)
		}
		src.set(3, nil)
		src.mu.Lock()
		src.boundErr = refused
		src.mu.Unlock()
		if err := r.ask(t.Context()); !errors.Is(err, refused) {
			t.Fatalf("lookup with partition 2's bounds failing: %v, want %v", err, refused)
		}
		if n := h.Partitions(); n != 2 {
			t.Fatalf("hub has %d partitions after partition 2's bounds failed, want 2", n)
		}
		src.mu.Lock()
		src.boundErr = nil
		src.mu.Unlock()
		if err := r.ask(t.Context()); err != nil {
			t.Fatalf("lookup: %v", err)
		}
		if n := h.Partitions(); n != 3 {
			t.Fatalf("hub has %d partitions, want 3", n)
		}
	})
}

// When the consumers stop, a session waiting for a lookup, and any later
// one, is answered at once, and nothing is left running.
func TestLookupsStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := hub.New(1, hub.Options{})
		src := &growingSource{n: 1}
		r := runFake(t, src, h)
		if err := r.ask(t.Context()); err != nil { // the last lookup: the next one waits
			t.Fatalf("lookup: %v", err)
		}
		waiting := make(chan error, 1)
		go func() { waiting <- r.ask(t.Context()) }()
		synctest.Wait()
		r.stop()
		if err := <-waiting; !errors.Is(err, errStopped) {
			t.Fatalf("waiting session: %v, want errStopped", err)
		}
		if err := r.ask(t.Context()); !errors.Is(err, errStopped) {
			t.Fatalf("session after the stop: %v, want errStopped", err)
		}
		if n := src.lookups(); n != 1 {
			t.Fatalf("%d lookups, want 1", n)
		}
	})
}
