// Command agent tails log files as its collect config in etcd says and
// sends every line to Kafka, at least once, keeping the acknowledged offset
// of each file in a durable registry. See README.md.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/logpipe/logpipe/common/conf"
	"github.com/logpipe/logpipe/common/shutdown"
)

func main() {
	cfg, err := parseConfig(os.Args[1:], nil)
	if err != nil {
		conf.Exit(binary, err)
	}
	ctx, stop := shutdown.OnSignal(context.Background(), binary)
	err = run(ctx, cfg)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", binary, err)
		os.Exit(1)
	}
}
