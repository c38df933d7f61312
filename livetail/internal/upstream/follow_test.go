package upstream

import (
	"context"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/logpipe/logpipe/livetail/internal/hub"
)

// endSource is a topic of n partitions whose partition p ends at offset
// 100*(p+1); its consumers wait for the end and record where they started.
type endSource struct {
	n       int
	mu      sync.Mutex
	started []started
}

type started struct {
	p    int32
	from int64
}

func (e *endSource) partitions() (int, error) { return e.n, nil }

func (e *endSource) bounds(p int32) (int64, int64, error) { return 0, 100 * int64(p+1), nil }

func (e *endSource) consume(ctx context.Context, p int32, from int64, opened func(), _ func([]hub.Record, int64)) error {
	e.mu.Lock()
	e.started = append(e.started, started{p, from})
	e.mu.Unlock()
	opened()
	<-ctx.Done()
	return ctx.Err()
}

func (e *endSource) starts() []started {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.started)
}

// follow runs a follower of src in mode over a hub of src.n partitions
// until the test ends.
func follow(t *testing.T, src *endSource, mode Consume) (*follower, *hub.Hub) {
	h := hub.New(src.n, hub.Options{})
	cfg := testConfig()
	cfg.Consume, cfg.Grace, cfg.Refresh = mode, 30*time.Second, time.Hour
	f := newFollower(src, h, cfg)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); runPartitions(ctx, f, newLookups(), nil) }()
	t.Cleanup(func() { cancel(); <-done })
	return f, h
}

// In mode watched nothing is consumed until a session leases a
// partition; it then starts at the partition's end before watch returns,
// is shared by the sessions on it, outlives the last one by the grace, and
// a lease within the grace keeps it.
func TestFollowWatched(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &endSource{n: 3}
		f, h := follow(t, src, ConsumeWatched)
		synctest.Wait()
		if got := src.starts(); len(got) != 0 {
			t.Fatalf("consumers %v without a session", got)
		}
		gauge := f.cfg.Metrics.PartitionsConsumed
		release1, err := f.watch(t.Context(), []int32{1})
		if err != nil {
			t.Fatal(err)
		}
		if h.Next(1) != 200 {
			t.Fatalf("partition 1 starts at %d when watched, want its end 200", h.Next(1))
		}
		release2, err := f.watch(t.Context(), []int32{1})
		if err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if got := src.starts(); !slices.Equal(got, []started{{1, 200}}) {
			t.Fatalf("consumers %v, want one of partition 1 from 200", got)
		}
		if v := testutil.ToFloat64(gauge); v != 1 {
			t.Fatalf("partitions consumed %v, want 1", v)
		}
		release1()
		release2()
		time.Sleep(f.cfg.Grace - time.Millisecond)
		synctest.Wait()
		if v := testutil.ToFloat64(gauge); v != 1 {
			t.Fatalf("partitions consumed %v before the grace ended, want 1", v)
		}
		release3, err := f.watch(t.Context(), []int32{1}) // a reconnect within the grace
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Hour)
		synctest.Wait()
		if got := src.starts(); len(got) != 1 || testutil.ToFloat64(gauge) != 1 {
			t.Fatalf("after a reconnect within the grace: consumers %v, gauge %v; want the first one still", got, testutil.ToFloat64(gauge))
		}
		release3()
		time.Sleep(f.cfg.Grace)
		synctest.Wait()
		if v := testutil.ToFloat64(gauge); v != 0 {
			t.Fatalf("partitions consumed %v after the grace, want 0", v)
		}
		if got := f.consumed(); len(got) != 0 {
			t.Fatalf("consumed %v after the grace", got)
		}
	})
}

// Switching from all to watched (the jobs topic appeared) stops the
// consumers nobody watches after the grace; back to all starts them
// again, at the partitions' ends.
func TestFollowSwitchesMode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &endSource{n: 3}
		f, h := follow(t, src, ConsumeAuto)
		synctest.Wait()
		if got := f.consumed(); len(got) != 3 {
			t.Fatalf("auto without the jobs topic consumes %v, want every partition", got)
		}
		release, err := f.watch(t.Context(), []int32{2})
		if err != nil {
			t.Fatal(err)
		}
		defer release()
		f.setAll(false)
		time.Sleep(f.cfg.Grace)
		synctest.Wait()
		if got := f.consumed(); !slices.Equal(got, []int32{2}) {
			t.Fatalf("watched: consumed %v, want [2]", got)
		}
		f.setAll(true)
		synctest.Wait()
		got := f.consumed()
		slices.Sort(got)
		if !slices.Equal(got, []int32{0, 1, 2}) {
			t.Fatalf("all again: consumed %v", got)
		}
		if h.Next(0) != 100 || h.Next(1) != 200 {
			t.Fatalf("restarted at %d and %d, want the ends 100 and 200", h.Next(0), h.Next(1))
		}
	})
}
