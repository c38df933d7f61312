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
	return start(tb, "--port", args)
}

// start runs redis-server with portFlag set to a port picked here.
func start(tb testing.TB, portFlag string, args []string) string {
	tb.Helper()
	path, err := exec.LookPath(Binary)
	if err != nil {
		tb.Fatalf("%s not found: `make test` installs it (Debian package redis-server): %v", Binary, err)
	}
	for range tries {
		port := strconv.Itoa(portLow + rand.IntN(portHigh-portLow))
		p := proc.StartCmd(tb, Binary, exec.Command(path, append([]string{
			"--bind", "127.0.0.1", portFlag, port,
			"--save", "", "--appendonly", "no", "--dir", tb.TempDir(),
			"--protected-mode", "yes", "--loglevel", "notice"}, args...)...))
		_, err := p.Await("Ready to accept connections", proc.AddrWait)
		if err == nil {
			return net.JoinHostPort("127.0.0.1", port)
		}
		if errors.Is(err, proc.ErrExited) && strings.Contains(p.Output(), "Address already in use") {
			continue // the port is taken: try another
		}
		if portFlag == "--tls-port" && errors.Is(err, proc.ErrExited) && noTLS(p.Output()) {
			tb.Skipf("%s was built without TLS support, so rediss:// cannot be tested here:\n%s", Binary, p.Output())
		}
		tb.Fatalf("%s on port %s: %v\n%s", Binary, port, err, p.Output())
	}
	tb.Fatalf("%s: no free port found in %d tries", Binary, tries)
	return ""
}

// StartTLS is StartWith for a server that takes only TLS connections, with
// certFile and keyFile as its certificate: plaintext is off (--port 0) and
// clients need no certificate of their own.
func StartTLS(tb testing.TB, certFile, keyFile, caFile string, args ...string) string {
	tb.Helper()
	return start(tb, "--tls-port", append([]string{"--port", "0",
		"--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-ca-cert-file", caFile,
		"--tls-auth-clients", "no"}, args...))
}

// noTLS reports whether redis-server's output says it cannot serve TLS.
func noTLS(out string) bool {
	out = strings.ToLower(out)
	return strings.Contains(out, "tls") && (strings.Contains(out, "not supported") || strings.Contains(out, "bad directive") || strings.Contains(out, "unrecognized option"))
}
