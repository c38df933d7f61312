package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/logpipe/logpipe/devstack/proc"
)

// binary builds one of the logpipe binaries (agent, transfer, livetail,
// devstack) once for every test; they land side by side, as make build's.
func binary(tb testing.TB, name string) string {
	tb.Helper()
	return proc.Build(tb, "github.com/logpipe/logpipe/"+name)
}

// within bounds every wait for the pipeline to do something: far more than
// it takes on an idle machine, so that a loaded one does not fail a test.
// No test measures speed with it.
const within = 3 * time.Minute

// waitReady polls http://addr/readyz until it answers 200.
func waitReady(tb testing.TB, name, addr string) {
	tb.Helper()
	deadline := time.Now().Add(within)
	var last string
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = resp.Status + " " + string(b)
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	tb.Fatalf("%s not ready at %s within %v: %s", name, addr, within, last)
}

// eventually polls cond until it returns nil or within passes.
func eventually(tb testing.TB, what string, cond func() error) {
	tb.Helper()
	deadline := time.Now().Add(within)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	tb.Fatalf("%s: not within %v: %v", what, within, err)
}

// appendLines appends lines to path, one write per line, as a logger would.
func appendLines(tb testing.TB, path string, lines []string) {
	tb.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	for _, l := range lines {
		w.WriteString(l + "\n")
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
}

// etcdctl runs Debian's etcdctl, a client nobody here wrote.
func etcdctl(tb testing.TB, endpoints string, args ...string) string {
	tb.Helper()
	path, err := exec.LookPath("etcdctl")
	if err != nil {
		tb.Fatal("etcdctl not found: `make test` installs it (Debian package etcd-client)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, append([]string{"--endpoints=" + endpoints}, args...)...)
	cmd.Env = append(os.Environ(), "ETCDCTL_API=3")
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("etcdctl %v: %v: %s", args, err, out)
	}
	return string(out)
}

// esRefresh makes every document of index searchable (the real engine does
// it once a second by itself, esfake at once).
func esRefresh(esURL, index string) error {
	var body struct{}
	return esPost(esURL+"/"+index+"/_refresh", "", &body)
}

// esCount is GET <index>/_count with an optional query.
func esCount(esURL, index, query string) (int, error) {
	var body struct {
		Count int `json:"count"`
	}
	if err := esPost(esURL+"/"+index+"/_count", query, &body); err != nil {
		return 0, err
	}
	return body.Count, nil
}

// esMessages returns the message of every document of job, in log.offset order.
func esMessages(esURL, index, job string) ([]string, error) {
	q := `{"query":{"term":{"job":"` + job + `"}},"size":10000,"sort":[{"log.offset":"asc"}]}`
	var body struct {
		Hits struct {
			Hits []struct {
				ID     string `json:"_id"`
				Source struct {
					Message string `json:"message"`
				} `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := esPost(esURL+"/"+index+"/_search", q, &body); err != nil {
		return nil, err
	}
	out := make([]string, len(body.Hits.Hits))
	for i, h := range body.Hits.Hits {
		out[i] = h.Source.Message
	}
	return out, nil
}

func esPost(url, body string, into any) error {
	if body == "" {
		body = "{}"
	}
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status + ": " + string(b))
	}
	return json.Unmarshal(b, into)
}
