// Command devstack runs logpipe's backends on this machine, in one process:
// a real etcd server, a Kafka-protocol broker (kfake) with the logs and
// logs.dlq topics, and esfake, a development stand-in for the Elasticsearch
// API. With --backends real, Kafka is Apache Kafka and the Elasticsearch
// API is OpenSearch behind a compatibility proxy, each in a JVM child
// process. It prints one line per endpoint, then "ready", and stops cleanly
// on SIGINT or SIGTERM. See README.md.
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
	err = run(ctx, cfg, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", binary, err)
		os.Exit(1)
	}
}
