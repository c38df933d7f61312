// Package redistest runs Debian's redis-server for tests, on a loopback port
// below the ephemeral range, stopped when the test ends.
package redistest

import (
	"errors"
	"math/rand/v2"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/logpipe/logpipe/devstack/proc"
)

// Binary is the server the tests run.
const Binary = "redis-server"

// Ports are tried in [portLow, portHigh): below the kernel's ephemeral range
// (32768 and up), so that no outgoing connection holds one.
const (
	portLow  = 20000
	portHigh = 32768
	tries    = 50
)

// Start starts redis-server for tb and returns its address. It fails the
// test when the binary is missing: `make test` installs it.
//
// redis-server cannot be handed a listener, nor asked for a port of the
// kernel's choice (--port 0 turns TCP off), so it binds a port picked here:
// when another process holds that port, redis-server exits and another port
// is tried. The port is never released between a check and its use: the
// server that binds it keeps it.
func Start(tb testing.TB) string {
	tb.Helper()
	return StartWith(tb)
}

// StartWith is Start with more redis-server arguments, such as
// "--requirepass", "secret".
func StartWith(tb testing.TB, args ...string) string {
	tb.Helper()
	path, err := exec.LookPath(Binary)
	if err != nil {
		tb.Fatalf("%s not found: `make test` installs it (Debian package redis-server): %v", Binary, err)
	}
	for range tries {
		port := strconv.Itoa(portLow + rand.IntN(portHigh-portLow))
		p := proc.StartCmd(tb, Binary, exec.Command(path, append([]string{
			"--bind", "127.0.0.1", "--port", port,
			"--save", "", "--appendonly", "no", "--dir", tb.TempDir(),
			"--protected-mode", "yes", "--loglevel", "notice"}, args...)...))
		_, err := p.Await("Ready to accept connections", proc.AddrWait)
		if err == nil {
			return net.JoinHostPort("127.0.0.1", port)
		}
		if errors.Is(err, proc.ErrExited) && strings.Contains(p.Output(), "Address already in use") {
			continue // the port is taken: try another
		}
		tb.Fatalf("%s on port %s: %v\n%s", Binary, port, err, p.Output())
	}
	tb.Fatalf("%s: no free port found in %d tries", Binary, tries)
	return ""
}
