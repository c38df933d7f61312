// Package shutdown turns SIGINT and SIGTERM into context cancellation: the
// first signal asks for a graceful stop, a second one exits at once.
package shutdown

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// OnSignal returns a context cancelled by the first SIGINT or SIGTERM. A second
// signal exits the process with status 130 without waiting. Call stop to
// release the signal handler; it returns once the goroutine it started is gone.
func OnSignal(parent context.Context, binary string) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(parent)
	sigs := make(chan os.Signal, 2)
	quit := make(chan struct{})
	done := make(chan struct{})
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		defer close(done)
		select {
		case s := <-sigs:
			fmt.Fprintf(os.Stderr, "%s: %v: shutting down (again to exit at once)\n", binary, s)
			cancel()
		case <-quit:
			return
		}
		select {
		case s := <-sigs:
			fmt.Fprintf(os.Stderr, "%s: second %v: exiting now\n", binary, s)
			os.Exit(130)
		case <-quit:
		}
	}()
	var once sync.Once
	return ctx, func() {
		once.Do(func() {
			signal.Stop(sigs)
			close(quit)
			<-done
			cancel()
		})
	}
}
