package diag_test

import (
	"context"
	"os"
	"os/signal"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/logpipe/logpipe/common/diag"
	"github.com/logpipe/logpipe/common/logging"
	"github.com/logpipe/logpipe/common/memlog"
)

func Example() {
	ring := memlog.New(1 << 20)
	log, err := logging.New("info", "text", os.Stderr, ring)
	if err != nil {
		panic(err)
	}
	linesRead := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "agent_lines_read_total",
		Help: "Lines read from tailed files.",
	})
	reg := diag.NewRegistry()
	reg.MustRegister(linesRead)

	srv := diag.New(diag.Options{
		Addr:     "127.0.0.1:9101",
		Registry: reg,
		Logs:     ring,
		Ready:    func() error { return nil },
		Log:      log,
	})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := srv.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
