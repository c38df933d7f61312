package splice

import (
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Bytes go both ways, and when one far end hangs up, Join closes the
// other side and returns: the other far end reads EOF.
func TestJoin(t *testing.T) {
	client, a := net.Pipe()
	b, server := net.Pipe()
	joined := make(chan struct{})
	go func() { Join(a, b); close(joined) }()

	for _, c := range []struct {
		from, to net.Conn
		msg      string
	}{{client, server, "ping"}, {server, client, "pong"}} {
		go func() { _, _ = c.from.Write([]byte(c.msg)) }()
		buf := make([]byte, len(c.msg))
		if _, err := io.ReadFull(c.to, buf); err != nil || string(buf) != c.msg {
			t.Fatalf("read %q, %v; want %q", buf, err, c.msg)
		}
	}

	client.Close()
	_ = server.SetReadDeadline(time.Now().Add(time.Minute)) // fail, not hang, if Join keeps it open
	if n, err := server.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("after the client hung up, the server read %d bytes, %v; want EOF", n, err)
	}
	<-joined
	server.Close()
}
