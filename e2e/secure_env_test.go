package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// secureEnv is the environment a shell gets from `. secure.env`, by
// variable name: what the binaries and the tools are given.
type secureEnv map[string]string

// sourceEnv loads path with sh's `.` in an otherwise empty environment and
// returns the variables it set: a file that sh cannot load fails here.
func sourceEnv(tb testing.TB, path string) secureEnv {
	tb.Helper()
	cmd := exec.Command("sh", "-c", `. "$1" && env -0`, "sh", path)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("sh: . %s: %v", path, err)
	}
	env := secureEnv{}
	for _, kv := range strings.Split(string(out), "\x00") {
		name, value, ok := strings.Cut(kv, "=")
		if ok && name != "PATH" && name != "PWD" && name != "SHLVL" && name != "_" {
			env[name] = value
		}
	}
	return env
}

// list is the environment as NAME=value lines, sorted by nothing.
func (e secureEnv) list() []string {
	out := make([]string, 0, len(e))
	for k, v := range e {
		out = append(out, k+"="+v)
	}
	return out
}

// without is the environment less the names.
func (e secureEnv) without(names ...string) []string {
	var out []string
	for _, kv := range e.list() {
		name, _, _ := strings.Cut(kv, "=")
		drop := false
		for _, n := range names {
			drop = drop || n == name
		}
		if !drop {
			out = append(out, kv)
		}
	}
	return out
}

// secrets are the passwords the file holds.
func (e secureEnv) secrets() []string {
	var out []string
	for k, v := range e {
		if strings.HasSuffix(k, "_PASSWORD") {
			out = append(out, v)
		}
	}
	return out
}

// tool runs a command-line tool (etcdctl, kcat) with the environment of
// this process less its LOGPIPE_*, ETCDCTL_* and KCAT_* variables, plus
// env, and returns its combined output and error.
func tool(env []string, name string, args ...string) (string, error) {
	path, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found: `make test` installs it", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "LOGPIPE_") && !strings.HasPrefix(e, "ETCDCTL_") && !strings.HasPrefix(e, "KCAT_") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// searchClient talks to the search endpoint of secure.env: HTTPS with its
// CA, and with its user unless anonymous.
type searchClient struct {
	url, user, password string
	http                *http.Client
}

func newSearchClient(tb testing.TB, env secureEnv) *searchClient {
	tb.Helper()
	pem, err := os.ReadFile(env["LOGPIPE_ES_CA_FILE"])
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		tb.Fatalf("no certificate in %s", env["LOGPIPE_ES_CA_FILE"])
	}
	return &searchClient{
		url: env["LOGPIPE_ES_ADDRESSES"], user: env["LOGPIPE_ES_USERNAME"], password: env["LOGPIPE_ES_PASSWORD"],
		http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}},
	}
}

// do sends a request, with the user's credentials unless anonymous, and
// returns the status, the WWW-Authenticate header and the body.
func (c *searchClient) do(method, path, body string, anonymous bool) (int, string, []byte, error) {
	req, err := http.NewRequest(method, c.url+path, strings.NewReader(body))
	if err != nil {
		return 0, "", nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if !anonymous {
		req.SetBasicAuth(c.user, c.password)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate"), b, err
}

// count refreshes the index and counts its documents that match query.
func (c *searchClient) count(index, query string) (int, error) {
	if status, _, b, err := c.do(http.MethodPost, "/"+index+"/_refresh", "", false); err != nil || status != http.StatusOK {
		return 0, fmt.Errorf("refresh: %d %s %v", status, b, err)
	}
	status, _, b, err := c.do(http.MethodPost, "/"+index+"/_count", query, false)
	if err != nil {
		return 0, err
	}
	if status != http.StatusOK {
		return 0, errors.New(string(b))
	}
	var n struct{ Count int }
	if err := json.Unmarshal(b, &n); err != nil {
		return 0, err
	}
	return n.Count, nil
}
