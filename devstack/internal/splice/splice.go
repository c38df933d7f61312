// Package splice joins two connections: what one side sends, the other
// receives, until either side ends. The embedded backends' outage gate and
// the test relay both forward connections this way.
package splice

import (
	"io"
	"net"
)

// Join copies a to b and b to a until one side ends, then closes both so
// that the other copy returns too, and returns once both copies have.
func Join(a, b net.Conn) {
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go pipe(a, b)
	go pipe(b, a)
	<-done
	a.Close()
	b.Close()
	<-done
}
