// Package listener takes a TCP listener off the network and puts it back
// without giving up its port: while paused, connections to the address are
// refused, as if nothing listened there, but no other process can bind the
// port. Outage tests use it to take a backend down and bring it back on the
// same address without a window in which another process could take it.
//
// It relies on Linux: shutdown(2) of a listening socket ends the listening
// (and wakes Accept with an error) but, for a port bound explicitly (not
// port 0, hence Listen), keeps the binding; listen(2) on the same socket
// resumes it.
package listener

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"syscall"
)

// Pause stops ln listening: connections are refused, Accept returns an
// error, and the port stays bound. ln must come from Listen, or otherwise
// be bound to an explicit port: a port the kernel picked is released.
func Pause(ln *net.TCPListener) error {
	return control(ln, func(fd int) error {
		// Without SO_REUSEADDR no other socket can bind the port while
		// this one does not listen.
		if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 0); err != nil {
			return fmt.Errorf("pausing %s: clearing SO_REUSEADDR: %w", ln.Addr(), err)
		}
		if err := syscall.Shutdown(fd, syscall.SHUT_RD); err != nil {
			return fmt.Errorf("pausing %s: shutdown: %w", ln.Addr(), err)
		}
		return nil
	})
}

// Resume makes a paused ln listen again.
func Resume(ln *net.TCPListener) error {
	return control(ln, func(fd int) error {
		// SO_REUSEADDR first: connections cut during the pause linger in
		// TIME_WAIT on the same port.
		if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
			return fmt.Errorf("resuming %s: setting SO_REUSEADDR: %w", ln.Addr(), err)
		}
		if err := syscall.Listen(fd, syscall.SOMAXCONN); err != nil {
			return fmt.Errorf("resuming %s: listen: %w", ln.Addr(), err)
		}
		return nil
	})
}

// Ports for an address with port 0 are picked in [PickLow, PickHigh):
// below the kernel's ephemeral range (which starts at 32768 on Linux), so
// that no outgoing connection holds one, and bound explicitly, which Pause
// needs (a port the kernel picked is released by shutdown(2)).
const (
	PickLow   = 20000
	PickHigh  = 32768
	pickTries = 200
)

// RandomPort is a port in [PickLow, PickHigh), for a program that binds
// it itself (and tries another when it is taken).
func RandomPort() int { return PickLow + rand.IntN(PickHigh-PickLow) }

// Listen listens on addr (host:port; "" means 127.0.0.1:0). A port of 0
// is replaced by a free port picked at random below the ephemeral range:
// each try binds, so two processes never get one port, and the one that
// binds it keeps it.
func Listen(addr string) (*net.TCPListener, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", addr, err)
	}
	if port != "0" {
		return listenTCP(addr)
	}
	for range pickTries {
		ln, err := listenTCP(net.JoinHostPort(host, strconv.Itoa(RandomPort())))
		if err == nil {
			return ln, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("address %s: no free port found in %d tries between %d and %d", addr, pickTries, PickLow, PickHigh-1)
}

func listenTCP(addr string) (*net.TCPListener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		ln.Close()
		return nil, fmt.Errorf("address %s: not a TCP listener", addr)
	}
	return tl, nil
}

// control runs f on the listener's file descriptor.
func control(ln *net.TCPListener, f func(fd int) error) error {
	rc, err := ln.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return err
	}
	return ferr
}
