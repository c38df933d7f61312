package main

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// needReal skips the test under LOGPIPE_SKIP_REAL=1 (quick iterations on
// other code) and fails it when Java or Maven is missing.
func needReal(tb testing.TB) {
	tb.Helper()
	if os.Getenv("LOGPIPE_SKIP_REAL") == "1" {
		tb.Skip("LOGPIPE_SKIP_REAL=1: not running JVMs")
	}
	needTool(tb, "java", "openjdk-17-jdk-headless")
	needTool(tb, "mvn", "maven")
}

// realReadyWithin bounds how long devstack --backends real may take to
// print ready. Both JVMs are up within a minute here; the bound is for a
// machine under heavy load, and for a first run that fetches the jars.
const realReadyWithin = 4 * time.Minute

var realEndpointLines = []*regexp.Regexp{
	regexp.MustCompile(`^etcd {6}http://127\.0\.0\.1:\d+$`),
	regexp.MustCompile(`^kafka {5}127\.0\.0\.1:\d+ \(Apache Kafka 4\.1\.1; topics logs, logs\.dlq; 6 partitions\)$`),
	regexp.MustCompile(`^opensearch http://127\.0\.0\.1:\d+ \(OpenSearch 2\.19\.6 behind an Elasticsearch-compatible proxy\)$`),
}

// TestBackendsReal: devstack --backends real says what runs, serves the
// clients that TestExternalClients drives the embedded devstack with, and
// leaves no JVM behind after SIGTERM.
func TestBackendsReal(t *testing.T) {
	needReal(t)
	c := needClients(t)
	p := startCmd(t, devstackCmd(t, "--backends", "real"), "opensearch", realReadyWithin)

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
	if code := p.Stop(t); code != 0 {
		t.Errorf("exit %d after SIGTERM, want 0", code)
	}
	for _, j := range jvms {
		if j.running() {
			t.Errorf("%v still runs after devstack exited", j)
		}
	}
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
