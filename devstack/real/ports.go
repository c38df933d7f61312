package real

import (
	"fmt"
	"math/rand/v2"

	"github.com/logpipe/logpipe/devstack/internal/listener"
)

// Ports for an address with port 0 are picked below the kernel's
// ephemeral range, as the embedded backends' are (see listener.Listen), so
// that no outgoing connection takes the port while a backend is down for
// an outage test.

// randomRange is a range of n ports in [listener.PickLow,
// listener.PickHigh), as OpenSearch writes it ("24000-24099"): OpenSearch
// binds the first free one.
func randomRange(n int) string {
	lo := listener.PickLow + rand.IntN(listener.PickHigh-listener.PickLow-n)
	return fmt.Sprintf("%d-%d", lo, lo+n-1)
}
