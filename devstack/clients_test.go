package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/logpipe/logpipe/devstack/proc"
)

// TestExternalClients drives the devstack binary with clients written
// elsewhere: Debian's etcdctl and kcat, and plain HTTP.
func TestExternalClients(t *testing.T) {
	t.Parallel()
	etcdctl := needTool(t, "etcdctl", "etcd-client")
	kcat := needTool(t, "kcat", "kcat")
	p := startBinary(t)

	t.Run("etcdctl", func(t *testing.T) { testEtcdctl(t, etcdctl, "http://"+p.etcd) })
	t.Run("kcat", func(t *testing.T) { testKcat(t, kcat, p.kafka) })
	t.Run("http", func(t *testing.T) { testESRoot(t, "http://"+p.es) })

	if code := p.Stop(t); code != 0 {
		t.Errorf("exit %d after SIGTERM, want 0", code)
	}
}

func toolContext(tb testing.TB) context.Context {
	// Generous: etcdctl and kcat answer at once, but the machine may be loaded.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	tb.Cleanup(cancel)
	return ctx
}

// tool runs a command to its end and returns its stdout.
func tool(tb testing.TB, stdin string, name string, args ...string) string {
	tb.Helper()
	cmd := exec.CommandContext(toolContext(tb), name, args...)
	cmd.Env = append(os.Environ(), "ETCDCTL_API=3")
	cmd.Stdin = strings.NewReader(stdin)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("%s %s: %v; stderr %q", name, strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

func testEtcdctl(t *testing.T, etcdctl, endpoint string) {
	ep := "--endpoints=" + endpoint
	if out := tool(t, "", etcdctl, ep, "put", "/logpipe/agents/web-1", `[{"path":"./xx.log","topic":"web_log"}]`); strings.TrimSpace(out) != "OK" {
		t.Fatalf("put: %q", out)
	}
	if out := tool(t, "", etcdctl, ep, "get", "/logpipe/agents/web-1"); out != "/logpipe/agents/web-1\n[{\"path\":\"./xx.log\",\"topic\":\"web_log\"}]\n" {
		t.Fatalf("get: %q", out)
	}

	// A watch in the background sees a put made after it started. The
	// put is repeated until the watch shows it, since nothing tells when
	// the watch is in place.
	watch := exec.Command(etcdctl, ep, "watch", "--prefix", "/logpipe/status/")
	watch.Env = append(os.Environ(), "ETCDCTL_API=3")
	w := proc.StartCmd(t, "etcdctl watch", watch)
	value := regexp.MustCompile(`^v\d+$`) // the value line of a PUT event
	deadline := time.Now().Add(time.Minute)
	for i := 0; ; i++ {
		tool(t, "", etcdctl, ep, "put", "/logpipe/status/agents/web-1", "v"+strconv.Itoa(i))
		if _, err := w.Await(value, 200*time.Millisecond); err == nil {
			return
		} else if errors.Is(err, proc.ErrExited) || time.Now().After(deadline) {
			t.Fatalf("etcdctl watch: no event: %v", err)
		}
	}
}

func testKcat(t *testing.T, kcat, broker string) {
	lines := "first line\nsecond line\nthird line\n"
	tool(t, lines, kcat, "-b", broker, "-P", "-t", "logs", "-p", "0")
	got := tool(t, "", kcat, "-q", "-b", broker, "-C", "-t", "logs", "-p", "0", "-o", "beginning", "-e")
	if got != lines {
		t.Fatalf("kcat consumed %q, want %q", got, lines)
	}
	// The topic has the advertised partitions.
	meta := tool(t, "", kcat, "-b", broker, "-L", "-t", "logs", "-J")
	var md struct {
		Topics []struct {
			Topic      string `json:"topic"`
			Partitions []any  `json:"partitions"`
		} `json:"topics"`
	}
	if err := json.Unmarshal([]byte(meta), &md); err != nil || len(md.Topics) != 1 || len(md.Topics[0].Partitions) != 6 {
		t.Fatalf("kcat -L: %q (%v), want topic logs with 6 partitions", meta, err)
	}
}

func testESRoot(t *testing.T, url string) {
	ctx := toolContext(t)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /: %v", err)
	}
	defer resp.Body.Close()
	var root struct {
		Version struct {
			Number string `json:"number"`
		} `json:"version"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&root); err != nil {
		t.Fatalf("GET /: %v", err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Elastic-Product") != "Elasticsearch" || !strings.HasPrefix(root.Version.Number, "8.") {
		t.Fatalf("GET /: %s, X-Elastic-Product %q, version %q", resp.Status, resp.Header.Get("X-Elastic-Product"), root.Version.Number)
	}
	http.DefaultClient.CloseIdleConnections()
}
