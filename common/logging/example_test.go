package logging_test

import (
	"fmt"
	"os"

	"github.com/logpipe/logpipe/common/logging"
	"github.com/logpipe/logpipe/common/memlog"
)

func ExampleNew() {
	ring := memlog.New(1 << 20) // served at /debug/logs by package diag
	log, err := logging.New("info", "json", os.Stderr, ring)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	logging.Listening(log, "metrics", "127.0.0.1:9101") // level=info msg=listening ...
}
