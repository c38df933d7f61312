// Package redistest runs Debian's redis-server for tests, on a free loopback
// port below the ephemeral range, stopped when the test ends.
package redistest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"

	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Binary is the server the tests run.
const Binary = "redis-server"

// Start starts redis-server for tb and returns its address. It fails the
// test when the binary is missing: `make test` installs it.
func Start(tb testing.TB) string {
	tb.Helper()
	path, err := exec.LookPath(Binary)
	if err != nil {
		tb.Fatalf("%s not found: `make test` installs it (Debian package redis-server): %v", Binary, err)
	}
	for range 20 {
		port := freePort(tb)
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		cmd := exec.Command(path,
			"--bind", "127.0.0.1", "--port", strconv.Itoa(port),
			"--save", "", "--appendonly", "no", "--dir", tb.TempDir(),
			"--protected-mode", "yes", "--loglevel", "warning")
		out, err := cmd.StdoutPipe()
		if err != nil {
			tb.Fatal(err)
		}
		cmd.Stderr = cmd.Stdout
		if err := cmd.Start(); err != nil {
			tb.Fatalf("starting %s: %v", Binary, err)
		}
		exited := make(chan string, 1)
		go func() {
			// Keep the pipe drained; report what it said if it exits.
			var last string
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				last = sc.Text()
			}
			exited <- last
		}()
		stop := func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
			<-exited
		}
		if err := waitReady(addr, exited); err != nil {
			stop()
			if errors.Is(err, errExited) {
				continue // the port was taken meanwhile: try another
			}
			tb.Fatalf("%s on %s: %v", Binary, addr, err)
		}
		tb.Cleanup(stop)
		return addr
	}
	tb.Fatalf("%s: no free port found", Binary)
	return ""
}

var errExited = errors.New("exited")

// waitReady waits until the server answers PING.
func waitReady(addr string, exited <-chan string) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case last := <-exited:
			return fmt.Errorf("%w: %s", errExited, last)
		default:
		}
		if ping(addr) == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("not answering PING after 10s")
}

func ping(addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// freePort picks a port in [20000, 32768) that is free right now.
func freePort(tb testing.TB) int {
	for range 200 {
		port := 20000 + rand.IntN(32768-20000)
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			ln.Close()
			return port
		}
	}
	tb.Fatal("no free port below 32768")
	return 0
}
