package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/logpipe/logpipe/common/collect"
	"github.com/logpipe/logpipe/devstack/stack"
)

// The init scripts run in small images (busybox sh, curl); the tests run
// them with this machine's sh, curl, base64 and tr.
func needTools(tb testing.TB, tools ...string) {
	tb.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			tb.Fatalf("%s is not installed: `make test` installs it (Debian package %s)", tool, debianPackage(tool))
		}
	}
}

func debianPackage(tool string) string {
	switch tool {
	case "curl":
		return "curl"
	case "sh":
		return "dash"
	case "openssl":
		return "openssl"
	}
	return "coreutils"
}

// runScript runs a script from configs/ with sh and the given environment
// (added to a minimal one) and returns its standard output.
func runScript(tb testing.TB, script string, env ...string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", repoFile(tb, "configs", script))
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + tb.TempDir()}, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		tb.Fatalf("sh configs/%s: %v\nstdout:\n%s\nstderr:\n%s", script, err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// TestInitEtcdScript runs configs/init/etcd.sh against a real etcd server:
// it puts the example config when the key is absent and keeps a config that
// is already there.
func TestInitEtcdScript(t *testing.T) {
	needTools(t, "sh", "curl", "base64", "tr")
	s := stack.New(t, stack.Options{Without: []string{stack.Kafka, stack.ES}})
	cli, err := clientv3.New(clientv3.Config{Endpoints: s.EtcdEndpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	file := repoFile(t, "configs", "agent-config.json")
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"ETCD_URL=" + s.EtcdEndpoints()[0], "AGENT_NAME=node-7", "CONFIG_FILE=" + file}
	const key = "/logpipe/agents/node-7"

	out := runScript(t, "init/etcd.sh", env...)
	if !strings.Contains(out, "put ") {
		t.Errorf("first run says %q, want that it put the config", out)
	}
	resp, err := cli.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || !bytes.Equal(resp.Kvs[0].Value, want) {
		t.Fatalf("after the first run %s = %v, want the contents of configs/agent-config.json", key, resp.Kvs)
	}
	if _, err := collect.Parse(resp.Kvs[0].Value); err != nil {
		t.Errorf("the config in etcd does not parse: %v", err)
	}

	changed := `[{"path":"/var/log/app/*.log"}]`
	if _, err := cli.Put(ctx, key, changed); err != nil {
		t.Fatal(err)
	}
	out = runScript(t, "init/etcd.sh", env...)
	if !strings.Contains(out, "kept") {
		t.Errorf("second run says %q, want that it kept the config", out)
	}
	resp, err = cli.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != changed {
		t.Errorf("after the second run %s = %v, want the operator's config %s kept", key, resp.Kvs, changed)
	}
}

// TestInitKibanaScript runs configs/init/kibana.sh against a stand-in for
// Kibana's data views API and checks the request against the API's
// documented shape.
func TestInitKibanaScript(t *testing.T) {
	needTools(t, "sh", "curl")
	var (
		mu   sync.Mutex
		reqs []*http.Request
		body []byte
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		reqs, body = append(reqs, r), b
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"data_view":{"id":"logpipe"}}`)
	}))
	defer srv.Close()

	runScript(t, "init/kibana.sh", "KIBANA_URL="+srv.URL, "DATA_VIEW=logs-logpipe-default")

	mu.Lock()
	defer mu.Unlock()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if r.Method != http.MethodPost || r.URL.Path != "/api/data_views/data_view" {
		t.Errorf("request %s %s, want POST /api/data_views/data_view", r.Method, r.URL.Path)
	}
	if r.Header.Get("kbn-xsrf") == "" {
		t.Error("no kbn-xsrf header: Kibana refuses the request without it")
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var req struct {
		Override bool `json:"override"`
		DataView struct {
			Title         string `json:"title"`
			TimeFieldName string `json:"timeFieldName"`
			AllowNoIndex  bool   `json:"allowNoIndex"`
		} `json:"data_view"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	if req.DataView.Title != "logs-logpipe-default" || req.DataView.TimeFieldName != "@timestamp" {
		t.Errorf("data view %+v, want title logs-logpipe-default and time field @timestamp", req.DataView)
	}
	if !req.Override || !req.DataView.AllowNoIndex {
		t.Errorf("override %v, allowNoIndex %v: want both, so the script can run again and before the first document", req.Override, req.DataView.AllowNoIndex)
	}
}

// TestInitTopicsScript runs configs/init/topics.sh with a kafka-topics.sh
// that records its arguments.
func TestInitTopicsScript(t *testing.T) {
	needTools(t, "sh")
	bin := t.TempDir()
	record := filepath.Join(bin, "calls")
	fake := "#!/bin/sh\necho \"$*\" >>" + record + "\n"
	if err := os.WriteFile(filepath.Join(bin, "kafka-topics.sh"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	p := loadProject(t)
	initTopics := service(t, p, "init-topics")
	var env []string
	for _, k := range []string{"BOOTSTRAP", "TOPICS", "PARTITIONS"} {
		v, ok := initEnv(initTopics.Environment, k)
		if !ok {
			t.Fatalf("init-topics does not set %s", k)
		}
		env = append(env, k+"="+v)
	}
	runScript(t, "init/topics.sh", append(env, "KAFKA_BIN="+bin)...)

	calls, err := os.ReadFile(record)
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{"logs", "logs.dlq"} {
		want := "--bootstrap-server kafka:19092 --create --if-not-exists --topic " + topic + " --partitions 6 --replication-factor 1"
		if !strings.Contains(string(calls), want+"\n") {
			t.Errorf("no call %q in:\n%s", want, calls)
		}
	}
}

func initEnv(m map[string]*string, k string) (string, bool) {
	v, ok := m[k]
	if !ok || v == nil {
		return "", false
	}
	return *v, true
}

// TestSampleWriter runs configs/sample-writer.sh and checks its files against
// the example collect config: the files it writes are the ones the config
// tails, the JSON lines are JSON, and every line of a stack trace continues
// the event by the config's multiline pattern.
func TestSampleWriter(t *testing.T) {
	needTools(t, "sh")
	dir := t.TempDir()
	runScript(t, "sample-writer.sh", "SAMPLE_DIR="+dir, "SAMPLE_INTERVAL=0", "SAMPLE_ROUNDS=60", "SAMPLE_SEED=1")

	cfg, err := collect.Parse(readRepoFile(t, "configs", "agent-config.json"))
	if err != nil {
		t.Fatal(err)
	}
	sampleDir, _ := initEnv(service(t, loadProject(t), "sample-writer").Environment, "SAMPLE_DIR")
	var multiline *collect.Multiline
	tailed := 0
	for _, e := range cfg {
		if path.Dir(e.Path) != sampleDir {
			continue
		}
		tailed++
		if _, err := os.Stat(filepath.Join(dir, path.Base(e.Path))); err != nil {
			t.Errorf("the config tails %s, which the sample writer does not write: %v", e.Path, err)
		}
		if e.Multiline != nil {
			multiline = e.Multiline
		}
	}
	if tailed == 0 {
		t.Fatalf("the config tails nothing in %s, where the sample writer writes", sampleDir)
	}

	access := regexp.MustCompile(`^\S+ - - \[[^\]]+\] "(GET|POST|PUT|DELETE) \S+ HTTP/1\.1" \d{3} \d+ "-" "[^"]*"$`)
	for _, line := range lines(t, filepath.Join(dir, "access.log")) {
		if !access.MatchString(line) {
			t.Errorf("access.log line is not in the combined log format: %q", line)
		}
	}
	for _, line := range lines(t, filepath.Join(dir, "api.jsonl")) {
		var v struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if err := json.Unmarshal([]byte(line), &v); err != nil || v.Level == "" || v.Msg == "" {
			t.Errorf("api.jsonl line is not a JSON object with level and msg: %q (%v)", line, err)
		}
	}

	if multiline == nil {
		t.Fatal("the config groups no sample file's lines (multiline)")
	}
	re := regexp.MustCompile(multiline.Pattern)
	start := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (INFO|ERROR) `)
	var continued int
	for _, line := range lines(t, filepath.Join(dir, "worker.log")) {
		switch m := re.MatchString(line) != multiline.Negate; {
		case start.MatchString(line) && m:
			t.Errorf("worker.log: the first line of an event matches the multiline pattern %q: %q", multiline.Pattern, line)
		case !start.MatchString(line) && !m:
			t.Errorf("worker.log: a stack trace line does not match the multiline pattern %q: %q", multiline.Pattern, line)
		case m:
			continued++
		}
	}
	if continued == 0 {
		t.Error("worker.log has no stack trace")
	}
}

func lines(tb testing.TB, file string) []string {
	tb.Helper()
	f, err := os.Open(file)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	if len(out) == 0 {
		tb.Errorf("%s is empty", file)
	}
	return out
}
