package main

import (
	"context"
	"encoding/json"
	"errors"
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
// elsewhere: Debian's etcdctl, kcat and curl. TestBackendsReal runs the
// same checks on devstack --backends real.
func TestExternalClients(t *testing.T) {
	t.Parallel()
	c := needClients(t)
	p := startBinary(t)
	c.check(t, p, esRoot{distribution: "", number: "8."})

	if code := p.Stop(t); code != 0 {
		t.Errorf("exit %d after SIGTERM, want 0", code)
	}
}

// clients are the paths of the Debian tools that a devstack's users drive
// it with.
type clients struct {
	etcdctl, kcat, curl string
}

// needClients fails the test when one of the tools is missing, before the
// test starts anything.
func needClients(tb testing.TB) clients {
	tb.Helper()
	return clients{
		etcdctl: proc.Tool(tb, "etcdctl", "etcd-client"),
		kcat:    proc.Tool(tb, "kcat", "kcat"),
		curl:    proc.Tool(tb, "curl", "curl"),
	}
}

// esRoot is what GET / on the Elasticsearch endpoint says of the engine
// behind it.
type esRoot struct {
	distribution string // version.distribution: "opensearch", or "" for Elasticsearch (and esfake), which leave it out
	number       string // the start of version.number
}

// check runs each tool against the devstack p, whichever backends it runs:
// etcdctl puts, gets and watches, kcat produces, consumes and lists the
// logs topic, and curl shows the Elasticsearch endpoint's product header
// and root document.
func (c clients) check(t *testing.T, p *devstack, root esRoot) {
	t.Run("etcdctl", func(t *testing.T) { testEtcdctl(t, c.etcdctl, "http://"+p.etcd) })
	t.Run("kcat", func(t *testing.T) { testKcat(t, c.kcat, p.kafka) })
	t.Run("curl", func(t *testing.T) { testCurl(t, c.curl, "http://"+p.es, root) })
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
	return proc.Output(tb, cmd, stdin)
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

func testCurl(t *testing.T, curl, url string, want esRoot) {
	out := tool(t, "", curl, "-sS", "-i", url+"/")
	head, body, ok := strings.Cut(strings.ReplaceAll(out, "\r\n", "\n"), "\n\n")
	if !ok || !strings.HasPrefix(head, "HTTP/1.1 200 ") {
		t.Fatalf("curl -i %s/: %q, want 200 OK with a body", url, out)
	}
	product := ""
	for _, line := range strings.Split(head, "\n")[1:] {
		if name, value, ok := strings.Cut(line, ":"); ok && strings.EqualFold(name, "X-Elastic-Product") {
			product = strings.TrimSpace(value)
		}
	}
	if product != "Elasticsearch" {
		t.Errorf("curl -i %s/: X-Elastic-Product %q, want Elasticsearch (the Go client refuses a server without it); headers:\n%s", url, product, head)
	}
	var doc struct {
		Version struct {
			Distribution string `json:"distribution"`
			Number       string `json:"number"`
		} `json:"version"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatalf("curl %s/: the body is not JSON: %v; %q", url, err, body)
	}
	if doc.Version.Distribution != want.distribution || !strings.HasPrefix(doc.Version.Number, want.number) {
		t.Errorf("curl %s/: version.distribution %q, version.number %q; want %q and %s...",
			url, doc.Version.Distribution, doc.Version.Number, want.distribution, want.number)
	}
}
