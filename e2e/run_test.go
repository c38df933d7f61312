package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/logpipe/logpipe/devstack/proc"
	"github.com/logpipe/logpipe/devstack/stack"
)

// realReadyWithin bounds how long make run BACKENDS=real's stack may take
// to report ready: Apache Kafka and OpenSearch in JVMs of its own, which
// may have to fetch their jars first. No test measures speed with it.
const realReadyWithin = 2 * within

// TestMakeRunStack runs what make run runs (devstack --all, next to the
// service binaries) twice in a row, and once more with --backends real, as
// make run BACKENDS=real does: each time it must report ready, print the
// viewer URL and the etcdctl and curl commands, move sample lines into the
// index and to a WebSocket client, and stop cleanly on Ctrl-C, leaving no
// service process and no sample directory behind for the next run.
//
// Every address is port 0 and read back from what devstack prints: a run
// on the fixed default ports could find one taken by another test.
func TestMakeRunStack(t *testing.T) {
	for _, b := range []string{"agent", "transfer", "livetail"} {
		binary(t, b) // devstack --all runs them from its own directory
	}
	t.Run(stack.Embedded, func(t *testing.T) {
		for run := 1; run <= 2; run++ {
			t.Run(fmt.Sprintf("run %d", run), func(t *testing.T) {
				checkMakeRun(t, "esfake", within)
			})
		}
	})
	t.Run(stack.Real, func(t *testing.T) {
		stack.SkipReal(t) // devstack starts JVMs of its own
		checkMakeRun(t, "opensearch", realReadyWithin, "--backends", "real")
	})
}

// checkMakeRun runs devstack --all with extra arguments, every listener on
// port 0, and checks what a user of make run sees; es names the line of
// the printout with the Elasticsearch API's address, and ready bounds the
// wait for "ready".
func checkMakeRun(t *testing.T, es string, ready time.Duration, extra ...string) {
	args := append([]string{"--all", "--sample-interval", "50ms"}, extra...)
	for _, f := range []string{"etcd-addr", "kafka-addr", "es-addr", "viewer-addr", "agent-metrics-addr", "transfer-metrics-addr", "livetail-metrics-addr"} {
		args = append(args, "--"+f, "127.0.0.1:0")
	}
	p := runDevstackAll(t, args, ready)
	out := p.Stdout()
	etcd, esAddr, viewer := p.Addr(t, "etcd"), p.Addr(t, es), p.Addr(t, "viewer")
	for _, want := range []string{
		"http://" + viewer + "/?job=web",
		"etcdctl --endpoints=http://" + etcd + " put /logpipe/agents/devstack",
		"curl -s 'http://" + esAddr + "/logs-logpipe-default/_search",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("make run printout lacks %q:\n%s", want, out)
		}
	}
	eventually(t, "sample lines indexed", func() error {
		for _, job := range []string{"web", "checkout", "worker"} {
			n, err := esCount("http://"+esAddr, index, `{"query":{"term":{"job":"`+job+`"}}}`)
			if err != nil {
				return err
			}
			if n == 0 {
				return fmt.Errorf("no %s documents yet", job)
			}
		}
		return nil
	})
	eventually(t, "a multiline stack trace of the worker job indexed", func() error {
		n, err := esCount("http://"+esAddr, index, `{"query":{"bool":{"filter":[{"term":{"job":"worker"}},{"term":{"log.flags":"multiline"}}]}}}`)
		if err == nil && n == 0 {
			err = errors.New("none yet")
		}
		return err
	})
	ctx, cancel := context.WithCancel(context.Background())
	client := &tailClient{addr: viewer, job: "web"}
	var wg sync.WaitGroup
	wg.Go(func() { client.run(ctx) })
	eventually(t, "viewer stream", func() error {
		if got, _, _ := client.snapshot(); len(got) < 10 {
			return fmt.Errorf("%d lines of job web", len(got))
		}
		return nil
	})
	cancel()
	wg.Wait()
}

// sampleDir is the line of the printout that names the sample logs.
var sampleDir = regexp.MustCompile(`sample logs in (\S+)\)`)

// servicePID is devstack's log line for a service it started.
var servicePID = regexp.MustCompile(`msg="service started" pid=(\d+) service=(\w+)`)

// runDevstackAll starts devstack --all and waits up to ready for "ready";
// t.Cleanup stops it with Ctrl-C (SIGINT to its process group) and checks
// that it stopped gracefully with exit 0, and that neither a service
// process nor the sample directory outlived it.
func runDevstackAll(t *testing.T, args []string, ready time.Duration) *proc.Process {
	t.Helper()
	cmd := exec.Command(binary(t, "devstack"), args...)
	// Its own process group, so that the Ctrl-C below reaches the whole
	// group, as a terminal's does.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	p := proc.StartCmd(t, "devstack", cmd)
	t.Cleanup(func() {
		_ = syscall.Kill(-p.Pid(), syscall.SIGINT) // Ctrl-C
		select {
		case <-p.Done():
		case <-time.After(within):
			t.Errorf("devstack --all did not stop within %v of Ctrl-C", within)
			return
		}
		if code := p.ExitCode(); code != 0 {
			t.Errorf("devstack --all exited %d after Ctrl-C", code)
		}
		out := p.Output()
		if strings.Contains(out, "exiting now") {
			t.Errorf("a service was stopped twice (not gracefully) on Ctrl-C")
		}
		started := servicePID.FindAllStringSubmatch(out, -1)
		if len(started) != 3 {
			t.Errorf("devstack logged %d services started, want 3", len(started))
		}
		for _, m := range started {
			pid, _ := strconv.Atoi(m[1])
			if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("%s (pid %d) still running after devstack --all exited", m[2], pid)
			}
		}
		if m := sampleDir.FindStringSubmatch(p.Stdout()); m != nil {
			if _, err := os.Stat(m[1]); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("sample logs %s still there after devstack --all exited (%v)", m[1], err)
			}
		} else {
			t.Errorf("no sample directory in the printout:\n%s", p.Stdout())
		}
	})
	p.WaitFor(t, regexp.MustCompile(`^ready$`), ready)
	t.Logf("make run's stack ready after %v", time.Since(start).Round(time.Millisecond))
	return p
}
