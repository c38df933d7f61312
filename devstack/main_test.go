package main

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/logpipe/logpipe/devstack/proc"
)

func TestMain(m *testing.M) { proc.Main(m) }

// readyWithin bounds how long devstack may take to print ready; it starts
// in about a second, the bound is for a machine under heavy load.
const readyWithin = 2 * time.Minute

// devstackBinary builds the devstack binary once per test run and returns
// its path.
func devstackBinary(tb testing.TB) string {
	tb.Helper()
	return proc.Build(tb, "github.com/logpipe/logpipe/devstack")
}

// result is how a devstack process ended.
type result struct {
	code   int
	stderr string
}

// runBinary runs the binary to its end.
func runBinary(tb testing.TB, env []string, args ...string) (stdout string, r result) {
	tb.Helper()
	cmd := exec.Command(devstackBinary(tb), args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		tb.Fatalf("devstack %v: %v", args, err)
	}
	return out.String(), result{code: cmd.ProcessState.ExitCode(), stderr: errOut.String()}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	stdout, r := runBinary(t, nil, "--help")
	if r.code != 0 {
		t.Fatalf("--help: exit %d, stderr %q", r.code, r.stderr)
	}
	help := stdout + r.stderr
	for _, flag := range []string{"backends", "fetch", "etcd-addr", "kafka-addr", "es-addr", "data-dir", "partitions", "all", "viewer-addr", "agent-metrics-addr", "transfer-metrics-addr", "livetail-metrics-addr", "sample-interval", "log-level", "log-format", "config"} {
		if !strings.Contains(help, "--"+flag) {
			t.Errorf("--help does not list --%s:\n%s", flag, help)
		}
	}
	for _, def := range []string{"127.0.0.1:2379", "127.0.0.1:9092", "127.0.0.1:9200", `"6"`} {
		if !strings.Contains(help, def) {
			t.Errorf("--help does not show the default %s", def)
		}
	}
}

func TestBadValues(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		env  []string
		args []string
		want string // in the one line on stderr
	}{
		"partitions not a number": {args: []string{"--partitions", "abc"}, want: "abc"},
		"no partitions":           {args: []string{"--partitions", "0"}, want: "--partitions 0"},
		"address without port":    {args: []string{"--etcd-addr", "localhost"}, want: "localhost"},
		"log level":               {args: []string{"--log-level", "loud"}, want: "loud"},
		"unknown flag":            {args: []string{"--kafka-brokers", "x:1"}, want: "kafka-brokers"},
		"environment":             {env: []string{"LOGPIPE_PARTITIONS=many"}, want: "LOGPIPE_PARTITIONS"},
		"sample interval":         {args: []string{"--all", "--sample-interval", "0s"}, want: "--sample-interval"},
		"backends":                {args: []string{"--backends", "docker"}, want: "docker"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			stdout, r := runBinary(t, c.env, c.args...)
			if r.code != 2 {
				t.Errorf("exit %d, want 2", r.code)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "devstack: ") || !strings.Contains(lines[0], c.want) {
				t.Errorf("stderr %q: want one line naming %q", r.stderr, c.want)
			}
		})
	}
}

func TestPortInUse(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	busy := ln.Addr().String()
	stdout, r := runBinary(t, nil, "--etcd-addr", "127.0.0.1:0", "--kafka-addr", "127.0.0.1:0", "--es-addr", busy)
	if r.code != 1 {
		t.Errorf("exit %d, want 1", r.code)
	}
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], busy) || !strings.Contains(lines[0], "in use") {
		t.Errorf("stderr %q: want one line saying that %s is in use", r.stderr, busy)
	}
	if strings.Contains(stdout, "ready") {
		t.Errorf("stdout %q says ready", stdout)
	}
}

// devstack is a running devstack binary and the addresses it printed.
type devstack struct {
	*proc.Process
	etcd, kafka, es string
}

// devstackCmd is the command that runs devstack with args on ports the
// kernel picks.
func devstackCmd(tb testing.TB, args ...string) *exec.Cmd {
	tb.Helper()
	args = append([]string{"--etcd-addr", "127.0.0.1:0", "--kafka-addr", "127.0.0.1:0", "--es-addr", "127.0.0.1:0"}, args...)
	return exec.Command(devstackBinary(tb), args...)
}

// startBinary starts devstack (embedded backends) on ports the kernel
// picks, waits for "ready" and reads back the addresses from the endpoint
// lines.
func startBinary(tb testing.TB, args ...string) *devstack {
	tb.Helper()
	return startCmd(tb, devstackCmd(tb, args...), "esfake", readyWithin)
}

// startCmd starts a devstack command, waits up to within for "ready" and
// reads back the addresses from the endpoint lines; esName is the first
// word of the Elasticsearch endpoint's line (esfake or opensearch).
func startCmd(tb testing.TB, cmd *exec.Cmd, esName string, within time.Duration) *devstack {
	tb.Helper()
	p := proc.StartCmd(tb, "devstack", cmd)
	p.WaitFor(tb, regexp.MustCompile(`^ready$`), within)
	return &devstack{Process: p, etcd: p.Addr(tb, "etcd"), kafka: p.Addr(tb, "kafka"), es: p.Addr(tb, esName)}
}

var endpointLines = []*regexp.Regexp{
	regexp.MustCompile(`^etcd {6}http://(127\.0\.0\.1:\d+)$`),
	regexp.MustCompile(`^kafka {5}(127\.0\.0\.1:\d+) \(topics logs, logs\.dlq; 6 partitions\)$`),
	regexp.MustCompile(`^esfake \(development stand-in for Elasticsearch, not Elasticsearch\) listening on http://(127\.0\.0\.1:\d+)$`),
}

// TestOutput checks what devstack prints: one line per endpoint, each with
// an address that accepts connections, then ready; SIGTERM stops it with
// status 0.
func TestOutput(t *testing.T) {
	t.Parallel()
	p := startBinary(t)
	lines := strings.Split(strings.TrimSuffix(p.Stdout(), "\n"), "\n")
	if len(lines) != len(endpointLines)+1 || lines[len(lines)-1] != "ready" {
		t.Fatalf("stdout %q, want %d endpoint lines and ready", lines, len(endpointLines))
	}
	for i, re := range endpointLines {
		m := re.FindStringSubmatch(lines[i])
		if m == nil {
			t.Errorf("line %d: %q, want %v", i+1, lines[i], re)
			continue
		}
		c, err := net.Dial("tcp", m[1])
		if err != nil {
			t.Errorf("line %d: %q: the address does not accept connections: %v", i+1, lines[i], err)
			continue
		}
		c.Close()
	}
	if code := p.Stop(t); code != 0 {
		t.Errorf("exit %d after SIGTERM, want 0", code)
	}
}
