package shutdown_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/logpipe/logpipe/common/shutdown"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestFirstSignalCancels(t *testing.T) {
	ctx, stop := shutdown.OnSignal(context.Background(), "test")
	defer stop()
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(time.Minute):
		t.Fatal("context not cancelled by SIGTERM")
	}
}

func TestStopReleasesWithoutSignal(t *testing.T) {
	ctx, stop := shutdown.OnSignal(context.Background(), "test")
	stop()
	stop() // idempotent
	if ctx.Err() == nil {
		t.Fatal("context still live after stop")
	}
}
