// Command livetail serves live tails of logpipe's log topic to browsers over
// WebSocket: history on connect, then live lines, per job (DESIGN.md,
// "livetail HTTP API"). It also serves the browser viewer at /, the jobs list,
// /healthz and /readyz on its --listen address, and /metrics and /debug/logs
// on --metrics-addr.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/logpipe/logpipe/common/conf"
	"github.com/logpipe/logpipe/common/shutdown"
)

func main() {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("livetail", flag.ContinueOnError)
	cfg.Register(fs)
	if err := conf.Parse(fs, os.Args[1:], nil); err != nil {
		conf.Exit("livetail", err)
	}
	if err := cfg.Validate(); err != nil {
		conf.Exit("livetail", err)
	}
	cfg.Warnings = warnings(os.Args[1:], &cfg)
	ctx, stop := shutdown.OnSignal(context.Background(), "livetail")
	err := run(ctx, cfg)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "livetail: %v\n", err)
		os.Exit(1)
	}
}
