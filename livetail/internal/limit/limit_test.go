package limit

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/logpipe/logpipe/devstack/proc"
	"github.com/logpipe/logpipe/livetail/internal/redistest"
)

// acquireN takes n slots of user and returns their release functions.
func acquireN(t *testing.T, l Limiter, user string, n int) []func() {
	t.Helper()
	var rel []func()
	for i := range n {
		r, err := l.Acquire(t.Context(), user)
		if err != nil {
			t.Fatalf("acquire %d of %s: %v", i+1, user, err)
		}
		rel = append(rel, r)
	}
	return rel
}

func expectLimit(t *testing.T, l Limiter, user string) {
	t.Helper()
	_, err := l.Acquire(t.Context(), user)
	var le *Error
	if !errors.Is(err, ErrLimit) || !errors.As(err, &le) || le.User != user {
		t.Fatalf("acquire over the limit: %v", err)
	}
}

func TestMemory(t *testing.T) {
	m := NewMemory(3)
	rel := acquireN(t, m, "alice", 3)
	expectLimit(t, m, "alice")
	acquireN(t, m, "bob", 3) // per user
	rel[0]()
	rel[0]() // twice is once
	if m.Count("alice") != 2 {
		t.Fatalf("count %d", m.Count("alice"))
	}
	acquireN(t, m, "alice", 1)
	expectLimit(t, m, "alice")
}

func TestMemoryConcurrent(t *testing.T) {
	m := NewMemory(10)
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for range 100 {
		wg.Go(func() {
			if _, err := m.Acquire(context.Background(), "u"); err == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if ok != 10 {
		t.Fatalf("%d admitted, want 10", ok)
	}
}

// Two replicas share the per-user count through Redis; a replica that
// stops refreshing (crashed) stops counting once its entries expire.
func TestRedis(t *testing.T) {
	addr := redistest.Start(t)
	newReplica := func(ttl time.Duration) *Redis {
		r := NewRedis(RedisOptions{Addr: addr, Max: 4, TTL: ttl})
		t.Cleanup(func() { r.Close() })
		if err := r.Ping(t.Context()); err != nil {
			t.Fatal(err)
		}
		return r
	}
	a, b := newReplica(time.Minute), newReplica(time.Minute)

	relA := acquireN(t, a, "alice", 2)
	acquireN(t, b, "alice", 2)
	expectLimit(t, a, "alice")
	expectLimit(t, b, "alice")
	acquireN(t, b, "bob", 4)
	relA[0]()
	acquireN(t, b, "alice", 1)
	expectLimit(t, a, "alice")

	// Concurrent acquires on both replicas admit exactly the limit.
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for i := range 40 {
		l := a
		if i%2 == 1 {
			l = b
		}
		wg.Go(func() {
			if _, err := l.Acquire(context.Background(), "carol"); err == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if ok != 4 {
		t.Fatalf("%d admitted concurrently, want 4", ok)
	}

	// A crash: replica c holds dave's four slots and stops refreshing.
	// The TTL leaves the replica time to take the slots and the test time
	// to see them counted, however slow the machine.
	c := newReplica(5 * time.Second)
	acquireN(t, c, "dave", 4)
	expectLimit(t, a, "dave")
	c.stopRefresh()
	deadline := time.Now().Add(time.Minute) // a minute is the promise; the TTL here is 5 s
	for {
		if _, err := a.Acquire(t.Context(), "dave"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a crashed replica's connections still count after a minute (TTL 5 s)")
		}
		time.Sleep(100 * time.Millisecond)
	}

	// A live replica's refresher moves its entries' expiry forward, past
	// the first, so that they outlive their TTL. (Waiting for the TTL to
	// pass instead would fail whenever a loaded machine delays the
	// refresher by most of a TTL.)
	d := newReplica(5 * time.Second)
	acquireN(t, d, "erin", 4)
	first := expiries(t, d, "erin")
	deadline = time.Now().Add(time.Minute)
	for {
		later := expiries(t, d, "erin")
		refreshed := len(later) == len(first)
		for m, exp := range first {
			refreshed = refreshed && later[m] > exp
		}
		if refreshed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("expiries %v never moved past %v (TTL 5 s, refreshed every 1.7 s)", later, first)
		}
		time.Sleep(100 * time.Millisecond)
	}
	expectLimit(t, a, "erin")
}

// expiries are the expiry scores (ms of Redis's clock) of user's entries.
func expiries(t *testing.T, r *Redis, user string) map[string]float64 {
	t.Helper()
	zs, err := r.client.ZRangeWithScores(t.Context(), r.key(user), 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]float64, len(zs))
	for _, z := range zs {
		out[z.Member.(string)] = z.Score
	}
	return out
}

// Without Redis, connections are admitted and the failure is counted.
func TestRedisUnavailable(t *testing.T) {
	errs := prometheus.NewCounter(prometheus.CounterOpts{Name: "e"})
	nowhere := proc.NewRelay(t).Addr() // refuses connections for the whole test
	r := NewRedis(RedisOptions{Addr: nowhere, Max: 1, Errors: errs})
	defer r.Close()
	rel := acquireN(t, r, "u", 3)
	rel[0]()
	if testutil.ToFloat64(errs) < 3 {
		t.Fatalf("errors counted: %v", testutil.ToFloat64(errs))
	}
}

// A connection released between the refresher's listing and its update in
// Redis stays released.
func TestRedisRefreshAfterRelease(t *testing.T) {
	addr := redistest.Start(t)
	r := NewRedis(RedisOptions{Addr: addr, Max: 2, TTL: time.Hour})
	defer r.Close()
	ctx := t.Context()
	a := acquireN(t, r, "u", 2)
	batch := r.snapshot()
	a[0]()
	a[1]()
	r.push(batch)
	if n := r.client.ZCard(ctx, r.key("u")).Val(); n != 0 {
		t.Fatalf("%d connections counted after both closed, want 0", n)
	}
	acquireN(t, r, "u", 2) // no 4429
}

// Connections opened and closed while the refresher runs never count after
// they closed: a refresh that read a connection just before it was released
// must not bring it back (no false 4429 after tabs were closed).
func TestRedisChurn(t *testing.T) {
	addr := redistest.Start(t)
	errs := prometheus.NewCounter(prometheus.CounterOpts{Name: "e"})
	// Refreshes every 20 ms; a ghost entry would count for 60 ms.
	r := NewRedis(RedisOptions{Addr: addr, Max: 3, TTL: 60 * time.Millisecond, Errors: errs})
	defer r.Close()
	ctx := t.Context()
	held, err := r.Acquire(ctx, "u")
	if err != nil {
		t.Fatal(err)
	}
	defer held()
	var wg sync.WaitGroup
	var refused atomic.Int64
	for range 2 {
		wg.Go(func() {
			for range 1000 {
				release, err := r.Acquire(ctx, "u")
				if err != nil {
					refused.Add(1)
					continue
				}
				release()
			}
		})
	}
	wg.Wait()
	if n := refused.Load(); n > 0 {
		t.Fatalf("%d of 2000 connections refused while at most 3 were open", n)
	}
	if testutil.ToFloat64(errs) != 0 {
		t.Fatal("Redis errors")
	}
}

// A Redis that requires a password is reached through RedisOptions.URL;
// the wrong password is refused, and the error does not hold it.
func TestRedisURLPassword(t *testing.T) {
	const secret = "s3cret-redis-pass-5b1e"
	addr := redistest.StartWith(t, "--requirepass", secret)
	for name, tc := range map[string]struct {
		url string
		ok  bool
	}{
		"password":       {url: "redis://:" + secret + "@" + addr, ok: true},
		"user default":   {url: "redis://default:" + secret + "@" + addr + "/0", ok: true},
		"wrong password": {url: "redis://:not-" + secret + "@" + addr},
		"no password":    {url: "redis://" + addr},
	} {
		t.Run(name, func(t *testing.T) {
			r := NewRedis(RedisOptions{URL: tc.url, Max: 1})
			defer r.Close()
			err := r.Ping(t.Context())
			if (err == nil) != tc.ok {
				t.Fatalf("Ping = %v, want success %v", err, tc.ok)
			}
			if err != nil && strings.Contains(err.Error(), secret) {
				t.Fatalf("the error holds the password: %v", err)
			}
			if tc.ok {
				acquireN(t, r, name, 1)
				expectLimit(t, r, name)
			}
		})
	}
}
