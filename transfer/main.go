// Command transfer consumes log records from Kafka as a consumer group and
// indexes them into an Elasticsearch data stream, effectively once: each
// record becomes a document with _id <topic>-<partition>-<offset>, created
// with op create, and offsets are committed only after every record below
// them is indexed or in the dead-letter topic. See README.md and DESIGN.md.
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
