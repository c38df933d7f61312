package main

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/logpipe/logpipe/devstack/stack"
)

// needReal is stack.SkipReal: these tests start JVMs of their own.
func needReal(tb testing.TB) {
	tb.Helper()
	stack.SkipReal(tb)
}

// realReadyWithin bounds how long devstack --backends real may take to
// print ready. Both JVMs are up within a minute here; the bound is for a
// machine under heavy load, and for a first run that fetches the jars.
const realReadyWithin = 4 * time.Minute

// jvmsGoneWithin bounds how long the JVMs may outlive a devstack killed
// with SIGKILL. The kernel kills them at once (Pdeathsig), and they also
// exit by themselves when their standard input ends; the bound is for a
// machine under heavy load.
const jvmsGoneWithin = time.Minute

var realEndpointLines = []*regexp.Regexp{
	regexp.MustCompile(`^etcd {6}http://127\.0\.0\.1:\d+$`),
	regexp.MustCompile(`^kafka {5}127\.0\.0\.1:\d+ \(Apache Kafka 4\.1\.1; topics logs, logs\.dlq; 6 partitions\)$`),
	regexp.MustCompile(`^opensearch http://127\.0\.0\.1:\d+ \(OpenSearch 2\.19\.6 behind an Elasticsearch-compatible proxy\)$`),
}

// TestBackendsReal: devstack --backends real says what runs, serves the
// clients that TestExternalClients drives the embedded devstack with, and
// leaves no JVM behind when it dies without cleaning up.
//
// It is killed with SIGKILL, as a crash would end it (an unhandled panic
// ends the process the same way, without stack.Close): the JVMs go by the
// kernel's Pdeathsig and by the end of their standard input. The graceful
// path is checked elsewhere, so that this package starts the JVMs once:
// SIGTERM and SIGINT cancel run's context whichever the backends
// (TestOutput and TestExternalClients: exit 0 after SIGTERM), stack's
// TestRealBackends checks that stack.Close, which run calls then, stops
// both JVMs, and e2e's TestMakeRunStack/real that devstack --all
// --backends real exits 0 after Ctrl-C.
func TestBackendsReal(t *testing.T) {
	needReal(t)
	c := needClients(t)
	cmd := devstackCmd(t, "--backends", "real")
	// The JVMs' data goes to temporary folders, which a killed devstack
	// leaves behind: here, in one that the test removes.
	cmd.Env = append(os.Environ(), "TMPDIR="+t.TempDir())
	p := startCmd(t, cmd, "opensearch", realReadyWithin)

	lines := strings.Split(strings.TrimSuffix(p.Stdout(), "\n"), "\n")
	if len(lines) != len(realEndpointLines)+1 {
		t.Fatalf("stdout %q, want %d endpoint lines and ready", lines, len(realEndpointLines))
	}
	for i, re := range realEndpointLines {
		if !re.MatchString(lines[i]) {
			t.Errorf("line %d: %q, want %v", i+1, lines[i], re)
		}
	}
	c.check(t, p, esRoot{distribution: "opensearch", number: "2.19.6"})

	jvms := children(t, p.Pid())
	if len(jvms) != 2 || jvms[0].name != "java" || jvms[1].name != "java" {
		t.Fatalf("devstack's child processes: %v, want two JVMs", jvms)
	}
	p.Kill()
	killed := time.Now()
	if left := awaitGone(jvms, jvmsGoneWithin); len(left) > 0 {
		for _, j := range left {
			_ = syscall.Kill(j.pid, syscall.SIGKILL) // the test's own: not left running after it
		}
		t.Fatalf("JVMs %v still run %v after devstack was killed", left, jvmsGoneWithin)
	}
	t.Logf("both JVMs gone %v after devstack was killed", time.Since(killed).Round(time.Millisecond))
}

// process is a process seen in /proc: its id, its start time (in clock
// ticks after boot), which tells it from a later process that reuses the
// id, and its command name.
type process struct {
	pid   int
	start string
	name  string
}

func (p process) String() string { return fmt.Sprintf("%s (pid %d)", p.name, p.pid) }

// stat reads /proc/<pid>/stat: the process's parent, state, start time and
// command name; ok is false when there is no such process.
func stat(pid int) (ppid int, state, start, name string, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, "", "", "", false
	}
	// pid (comm) state ppid pgrp ... starttime (the 22nd field) ...
	s := string(b)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return 0, "", "", "", false
	}
	fields := strings.Fields(s[end+1:]) // from the 3rd field on
	if len(fields) < 20 {
		return 0, "", "", "", false
	}
	ppid, err = strconv.Atoi(fields[1])
	if err != nil {
		return 0, "", "", "", false
	}
	return ppid, fields[0], fields[19], s[open+1 : end], true
}

// children are the processes whose parent is pid, in the order of their
// ids.
func children(tb testing.TB, pid int) []process {
	tb.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		tb.Fatal(err)
	}
	var kids []process
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, _, start, name, ok := stat(p); ok && ppid == pid {
			kids = append(kids, process{pid: p, start: start, name: name})
		}
	}
	return kids
}

// running reports whether p still runs. A zombie does not: it has exited
// and waits for its new parent (init, once devstack is dead) to reap it.
func (p process) running() bool {
	_, state, start, _, ok := stat(p.pid)
	return ok && start == p.start && state != "Z" && state != "X"
}

// awaitGone waits up to within for the processes to end, looking a few
// times a second, and returns those that still run.
func awaitGone(procs []process, within time.Duration) []process {
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		var left []process
		for _, p := range procs {
			if p.running() {
				left = append(left, p)
			}
		}
		if len(left) == 0 {
			return nil
		}
		select {
		case <-deadline.C:
			return left
		case <-tick.C:
		}
	}
}
