package upstream

import (
	"context"
	"errors"
	"io"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/logpipe/logpipe/livetail/internal/hub"
)

// attempt scripts one call of fakeSource.consume: fail before opening, or
// open, deliver n entries and then fail (or block until the end with stay).
type attempt struct {
	openErr error
	deliver int
	stay    bool
}

type fakeSource struct {
	mu       sync.Mutex
	script   []attempt
	calls    []time.Time // when consume was called
	from     []int64     // the offset each call started at
	fallback attempt     // once the script is used up
}

func (f *fakeSource) bounds(int32) (int64, int64, error) { return 0, 0, errors.New("unused") }

func (f *fakeSource) partitions() (int, error) { return 1, nil }

func (f *fakeSource) consume(ctx context.Context, p int32, from int64, opened func(), deliver func([]hub.Record, int64)) error {
	f.mu.Lock()
	a := f.fallback
	if len(f.calls) < len(f.script) {
		a = f.script[len(f.calls)]
	}
	f.calls = append(f.calls, time.Now())
	f.from = append(f.from, from)
	f.mu.Unlock()
	if a.openErr != nil {
		return a.openErr
	}
	opened()
	for i := range int64(a.deliver) {
		deliver([]hub.Record{{Offset: from + i, Key: []byte("j"), Value: []byte("{}")}}, from+i+1)
	}
	if a.stay {
		<-ctx.Done()
		return ctx.Err()
	}
	return errors.New("connection reset")
}

func testConfig() Config {
	l := logrus.New()
	l.Out = io.Discard
	return Config{Retry: Policy{Tries: 3, Min: 5 * time.Second, Max: 10 * time.Second}, Log: l, Metrics: NewMetrics(nil)}
}

func take(t *testing.T, s *hub.Sub) ([]int64, error) {
	t.Helper()
	items, err := s.Take(nil)
	var offs []int64
	for _, it := range items {
		if it.Entry == nil {
			t.Fatalf("drop %+v", it.Drop)
		}
		offs = append(offs, it.Entry.Offset)
	}
	return offs, err
}

// A reconnect that succeeds within the tries is invisible: the consumer
// resumes at the next offset, the subscriber sees no gap, no duplicate and
// no error. Attempts are 5 to 10 s apart.
func TestSuperviseReconnects(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := hub.New(1, hub.Options{})
		h.SetNext(0, 100)
		sub, _, _ := h.Subscribe([]string{"j"}, []int32{0}, 1000)
		sub.Settle(false)
		src := &fakeSource{script: []attempt{
			{deliver: 5},                     // runs, then the connection drops
			{openErr: errors.New("refused")}, // try 1
			{openErr: errors.New("refused")}, // try 2
			{deliver: 5, stay: true},         // try 3 succeeds
		}}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { defer close(done); supervise(ctx, src, h, 0, testConfig()) }()
		synctest.Wait()
		time.Sleep(time.Minute)
		synctest.Wait()

		offs, err := take(t, sub)
		if err != nil {
			t.Fatalf("the subscriber saw the outage: %v", err)
		}
		if want := []int64{100, 101, 102, 103, 104, 105, 106, 107, 108, 109}; !slices.Equal(offs, want) {
			t.Fatalf("offsets %v, want %v", offs, want)
		}
		if !slices.Equal(src.from, []int64{100, 105, 105, 105}) {
			t.Fatalf("attempts started at %v", src.from)
		}
		for i := 1; i < len(src.calls); i++ {
			if d := src.calls[i].Sub(src.calls[i-1]); d < 5*time.Second || d > 10*time.Second {
				t.Errorf("attempt %d came %v after the previous one, want 5 to 10 s", i, d)
			}
		}
		if len(h.Down()) != 0 {
			t.Fatal("partition marked down")
		}
		cancel()
		<-done
	})
}

// When every try fails the partition is marked down, its subscribers end
// with ErrUnavailable, attempts continue, and the first success brings it
// back.
func TestSuperviseGivesUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := hub.New(1, hub.Options{})
		sub, _, _ := h.Subscribe([]string{"j"}, []int32{0}, 1000)
		sub.Settle(false)
		src := &fakeSource{script: []attempt{{deliver: 1}}, fallback: attempt{openErr: errors.New("refused")}}
		cfg := testConfig()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { defer close(done); supervise(ctx, src, h, 0, cfg) }()

		// Two failed tries (at most 20 s): still up.
		synctest.Wait()
		time.Sleep(2*cfg.Retry.Min - time.Millisecond)
		synctest.Wait()
		if n := len(src.calls); n > 3 || len(h.Down()) != 0 {
			t.Fatalf("%d attempts, down %v, before 10 s", n, h.Down())
		}
		// The third failed try (at most 30 s): down.
		time.Sleep(3 * cfg.Retry.Max)
		synctest.Wait()
		if got := h.Down(); !slices.Equal(got, []int32{0}) {
			t.Fatalf("down = %v after %d attempts", got, len(src.calls))
		}
		if _, err := take(t, sub); !errors.Is(err, hub.ErrUnavailable) {
			t.Fatalf("subscriber error %v, want ErrUnavailable", err)
		}
		if _, _, err := h.Subscribe([]string{"j"}, []int32{0}, 1); !errors.Is(err, hub.ErrUnavailable) {
			t.Fatalf("new subscription: %v", err)
		}
		// Still retrying: the next attempt succeeds and it is back.
		src.mu.Lock()
		src.fallback = attempt{stay: true}
		src.mu.Unlock()
		time.Sleep(cfg.Retry.Max)
		synctest.Wait()
		if len(h.Down()) != 0 {
			t.Fatalf("still down after %d attempts", len(src.calls))
		}
		if _, _, err := h.Subscribe([]string{"j"}, []int32{0}, 1); err != nil {
			t.Fatalf("subscription after recovery: %v", err)
		}
		cancel()
		<-done
	})
}

func TestPolicyDo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := Policy{Tries: 5, Min: 5 * time.Second, Max: 10 * time.Second}
		calls := 0
		start := time.Now()
		err := p.Do(t.Context(), func() error { calls++; return errors.New("down") })
		if !errors.Is(err, ErrUnavailable) || calls != 6 {
			t.Fatalf("err %v after %d calls, want ErrUnavailable after 1 + 5", err, calls)
		}
		if d := time.Since(start); d < 25*time.Second || d > 50*time.Second {
			t.Fatalf("gave up after %v, want 25 to 50 s", d)
		}

		calls = 0
		err = p.Do(t.Context(), func() error {
			if calls++; calls < 3 {
				return errors.New("down")
			}
			return nil
		})
		if err != nil || calls != 3 {
			t.Fatalf("err %v after %d calls", err, calls)
		}

		calls = 0
		stop := errors.New("stop")
		if err := p.Do(t.Context(), func() error { calls++; return permanent(stop) }); err != stop || calls != 1 {
			t.Fatalf("permanent error: %v after %d calls", err, calls)
		}

		ctx, cancel := context.WithTimeout(t.Context(), 7*time.Second)
		defer cancel()
		if err := p.Do(ctx, func() error { return errors.New("down") }); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("cancelled: %v", err)
		}
	})
}

func TestPolicyValidate(t *testing.T) {
	for name, p := range map[string]Policy{
		"no tries":    {Tries: 0, Min: time.Second, Max: time.Second},
		"negative":    {Tries: 1, Min: -time.Second, Max: time.Second},
		"max too low": {Tries: 1, Min: 2 * time.Second, Max: time.Second},
	} {
		if err := p.Validate(); !errors.Is(err, ErrPolicy) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := DefaultPolicy().Validate(); err != nil {
		t.Fatal(err)
	}
}
