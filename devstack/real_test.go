package main

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
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

var realEndpointLines = []*regexp.Regexp{
	regexp.MustCompile(`^etcd {6}http://127\.0\.0\.1:\d+$`),
	regexp.MustCompile(`^kafka {5}127\.0\.0\.1:\d+ \(Apache Kafka 4\.1\.1; topics logs, logs\.dlq; 6 partitions\)$`),
	regexp.MustCompile(`^opensearch (http://127\.0\.0\.1:\d+) \(OpenSearch 2\.19\.6 behind an Elasticsearch-compatible proxy\)$`),
}

// TestBackendsReal: devstack --backends real says what runs, serves it,
// and leaves no JVM behind after SIGTERM.
func TestBackendsReal(t *testing.T) {
	needReal(t)
	cmd := exec.Command(devstackBinary(t), "--backends", "real",
		"--etcd-addr", "127.0.0.1:0", "--kafka-addr", "127.0.0.1:0", "--es-addr", "127.0.0.1:0")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	lines := make(chan string, 100)
	go func() {
		defer close(done)
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		io.Copy(io.Discard, stdout)
		cmd.Wait()
	}()
	defer func() {
		cmd.Process.Kill() // after a failure; a no-op once it has exited
		<-done
	}()

	var got []string
	timeout := time.After(4 * time.Minute)
wait:
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("devstack ended before ready: stdout %q, stderr %q", got, stderr.String())
			}
			if line == "ready" {
				break wait
			}
			got = append(got, line)
		case <-timeout:
			t.Fatalf("devstack not ready after 4 minutes: stdout %q", got)
		}
	}
	if len(got) != len(realEndpointLines) {
		t.Fatalf("stdout before ready: %q, want %d lines", got, len(realEndpointLines))
	}
	for i, re := range realEndpointLines {
		if !re.MatchString(got[i]) {
			t.Errorf("line %d: %q, want %v", i+1, got[i], re)
		}
	}
	if m := realEndpointLines[2].FindStringSubmatch(got[2]); m != nil {
		resp, err := http.Get(m[1] + "/")
		if err != nil {
			t.Fatalf("GET %s/: %v", m[1], err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Elastic-Product") != "Elasticsearch" {
			t.Errorf("GET %s/: %s, X-Elastic-Product %q", m[1], resp.Status, resp.Header.Get("X-Elastic-Product"))
		}
		http.DefaultClient.CloseIdleConnections()
	}

	jvms := children(t, cmd.Process.Pid)
	if len(jvms) != 2 {
		t.Errorf("devstack's child processes: %v, want two JVMs", jvms)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("devstack did not stop within a minute of SIGTERM")
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit %d after SIGTERM, want 0; stderr %q", code, stderr.String())
	}
	for pid, name := range jvms {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("child %d (%s) still runs after devstack exited", pid, name)
		}
	}
}

// children are the processes whose parent is pid, by command name.
func children(tb testing.TB, pid int) map[int]string {
	tb.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		tb.Fatal(err)
	}
	kids := map[int]string{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid ...
		stat := string(b)
		i := strings.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(stat[i+1:])
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			kids[p] = stat[strings.IndexByte(stat, '(')+1 : i]
		}
	}
	return kids
}
