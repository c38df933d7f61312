package real

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"syscall"
)

// Ports picked for an address with port 0 lie in [pickLow, pickHigh): below
// the kernel's ephemeral range (which starts at 32768 here), so that no
// outgoing connection takes the port while a backend is down for an outage
// test. The stack package picks its ports the same way.
const (
	pickLow   = 20000
	pickHigh  = 32768
	pickTries = 200
)

// randomPort is a port in [pickLow, pickHigh).
func randomPort() int { return pickLow + rand.IntN(pickHigh-pickLow) }

// randomRange is a range of n ports in [pickLow, pickHigh), as OpenSearch
// writes it ("24000-24099"): OpenSearch binds the first free one.
func randomRange(n int) string {
	lo := pickLow + rand.IntN(pickHigh-pickLow-n)
	return fmt.Sprintf("%d-%d", lo, lo+n-1)
}

// listen binds a TCP listener on addr. An empty addr means 127.0.0.1:0; a
// port of 0 is replaced by a free port picked at random below the ephemeral
// range.
func listen(addr string) (net.Listener, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", addr, err)
	}
	if port != "0" {
		return net.Listen("tcp", addr)
	}
	for range pickTries {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(randomPort())))
		if err == nil {
			return ln, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("address %s: no free port found in %d tries between %d and %d", addr, pickTries, pickLow, pickHigh-1)
}
