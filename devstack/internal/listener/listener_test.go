package listener_test

import (
	"errors"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/logpipe/logpipe/devstack/internal/listener"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestListenPicksBelowEphemeral(t *testing.T) {
	ln, err := listener.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	if n, _ := strconv.Atoi(port); n < 20000 || n >= 32768 {
		t.Errorf("port %d, want one in [20000, 32768)", n)
	}
	if _, err := listener.Listen("127.0.0.1:" + port); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("Listen on the port in use = %v, want EADDRINUSE", err)
	}
	if _, err := listener.Listen("localhost"); err == nil {
		t.Error("Listen on an address without a port = nil error")
	}
}

// TestPauseResume takes a listener with an open connection off the network
// and back, twice: while paused its address refuses connections and no one
// else can bind it; resumed, it accepts again.
func TestPauseResume(t *testing.T) {
	ln, err := listener.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	accepted := make(chan net.Conn)
	acceptErr := make(chan error)
	resumed := make(chan struct{})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					close(accepted)
					return
				}
				acceptErr <- err // woken by Pause; it fails again until Resume
				<-resumed
				continue
			}
			accepted <- c
		}
	}()
	for round := range 2 {
		dialAccept(t, addr, accepted) // closed by this side first: TIME_WAIT on the port
		if err := listener.Pause(ln); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		select {
		case <-acceptErr:
		case <-time.After(time.Minute):
			t.Fatalf("round %d: Accept not woken by Pause", round)
		}
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			t.Fatalf("round %d: dial while paused: connected, want refused", round)
		} else if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("round %d: dial while paused: %v, want connection refused", round, err)
		}
		if other, err := net.Listen("tcp", addr); err == nil {
			other.Close()
			t.Fatalf("round %d: another listener bound %s while paused", round, addr)
		}
		if err := listener.Resume(ln); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		resumed <- struct{}{}
	}
	dialAccept(t, addr, accepted)
	ln.Close()
	for range accepted {
	}
}

func dialAccept(t *testing.T, addr string, accepted <-chan net.Conn) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	select {
	case s := <-accepted:
		s.Close()
	case <-time.After(time.Minute):
		t.Fatalf("dial %s: not accepted", addr)
	}
}
