package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/logpipe/logpipe/devstack/stack"
)

// Bounds on how long make run's stack may take to report ready on this
// 2-core machine, builds excluded: in-process backends, and Apache Kafka and
// OpenSearch in JVMs of its own (which may have to fetch their jars first).
const (
	readyWithin     = 60 * time.Second
	realReadyWithin = 4 * time.Minute
)

// TestMakeRunStack runs what make run runs (devstack --all, next to the
// service binaries) twice on the same ports, and once more with
// --backends real, as make run BACKENDS=real does: each time it must report
// ready, print the viewer URL and the etcdctl and curl commands, move sample
// lines into the index and to a WebSocket client, and stop cleanly on
// SIGINT.
func TestMakeRunStack(t *testing.T) {
	t.Run(stack.Embedded, func(t *testing.T) {
		ports := runPorts(t)
		for run := 1; run <= 2; run++ {
			t.Run(fmt.Sprintf("run %d", run), func(t *testing.T) {
				checkMakeRun(t, ports, readyWithin)
			})
		}
	})
	t.Run(stack.Real, func(t *testing.T) {
		if os.Getenv("LOGPIPE_SKIP_REAL") == "1" {
			t.Skip("LOGPIPE_SKIP_REAL=1: not running JVMs")
		}
		checkMakeRun(t, runPorts(t), realReadyWithin, "--backends", "real")
	})
}

// runPorts picks free addresses for each of devstack --all's listeners,
// by flag name.
func runPorts(t *testing.T) map[string]string {
	ports := map[string]string{}
	for _, f := range []string{"etcd-addr", "kafka-addr", "es-addr", "viewer-addr", "agent-metrics-addr", "transfer-metrics-addr", "livetail-metrics-addr"} {
		ports[f] = freeAddr(t)
	}
	return ports
}

// checkMakeRun runs devstack --all with extra arguments on ports once and
// checks what a user of make run sees.
func checkMakeRun(t *testing.T, ports map[string]string, within time.Duration, extra ...string) {
	args := append([]string{"--all", "--sample-interval", "50ms"}, extra...)
	for f, a := range ports {
		args = append(args, "--"+f, a)
	}
	out := runDevstackAll(t, args, within)
	for _, want := range []string{
		"http://" + ports["viewer-addr"] + "/?job=web",
		"etcdctl --endpoints=http://" + ports["etcd-addr"] + " put /logpipe/agents/devstack",
		"curl -s 'http://" + ports["es-addr"] + "/logs-logpipe-default/_search",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("make run printout lacks %q:\n%s", want, out)
		}
	}
	es := "http://" + ports["es-addr"]
	eventually(t, 60*time.Second, "sample lines indexed", func() error {
		for _, job := range []string{"web", "checkout", "worker"} {
			n, err := esCount(es, index, `{"query":{"term":{"job":"`+job+`"}}}`)
			if err != nil {
				return err
			}
			if n == 0 {
				return fmt.Errorf("no %s documents yet", job)
			}
		}
		return nil
	})
	n, err := esCount(es, index, `{"query":{"bool":{"filter":[{"term":{"job":"worker"}},{"term":{"log.flags":"multiline"}}]}}}`)
	if err != nil || n == 0 {
		t.Errorf("no multiline stack trace from the worker job indexed (count %d, %v)", n, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	client := &tailClient{addr: ports["viewer-addr"], job: "web"}
	var wg sync.WaitGroup
	wg.Go(func() { client.run(ctx) })
	eventually(t, 30*time.Second, "viewer stream", func() error {
		if got, _, _ := client.snapshot(); len(got) < 10 {
			return fmt.Errorf("%d lines of job web", len(got))
		}
		return nil
	})
	cancel()
	wg.Wait()
}

// runDevstackAll starts devstack --all, waits up to within for "ready" and
// returns what it printed; t.Cleanup stops it with Ctrl-C (SIGINT to its process group)
// and checks that everything stopped gracefully with exit 0.
func runDevstackAll(t *testing.T, args []string, within time.Duration) string {
	t.Helper()
	cmd := exec.Command(binDir+"/devstack", args...)
	// Its own process group, so that the Ctrl-C below reaches the whole
	// group, as a terminal's does.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGINT) // Ctrl-C
		go func() {
			for range lines {
			}
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("devstack --all after Ctrl-C: %v\n%s", err, tail(stderr.String()))
			}
			if strings.Contains(stderr.String(), "exiting now") {
				t.Errorf("a service was stopped twice (not gracefully) on Ctrl-C:\n%s", tail(stderr.String()))
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("devstack --all did not stop within 30s of Ctrl-C")
		}
	})
	var out strings.Builder
	timeout := time.After(within)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("devstack --all ended before ready:\n%s\nstderr:\n%s", out.String(), tail(stderr.String()))
			}
			if line == "ready" {
				t.Logf("make run's stack ready after %v", time.Since(start).Round(time.Millisecond))
				return out.String()
			}
			out.WriteString(line + "\n")
		case <-timeout:
			t.Fatalf("devstack --all not ready within %v:\n%s\nstderr:\n%s", within, out.String(), tail(stderr.String()))
		}
	}
}

func tail(s string) string {
	if len(s) > 6000 {
		return "..." + s[len(s)-6000:]
	}
	return s
}
