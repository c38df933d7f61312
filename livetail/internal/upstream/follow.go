package upstream

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/logpipe/logpipe/livetail/internal/hub"
)

// Consume says which partitions of the log topic the live consumers read.
type Consume int

// Consume modes (--consume).
const (
	// ConsumeAll reads every partition, from start to stop: what a single
	// livetail without transfer needs to find keyless lines anywhere.
	ConsumeAll Consume = iota
	// ConsumeWatched reads a partition only while a session needs it
	// (Client.Watch), and for Config.Grace after the last one left.
	ConsumeWatched
	// ConsumeAuto is ConsumeWatched while the jobs topic exists (transfer
	// keeps the catalogue of where jobs are), else ConsumeAll; it is
	// checked again at every lookup of the partitions (--partition-refresh).
	ConsumeAuto
)

// ParseConsume parses --consume.
func ParseConsume(s string) (Consume, error) {
	switch s {
	case "all":
		return ConsumeAll, nil
	case "watched":
		return ConsumeWatched, nil
	case "auto":
		return ConsumeAuto, nil
	}
	return 0, fmt.Errorf("%w: --consume %q: want auto, watched or all", ErrConsume, s)
}

// ErrConsume is returned by ParseConsume.
var ErrConsume = errors.New("upstream: bad consume mode")

// DefaultJobsTopic is the jobs catalogue's topic, whose presence makes
// ConsumeAuto consume only what is watched.
const DefaultJobsTopic = "logs.jobs"

// DefaultGrace is how long a partition is still consumed after its last
// session left (Config.Grace).
const DefaultGrace = 30 * time.Second

// follower runs the live partition consumers: every partition in mode
// all, else those that sessions watch (leases), each for a grace after its
// last lease is released. One consumer per partition at a time; it starts
// where the hub says (Hub.Next).
type follower struct {
	src source
	h   *hub.Hub
	cfg Config
	// modeCheck, in mode auto, reports whether every partition is to be
	// consumed (the jobs topic is missing).
	modeCheck func() (all bool, err error)

	started chan struct{} // closed by run
	mu      sync.Mutex
	ctx     context.Context // run's
	stopped bool            // run returned: no consumer starts any more
	all     bool            // every partition is consumed
	n       int             // partitions of the hub that may be consumed
	parts   map[int32]*consumer
	leases  map[int32]int
	once    map[int32]bool // partitions consumed before: their hub offset is stale
	wg      sync.WaitGroup
}

// consumer is one partition's running consumer.
type consumer struct {
	ready  chan struct{} // closed once it runs (or failed to start: err)
	err    error
	cancel context.CancelFunc
	done   chan struct{} // closed when it has stopped
	idle   *time.Timer   // the grace after the last lease, when running
	ending bool          // cancelled; waits for done
}

func newFollower(src source, h *hub.Hub, cfg Config) *follower {
	return &follower{
		src: src, h: h, cfg: cfg,
		started: make(chan struct{}),
		all:     cfg.Consume != ConsumeWatched, // auto: all until the jobs topic is found
		parts:   map[int32]*consumer{},
		leases:  map[int32]int{},
		once:    map[int32]bool{},
	}
}

// run makes the follower start consumers with ctx until ctx ends, then
// stops them and waits for them.
func (f *follower) run(ctx context.Context) {
	f.mu.Lock()
	f.ctx = ctx
	f.n = f.h.Partitions()
	f.mu.Unlock()
	close(f.started)
	f.reconcile()
	<-ctx.Done()
	f.mu.Lock()
	f.stopped = true
	for _, c := range f.parts {
		if c.idle != nil {
			c.idle.Stop()
		}
	}
	f.mu.Unlock()
	f.wg.Wait()
	f.cfg.Metrics.PartitionsConsumed.Set(0)
}

// setAll switches between consuming every partition and only the watched
// ones.
func (f *follower) setAll(all bool) {
	f.mu.Lock()
	changed := f.all != all
	f.all = all
	f.mu.Unlock()
	if changed {
		mode := "watched"
		if all {
			mode = "all"
		}
		f.cfg.Log.WithField("consume", mode).Info("partitions consumed: " + mode)
		f.reconcile()
	}
}

// grown learns that the hub has n partitions now.
func (f *follower) grown(n int) {
	f.mu.Lock()
	f.n = n
	f.mu.Unlock()
	f.reconcile()
}

// reconcile starts the consumers mode all wants and gives those nobody
// leases their grace.
func (f *follower) reconcile() {
	f.mu.Lock()
	if f.ctx == nil || f.stopped {
		f.mu.Unlock()
		return
	}
	var start, again []int32
	for p := range int32(f.n) {
		c := f.parts[p]
		switch {
		case f.all && c == nil && f.once[p]:
			again = append(again, p)
		case f.all && c == nil:
			start = append(start, p)
		case f.all && c != nil && c.idle != nil:
			c.idle.Stop()
		case !f.all && c != nil && f.leases[p] == 0:
			f.idleLocked(p, c)
		}
	}
	f.mu.Unlock()
	// Mode all: a partition never consumed starts where the hub says
	// (Client.Start: --jobs-scan records back; a partition added to the
	// topic: its oldest record), one consumed before at its end. An error
	// means the follower stopped.
	for _, p := range start {
		_ = f.ensure(p, false)
	}
	for _, p := range again {
		_ = f.ensure(p, true)
	}
}

// watch leases the partitions parts: each is consumed from now until
// release is called, and for the grace after. A partition that was not
// consumed starts at its end, before watch returns: a subscription made
// after watch returns joins it exactly (its join offset is where its
// consumer starts or has come to).
func (f *follower) watch(ctx context.Context, parts []int32) (release func(), err error) {
	select {
	case <-f.started:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	var leased []int32
	release = func() {
		for _, p := range leased {
			f.unlease(p)
		}
	}
	for _, p := range parts {
		f.mu.Lock()
		if int(p) >= f.n || p < 0 {
			f.mu.Unlock()
			continue
		}
		f.leases[p]++
		f.mu.Unlock()
		leased = append(leased, p)
		if err := f.ensure(p, true); err != nil {
			release()
			return nil, err
		}
	}
	return release, nil
}

func (f *follower) unlease(p int32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.leases[p]--
	if f.leases[p] > 0 {
		return
	}
	delete(f.leases, p)
	if c := f.parts[p]; c != nil && !f.all {
		f.idleLocked(p, c)
	}
}

// idleLocked gives c, which nobody leases, its grace; then it stops unless
// leased again meanwhile. f.mu is held.
func (f *follower) idleLocked(p int32, c *consumer) {
	if c.ending {
		return
	}
	if c.idle != nil {
		c.idle.Reset(f.cfg.Grace)
		return
	}
	c.idle = time.AfterFunc(f.cfg.Grace, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.parts[p] == c && f.leases[p] == 0 && !f.all && !c.ending && c.cancel != nil {
			c.ending = true
			c.cancel()
		}
	})
}

// ensure makes sure partition p is consumed. fromEnd: a consumer started
// here starts at the partition's end (the hub skips what came while nobody
// watched), else where the hub's next offset is.
func (f *follower) ensure(p int32, fromEnd bool) error {
	for {
		f.mu.Lock()
		if f.stopped {
			f.mu.Unlock()
			return errStopped
		}
		c := f.parts[p]
		switch {
		case c == nil:
			c = &consumer{ready: make(chan struct{}), done: make(chan struct{})}
			f.parts[p] = c
			f.mu.Unlock()
			return f.start(p, c, fromEnd)
		case c.ending:
			f.mu.Unlock()
			<-c.done // it leaves the map as it ends; then start another
			continue
		}
		if c.idle != nil {
			c.idle.Stop()
		}
		f.mu.Unlock()
		<-c.ready
		if c.err != nil {
			continue // it failed to start and left the map: try again
		}
		return nil
	}
}

// start starts c, just put in the map for p.
func (f *follower) start(p int32, c *consumer, fromEnd bool) error {
	var err error
	if fromEnd {
		var newest int64
		err = f.cfg.Retry.Do(f.ctx, func() error {
			var e error
			_, newest, e = f.src.bounds(p)
			return e
		})
		if err == nil && newest > f.h.Next(p) {
			f.h.SetNext(p, newest)
		}
	}
	f.mu.Lock()
	if err == nil && f.stopped {
		err = errStopped
	}
	if err != nil {
		c.err = fmt.Errorf("starting the consumer of partition %d: %w", p, err)
		delete(f.parts, p)
		close(c.done)
		close(c.ready)
		f.mu.Unlock()
		return c.err
	}
	ctx, cancel := context.WithCancel(f.ctx)
	c.cancel = cancel
	f.once[p] = true
	f.wg.Add(1)
	if f.leases[p] == 0 && !f.all {
		// Its lease was released while it started: the grace starts now.
		f.idleLocked(p, c)
	}
	f.mu.Unlock()
	f.cfg.Metrics.PartitionsConsumed.Inc()
	f.cfg.Log.WithFields(logrus.Fields{"partition": p, "from": f.h.Next(p)}).Debug("consuming partition")
	go func() {
		defer f.wg.Done()
		supervise(ctx, f.src, f.h, p, f.cfg)
		cancel()
		f.cfg.Metrics.PartitionsConsumed.Dec()
		f.mu.Lock()
		if f.parts[p] == c {
			delete(f.parts, p)
		}
		if c.idle != nil {
			c.idle.Stop()
		}
		f.mu.Unlock()
		close(c.done)
		f.cfg.Log.WithField("partition", p).Debug("stopped consuming partition")
	}()
	close(c.ready)
	return nil
}

// consumed returns the partitions consumed now.
func (f *follower) consumed() []int32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []int32
	for p, c := range f.parts {
		if !c.ending {
			out = append(out, p)
		}
	}
	return out
}
