package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/logpipe/logpipe/devstack/backends"
	"github.com/logpipe/logpipe/devstack/proc"
)

// The idle case: -idle connections on quiet jobs, held for -idle-hold,
// answering livetail's pings. It samples livetail at the start of the hold
// and after every minute of it (and at its end): resident memory, heap in
// use, stacks and goroutines, each as the growth over livetail before the
// connections divided by their number, and livetail's CPU over the minute
// before. "No growth after the first minute" shows as equal rows from 60 s
// on. With -backends real it runs on an Apache Kafka of its own.

// idleSampleEvery is the time between two samples of a hold.
const idleSampleEvery = time.Minute

// idleSample is livetail's state at one point of the hold.
type idleSample struct {
	at                       time.Duration // into the hold
	rss                      int64
	goroutines, stacks, heap float64 // from livetail's Go metrics
	gcGoal                   float64 // the heap size at which the next collection starts
	cpu                      float64 // cores since the sample before
}

type idleResult struct {
	conns   int
	hold    time.Duration
	kafka   string
	before  idleSample // before the connections
	samples []idleSample
	load    string
}

// sampleIdle reads livetail's memory and Go metrics.
func sampleIdle(l *livetail, at time.Duration) idleSample {
	rss, _ := l.memory()
	return idleSample{
		at: at, rss: rss,
		goroutines: l.metric("go_goroutines"),
		stacks:     l.metric("go_memstats_stack_inuse_bytes"),
		heap:       l.metric("go_memstats_heap_inuse_bytes"),
		gcGoal:     l.metric("go_memstats_next_gc_bytes"),
	}
}

// printIdle prints the idle case's table, a row per sample.
func printIdle(r idleResult) {
	if !run["idle"] || len(r.samples) == 0 {
		return
	}
	n := float64(r.conns)
	kib := func(before, after float64) float64 { return (after - before) / n / 1024 }
	fmt.Printf("idle: %d connections held %v (%s); livetail before them: RSS %s, heap in use %s, %0.f goroutines\n\n",
		r.conns, r.hold, r.kafka, mib(r.before.rss), mib(int64(r.before.heap)), r.before.goroutines)
	fmt.Println("| into the hold | RSS per connection | heap in use per connection (GC goal) | stack per connection | goroutines per connection | livetail CPU per 10,000 connections, since the row before |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, s := range r.samples {
		cpu := "-"
		if s.at > 0 {
			cpu = fmt.Sprintf("%.3f cores", s.cpu*10000/n)
		}
		fmt.Printf("| %v | %.1f KiB | %.1f KiB (%.1f KiB) | %.1f KiB | %.2f | %s |\n",
			s.at.Round(time.Second), kib(float64(r.before.rss), float64(s.rss)),
			kib(r.before.heap, s.heap), kib(r.before.gcGoal, s.gcGoal), kib(r.before.stacks, s.stacks),
			(s.goroutines-r.before.goroutines)/n, cpu)
	}
	fmt.Printf("\nmachine load average at the end: %s\n\n", r.load)
}

func idleConns(ctx context.Context, bin string, s *backends.Stack, kafka string, n int, hold time.Duration) (idleResult, error) {
	res := idleResult{conns: n, hold: hold, kafka: kafka}
	l, err := startLivetail(bin, s)
	if err != nil {
		return res, err
	}
	defer l.stop()
	time.Sleep(2 * time.Second)
	res.before = sampleIdle(l, 0)

	conns, err := dialIdle(ctx, l.addr, n)
	// The clients answer pings in the background, until they are closed.
	var rwg sync.WaitGroup
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.CloseNow()
			}
		}
		rwg.Wait()
	}()
	if err != nil {
		return res, err
	}
	progress("idle: %d clients connected", n)
	for _, c := range conns {
		ctx := c.CloseRead(ctx)
		rwg.Go(func() { <-ctx.Done() })
	}
	for l.metric("livetail_connections") != float64(n) {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(3 * time.Second)

	start := time.Now()
	last, cpu0 := start, l.cpuSeconds()
	res.samples = append(res.samples, sampleIdle(l, 0))
	progress("idle: holding for %v", hold)
	for next := idleSampleEvery; ; next += idleSampleEvery {
		next = min(next, hold)
		time.Sleep(time.Until(start.Add(next)))
		now, cpu := time.Now(), l.cpuSeconds()
		s := sampleIdle(l, next)
		s.cpu = (cpu - cpu0) / now.Sub(last).Seconds()
		res.samples = append(res.samples, s)
		progress("idle: %v: RSS %.1f KiB per connection", next, float64(s.rss-res.before.rss)/float64(n)/1024)
		last, cpu0 = now, cpu
		if next == hold {
			break
		}
	}
	res.load = proc.LoadAvg()
	for _, p := range []string{"heap", "goroutine"} {
		if err := l.profile(p, "idle-"+p+".pprof"); err != nil {
			return res, err
		}
	}
	return res, nil
}

// dialIdle connects n clients to quiet jobs, 100 at a time, each read up to
// caught_up.
func dialIdle(ctx context.Context, addr string, n int) ([]*websocket.Conn, error) {
	conns := make([]*websocket.Conn, n)
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	sem := make(chan struct{}, 100)
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			c, _, err := websocket.Dial(ctx, "ws://"+addr+"/api/v1/tail?job=quiet-"+strconv.Itoa(i%100), nil)
			for k := 0; err == nil && k < 2; k++ { // hello, caught_up
				_, _, err = c.Read(ctx)
			}
			mu.Lock()
			defer mu.Unlock()
			if c != nil {
				conns[i] = c
			}
			if err != nil && firstErr == nil {
				firstErr = err
			}
		})
	}
	wg.Wait()
	return conns, firstErr
}
