package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sync/errgroup"

	"github.com/logpipe/logpipe/common/logging"
)

// service is one logpipe binary that devstack --all runs as a child process.
type service struct {
	name string
	args []string
	env  []string // NAME=value, over this process's environment less its LOGPIPE_* variables
	// listeners are the addresses it was given, by the listener's name in
	// the line it logs (logging.Listening); port 0: the one it logs.
	listeners map[string]string
	ready     string // the listener that serves /readyz
}

// listening is a listener's address read from a service's output.
type listening struct{ name, addr string }

// stopGrace is how long a service has to stop after SIGTERM before SIGKILL.
const stopGrace = 10 * time.Second

// errExited is returned when a service stops by itself.
var errExited = errors.New("exited")

// secureServices are the three binaries configured by env, the variables of
// secure.env, for everything about the backends.
func secureServices(cfg Config, env []string, stateDir string) []service {
	return []service{
		{name: "agent", env: env, args: []string{
			"--name", agentName, "--state-dir", stateDir, "--metrics-addr", cfg.AgentMetricsAddr,
		}, listeners: map[string]string{"metrics": cfg.AgentMetricsAddr}, ready: "metrics"},
		{name: "transfer", env: env, args: []string{
			"--metrics-addr", cfg.TransferMetricsAddr,
		}, listeners: map[string]string{"metrics": cfg.TransferMetricsAddr}, ready: "metrics"},
		{name: "livetail", env: env, args: []string{
			"--listen", cfg.ViewerAddr, "--metrics-addr", cfg.LivetailMetricsAddr,
		}, listeners: map[string]string{"http": cfg.ViewerAddr, "metrics": cfg.LivetailMetricsAddr}, ready: "metrics"},
	}
}

// services are the three binaries wired to the stack's backends.
func services(cfg Config, etcd, kafka, es, stateDir string) []service {
	return []service{
		{name: "agent", args: []string{
			"--name", agentName, "--etcd-endpoints", etcd, "--kafka-brokers", kafka,
			"--state-dir", stateDir, "--metrics-addr", cfg.AgentMetricsAddr,
		}, listeners: map[string]string{"metrics": cfg.AgentMetricsAddr}, ready: "metrics"},
		{name: "transfer", args: []string{
			"--kafka-brokers", kafka, "--es-addresses", es, "--metrics-addr", cfg.TransferMetricsAddr,
		}, listeners: map[string]string{"metrics": cfg.TransferMetricsAddr}, ready: "metrics"},
		{name: "livetail", args: []string{
			"--kafka-brokers", kafka, "--es-addresses", es, "--listen", cfg.ViewerAddr, "--metrics-addr", cfg.LivetailMetricsAddr,
		}, listeners: map[string]string{"http": cfg.ViewerAddr, "metrics": cfg.LivetailMetricsAddr}, ready: "metrics"},
	}
}

// agentName is the agent's --name under devstack --all.
const agentName = "devstack"

// runServices starts every service from binDir, waits until each reports
// ready on /readyz, calls ready with the address of each listener (by
// "service/listener", such as "livetail/http"), and then keeps them running
// until ctx ends (SIGTERM, then SIGKILL after stopGrace) or one of them
// exits by itself, which stops the others and is returned as an error.
func runServices(ctx context.Context, binDir string, svcs []service, log logrus.FieldLogger, ready func(addrs map[string]string)) error {
	for _, s := range svcs {
		if _, err := os.Stat(filepath.Join(binDir, s.name)); err != nil {
			return fmt.Errorf("%s binary not found next to devstack in %s: build it first (make build)", s.name, binDir)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	bound := make([]chan listening, len(svcs))
	for i, s := range svcs {
		bound[i] = make(chan listening, len(s.listeners))
		g.Go(func() error { return supervise(gctx, filepath.Join(binDir, s.name), s, log, bound[i]) })
	}
	g.Go(func() error {
		addrs := map[string]string{}
		for i, s := range svcs {
			got, err := boundAddrs(gctx, s, bound[i])
			if err == nil {
				err = waitReady(gctx, "http://"+got[s.ready]+"/readyz")
			}
			if err != nil {
				return fmt.Errorf("%s not ready: %w", s.name, err)
			}
			for name, addr := range got {
				addrs[s.name+"/"+name] = addr
			}
		}
		ready(addrs)
		return nil
	})
	err := g.Wait()
	if ctx.Err() != nil {
		return nil // asked to stop: the services' exits are expected
	}
	return err
}

// boundAddrs are the addresses of the service's listeners by name: the one
// each was given, or with port 0 the one it logs (received on bound).
func boundAddrs(ctx context.Context, s service, bound <-chan listening) (map[string]string, error) {
	addrs := map[string]string{}
	for name, addr := range s.listeners {
		if _, port, err := net.SplitHostPort(addr); err == nil && port != "0" {
			addrs[name] = addr
		}
	}
	for len(addrs) < len(s.listeners) {
		select {
		case l := <-bound:
			if _, given := addrs[l.name]; !given {
				addrs[l.name] = l.addr
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("no %s line with the address of each of %d listeners: %w", logging.ListeningMessage, len(s.listeners), context.Cause(ctx))
		}
	}
	return addrs, nil
}

// supervise runs one service until ctx ends or it exits by itself. Its
// output goes to stderr, each line prefixed with its name; the address in
// its listening lines go to bound, once per listener.
func supervise(ctx context.Context, path string, s service, log logrus.FieldLogger, bound chan<- listening) error {
	cmd := exec.Command(path, s.args...)
	// The settings are devstack's alone: LOGPIPE_* variables of the shell
	// (say, of another stack's secure.env) do not reach the services.
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "LOGPIPE_") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	cmd.Env = append(cmd.Env, s.env...)
	// A process group of its own: the terminal's Ctrl-C reaches devstack
	// alone, which then stops each service once, with SIGTERM. Pdeathsig
	// stops the service if devstack itself is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	told := map[string]bool{} // only prefixWriter's goroutine calls onLine
	out := prefixWriter(os.Stderr, s.name, func(line string) {
		name, addr, ok := logging.ParseListening(line)
		if _, known := s.listeners[name]; !ok || !known || told[name] {
			return
		}
		told[name] = true
		bound <- listening{name, addr} // room for one per listener
	})
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", s.name, err)
	}
	log.WithFields(logrus.Fields{"service": s.name, "pid": cmd.Process.Pid}).Info("service started")
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		return fmt.Errorf("%s %w: %v", s.name, errExited, err)
	case <-ctx.Done():
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		log.WithField("service", s.name).WithError(err).Info("service stopped")
	case <-time.After(stopGrace):
		_ = cmd.Process.Kill()
		<-exited
		log.WithField("service", s.name).Warnf("service did not stop within %v: killed", stopGrace)
	}
	return nil
}

// waitReady polls url until it answers 200 or ctx ends.
func waitReady(ctx context.Context, url string) error {
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", context.Cause(ctx), last)
		case <-tick.C:
		}
	}
}

// prefixWriter copies whole lines to w, each prefixed with "name | ", and
// hands each line to onLine first.
func prefixWriter(w io.Writer, name string, onLine func(string)) io.WriteCloser {
	pr, pw := io.Pipe()
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			onLine(sc.Text())
			mu.Lock()
			fmt.Fprintf(w, "%-8s | %s\n", name, sc.Text())
			mu.Unlock()
		}
		_, _ = io.Copy(io.Discard, pr) // a line over 1 MiB: drain, never block the child
	}()
	return closer{pw, done}
}

type closer struct {
	*io.PipeWriter
	done chan struct{}
}

func (c closer) Close() error {
	err := c.PipeWriter.Close()
	<-c.done
	return err
}
