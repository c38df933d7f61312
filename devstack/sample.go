package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"
)

// sampleConfig is the agent config that tails the sample writer's files.
// worker.log carries Java stack traces: every line that does not start with
// a date belongs to the event before it.
func sampleConfig(dir string) string {
	p := func(name string) string { return fmt.Sprintf("%q", filepath.Join(dir, name)) }
	return `[
  {"path":` + p("web.log") + `,"job":"web","labels":{"env":"dev","service":"frontend"},"from":"beginning"},
  {"path":` + p("checkout.log") + `,"job":"checkout","labels":{"env":"dev","service":"checkout"},"from":"beginning"},
  {"path":` + p("worker.log") + `,"job":"worker","labels":{"env":"dev"},"from":"beginning",
   "multiline":{"pattern":"^\\d{4}-\\d{2}-\\d{2} ","negate":true,"match":"after"}}
]`
}

// writeSamples appends realistic lines to the three sample files until ctx
// ends: a web access log, a JSON-lines service with levels, and a worker
// that prints a stack trace now and then.
func writeSamples(ctx context.Context, dir string, every time.Duration) error {
	files := map[string]*os.File{}
	for _, name := range []string{"web.log", "checkout.log", "worker.log"} {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("sample writer: %w", err)
		}
		defer f.Close()
		files[name] = f
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return nil
		case now := <-tick.C:
			if _, err := files["web.log"].WriteString(accessLine(now, n)); err != nil {
				return fmt.Errorf("sample writer: %w", err)
			}
			if n%2 == 0 {
				if _, err := files["checkout.log"].WriteString(checkoutLine(now, n)); err != nil {
					return fmt.Errorf("sample writer: %w", err)
				}
			}
			if n%3 == 0 {
				if _, err := files["worker.log"].WriteString(workerLines(now, n)); err != nil {
					return fmt.Errorf("sample writer: %w", err)
				}
			}
		}
	}
}

var (
	paths    = []string{"/", "/api/orders", "/api/orders/%d", "/api/cart", "/static/app.js", "/login", "/api/search?q=shoes"}
	statuses = []int{200, 200, 200, 200, 200, 201, 204, 301, 304, 400, 404, 500, 503}
	agents   = []string{"Mozilla/5.0 (X11; Linux x86_64)", "curl/8.5.0", "Go-http-client/1.1"}
)

func accessLine(now time.Time, n int) string {
	path := paths[n%len(paths)]
	if path == "/api/orders/%d" {
		path = fmt.Sprintf(path, 1000+n%500)
	}
	method := "GET"
	if n%7 == 0 {
		method = "POST"
	}
	return fmt.Sprintf("10.0.%d.%d - - [%s] \"%s %s HTTP/1.1\" %d %d \"-\" \"%s\"\n",
		n%4, 10+n%200, now.UTC().Format("02/Jan/2006:15:04:05 -0700"), method, path,
		statuses[rand.IntN(len(statuses))], 200+rand.IntN(20000), agents[n%len(agents)])
}

func checkoutLine(now time.Time, n int) string {
	level, msg := "info", "order placed"
	switch r := rand.IntN(20); {
	case r == 0:
		level, msg = "error", "payment declined by provider"
	case r < 3:
		level, msg = "warn", "inventory low"
	case r < 6:
		level, msg = "debug", "cart recalculated"
	}
	return fmt.Sprintf(`{"time":%q,"level":%q,"msg":%q,"order_id":%d,"amount":%.2f,"user":"u-%d"}`+"\n",
		now.UTC().Format(time.RFC3339Nano), level, msg, 50000+n, 5+rand.Float64()*200, n%97)
}

func workerLines(now time.Time, n int) string {
	ts := now.UTC().Format("2006-01-02 15:04:05.000")
	if n%30 == 0 {
		return fmt.Sprintf("%s ERROR worker-%d job %d failed\n", ts, n%4, n) +
			"java.lang.IllegalStateException: connection pool exhausted\n" +
			"\tat com.example.db.Pool.acquire(Pool.java:112)\n" +
			"\tat com.example.jobs.Worker.run(Worker.java:48)\n" +
			"\tat java.base/java.lang.Thread.run(Thread.java:1583)\n" +
			"Caused by: java.net.SocketTimeoutException: connect timed out\n" +
			"\tat java.base/java.net.Socket.connect(Socket.java:751)\n" +
			"\t... 3 more\n"
	}
	return fmt.Sprintf("%s INFO  worker-%d processed job %d in %dms\n", ts, n%4, n, 3+rand.IntN(80))
}
