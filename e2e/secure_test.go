package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/logpipe/logpipe/devstack/proc"
	"github.com/logpipe/logpipe/devstack/securetest"
	"github.com/logpipe/logpipe/devstack/stack"
)

// secureEnvLine is devstack --secure's line naming its settings file.
var secureEnvLine = regexp.MustCompile(`(?m)^secure\.env (\S+)$`)

// TestSecureStack starts devstack --secure, on embedded and then on real
// backends, and runs agent, transfer and livetail as a user would after
// `. secure.env`: configured by that file's variables alone. Lines written
// to a file must reach the index (searched over HTTPS with the file's
// user) and a live WebSocket client; etcdctl and kcat must work from the
// same file, the agent must apply a config put with etcdctl, and plaintext
// Kafka, an etcd client without a certificate and an anonymous search must
// be refused. No password may appear in what any of the four processes
// printed.
//
// The real stack is a devstack of the test's own (two more JVMs for a
// quarter of a minute): the shared real backends of make test serve
// plaintext, for every other test.
func TestSecureStack(t *testing.T) {
	bins := map[string]string{}
	for _, b := range []string{"agent", "transfer", "livetail"} {
		bins[b] = binary(t, b)
	}
	t.Run(stack.Embedded, func(t *testing.T) { checkSecureStack(t, bins, within) })
	t.Run(stack.Real, func(t *testing.T) {
		stack.SkipReal(t)
		checkSecureStack(t, bins, realReadyWithin, "--backends", "real")
	})
}

func checkSecureStack(t *testing.T, bins map[string]string, ready time.Duration, extra ...string) {
	dir := t.TempDir()
	args := append([]string{"--secure", "--data-dir", filepath.Join(dir, "data"),
		"--etcd-addr", "127.0.0.1:0", "--kafka-addr", "127.0.0.1:0", "--es-addr", "127.0.0.1:0"}, extra...)
	start := time.Now()
	dev := proc.StartCmd(t, "devstack", exec.Command(binary(t, "devstack"), args...))
	dev.WaitFor(t, regexp.MustCompile(`^ready$`), ready)
	t.Logf("devstack --secure %s ready after %v", strings.Join(extra, " "), time.Since(start).Round(time.Millisecond))
	m := secureEnvLine.FindStringSubmatch(dev.Stdout())
	if m == nil {
		t.Fatalf("no secure.env line before ready:\n%s", dev.Stdout())
	}
	envFile := m[1]
	if fi, err := os.Stat(envFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v; want mode 0600", envFile, err)
	}
	env := sourceEnv(t, envFile)
	for _, name := range []string{"LOGPIPE_KAFKA_BROKERS", "LOGPIPE_KAFKA_SASL_PASSWORD", "LOGPIPE_ETCD_ENDPOINTS", "LOGPIPE_ETCD_PASSWORD",
		"LOGPIPE_ES_ADDRESSES", "LOGPIPE_ES_PASSWORD", "ETCDCTL_ENDPOINTS", "ETCDCTL_USER", "KCAT_CONFIG"} {
		if env[name] == "" {
			t.Errorf("secure.env sets no %s", name)
		}
	}
	for _, name := range []string{"LOGPIPE_ETCD_ENDPOINTS", "LOGPIPE_ES_ADDRESSES"} {
		if !strings.HasPrefix(env[name], "https://") {
			t.Errorf("%s=%s: want https://", name, env[name])
		}
	}

	// The agent's config, put with etcdctl from secure.env before the
	// agent starts.
	const agent = "secure-e2e"
	logDir := filepath.Join(dir, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	putConfig := func(jobs ...string) {
		var entries []string
		for _, job := range jobs {
			entries = append(entries, fmt.Sprintf(`{"path":%q,"job":%q,"from":"beginning"}`, filepath.Join(logDir, job+".log"), job))
		}
		if out, err := tool(env.list(), "etcdctl", "put", "/logpipe/agents/"+agent, "["+strings.Join(entries, ",")+"]"); err != nil {
			t.Fatalf("etcdctl put with secure.env: %v: %s", err, out)
		}
	}
	putConfig("secure-a")

	// The three binaries, from the environment alone.
	run := func(name string, args ...string) *proc.Process {
		cmd := securetest.Command(bins[name], env.list()...)
		cmd.Args = append(cmd.Args, args...)
		p := proc.StartCmd(t, name, cmd)
		return p
	}
	procs := []*proc.Process{dev,
		run("agent", "--name", agent, "--state-dir", filepath.Join(dir, "agent"), "--metrics-addr", "127.0.0.1:0"),
		run("transfer", "--metrics-addr", "127.0.0.1:0"),
		run("livetail", "--listen", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0"),
	}
	for _, p := range procs[1:] {
		waitReady(t, p.Name(), p.Addr(t, "metrics"))
	}
	viewer := procs[3].Addr(t, "http")

	ctx, cancel := context.WithCancel(context.Background())
	live := &tailClient{addr: viewer, job: "secure-a"}
	var wg sync.WaitGroup
	wg.Go(func() { live.run(ctx) })
	defer func() { cancel(); wg.Wait() }()

	const n = 200
	lines := make([]string, n)
	for i := range lines {
		lines[i] = fmt.Sprintf("secure line %03d mark%03d of %s", i, i, t.Name())
	}
	appendLines(t, filepath.Join(logDir, "secure-a.log"), lines)

	search := newSearchClient(t, env)
	indexed := func(job string, want int) func() error {
		return func() error {
			got, err := search.count(index, `{"query":{"term":{"job":"`+job+`"}}}`)
			if err == nil && got != want {
				err = fmt.Errorf("%d documents of job %s, want %d", got, job, want)
			}
			return err
		}
	}
	eventually(t, "every line indexed, searched over HTTPS as the file's user", indexed("secure-a", n))
	last := fmt.Sprintf("mark%03d", n-1)
	got, err := search.count(index, `{"query":{"match":{"message":"`+last+`"}}}`)
	if err != nil || got != 1 {
		t.Errorf("documents whose message holds %q: %d, %v; want 1", last, got, err)
	}
	eventually(t, "every line on the live WebSocket", func() error {
		got, _, _ := live.snapshot()
		if len(got) < n {
			return fmt.Errorf("%d lines of %d", len(got), n)
		}
		return nil
	})
	if got, dups, _ := live.snapshot(); dups != 0 || strings.Join(got[:n], "\n") != strings.Join(lines, "\n") {
		t.Errorf("the live client got %d lines (%d duplicates), not the %d written in order", len(got), dups, n)
	}

	// Hot reload: a second file, put with etcdctl while the agent runs.
	putConfig("secure-a", "secure-b")
	appendLines(t, filepath.Join(logDir, "secure-b.log"), lines[:10])
	eventually(t, "the lines of a file added with etcdctl indexed", indexed("secure-b", 10))

	t.Run("kcat", func(t *testing.T) {
		out, err := tool(env.list(), "kcat", "-F", env["KCAT_CONFIG"], "-L", "-t", "logs")
		if err != nil || !strings.Contains(out, `topic "logs" with`) {
			t.Errorf("kcat -F $KCAT_CONFIG -L: %v:\n%s", err, out)
		}
	})
	t.Run("plaintext kafka refused", func(t *testing.T) {
		cl, err := kgo.NewClient(kgo.SeedBrokers(env["LOGPIPE_KAFKA_BROKERS"]), kgo.RequestRetries(0))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer pcancel()
		if err := cl.Ping(pctx); err == nil {
			t.Error("a plaintext Kafka client was served")
		} else {
			t.Logf("plaintext client: %v", err)
		}
	})
	t.Run("etcd without certificate refused", func(t *testing.T) {
		out, err := tool(env.without("ETCDCTL_CERT", "ETCDCTL_KEY"), "etcdctl", "--command-timeout=5s", "get", "/logpipe/agents/"+agent)
		if err == nil {
			t.Errorf("etcdctl without a client certificate was served:\n%s", out)
		} else {
			t.Logf("etcdctl without a certificate: %v: %s", err, lastLine(out))
		}
	})
	t.Run("anonymous search refused", func(t *testing.T) {
		status, challenge, body, err := search.do(http.MethodGet, "/", "", true)
		if err != nil || status != http.StatusUnauthorized || !strings.HasPrefix(challenge, "Basic ") {
			t.Errorf("anonymous GET /: %d, WWW-Authenticate %q, %v: %s; want 401 and a Basic challenge", status, challenge, err, body)
		}
	})

	// No password in anything the four processes printed, shutdown
	// included.
	cancel()
	wg.Wait()
	for _, p := range procs[1:] {
		p.Stop(t)
	}
	dev.Stop(t)
	for _, p := range procs {
		out := p.Output()
		for _, secret := range env.secrets() {
			if strings.Contains(out, secret) {
				t.Errorf("%s printed a password of secure.env", p.Name())
			}
		}
	}
}

// lastLine is the last non-empty line of out.
func lastLine(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return lines[len(lines)-1]
}

// TestMakeRunSecure runs what make run SECURE=1 runs (devstack --all
// --secure, next to the service binaries) on embedded backends: it must
// name secure.env, print commands that use it instead of endpoints, move
// sample lines into the index (searched over HTTPS as the file's user) and
// to a WebSocket client, print no password, and leave neither its services
// nor the directory of secure.env behind when Ctrl-C stops it. The real
// backends' variant differs only in devstack's backends, which
// TestSecureStack covers on both kinds.
func TestMakeRunSecure(t *testing.T) {
	for _, b := range []string{"agent", "transfer", "livetail"} {
		binary(t, b)
	}
	args := []string{"--all", "--secure", "--sample-interval", "50ms"}
	for _, f := range []string{"etcd-addr", "kafka-addr", "es-addr", "viewer-addr", "agent-metrics-addr", "transfer-metrics-addr", "livetail-metrics-addr"} {
		args = append(args, "--"+f, "127.0.0.1:0")
	}
	var envFile string
	var secrets []string
	// Registered first, so it runs last: after runDevstackAll's cleanup has
	// stopped devstack.
	t.Cleanup(func() {
		if envFile == "" {
			return
		}
		if _, err := os.Stat(filepath.Dir(envFile)); !os.IsNotExist(err) {
			t.Errorf("%s still there after devstack --all --secure exited (%v)", filepath.Dir(envFile), err)
		}
	})
	p := runDevstackAll(t, args, within)
	m := secureEnvLine.FindStringSubmatch(p.Stdout())
	if m == nil {
		t.Fatalf("no secure.env line:\n%s", p.Stdout())
	}
	envFile = m[1]
	env := sourceEnv(t, envFile)
	secrets = env.secrets()
	out := p.Stdout()
	for _, want := range []string{
		"  . " + envFile + "\n",
		"  etcdctl put /logpipe/agents/devstack '",
		`curl -s --cacert "$LOGPIPE_ES_CA_FILE" -u "$LOGPIPE_ES_USERNAME:$LOGPIPE_ES_PASSWORD" '` + env["LOGPIPE_ES_ADDRESSES"] + "/logs-logpipe-default/_search",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("make run SECURE=1's printout lacks %q:\n%s", want, out)
		}
	}
	search := newSearchClient(t, env)
	eventually(t, "sample lines indexed", func() error {
		for _, job := range []string{"web", "checkout", "worker"} {
			n, err := search.count(index, `{"query":{"term":{"job":"`+job+`"}}}`)
			if err != nil {
				return err
			}
			if n == 0 {
				return fmt.Errorf("no %s documents yet", job)
			}
		}
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	client := &tailClient{addr: p.Addr(t, "viewer"), job: "web"}
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
	if out, err := tool(env.list(), "etcdctl", "get", "--print-value-only", "/logpipe/status/agents/devstack"); err != nil || !strings.Contains(out, `"config_revision"`) {
		t.Errorf("etcdctl get of the agent's status with secure.env: %v: %s", err, out)
	}
	for _, secret := range secrets {
		if strings.Contains(p.Output(), secret) {
			t.Errorf("devstack --all --secure or a service printed a password of secure.env")
		}
	}
}
