package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/logpipe/logpipe/agent/internal/testkit"
	"github.com/logpipe/logpipe/common/keys"
	"github.com/logpipe/logpipe/devstack/proc"
	"github.com/logpipe/logpipe/devstack/securetest"
	"github.com/logpipe/logpipe/devstack/stack"
)

// readyz is the status code and body of the agent's /readyz.
func readyz(t testing.TB, addr string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body))
}

// waitReadyz waits until /readyz answers code with a body holding every
// want, and returns the body.
func waitReadyz(t testing.TB, addr, what string, code int, want ...string) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got, body := readyz(t, addr)
		ok := got == code
		for _, w := range want {
			ok = ok && strings.Contains(body, w)
		}
		if ok {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never showed %s; last: %d %s", what, got, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestKafkaCredentialGoesBad: when the broker starts refusing the agent's
// user while it runs, the agent retries, /readyz and the status key say
// that authentication fails and what to check, and once the broker takes
// the user again the lines written meanwhile arrive and the agent is
// ready again.
func TestKafkaCredentialGoesBad(t *testing.T) {
	t.Parallel()
	w := newWorldOn(t, stack.Options{Without: []string{stack.Kafka}})
	k := securetest.StartKafka(t, securetest.NewPKI(t, "logpipe test CA"), secret, 1, "logs")
	reader := testkit.NewReader(t, []string{k.Addr}, "logs", k.ClientOpts()...)
	log := w.path("bad.log")
	if err := os.WriteFile(log, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	w.put("/logpipe/agents/bad", configJSON(entryJSON(log, `"job":"bad"`)))
	p := proc.StartCmd(t, "agent", securetest.Command(agentBinary(t), w.secureEnv(k.Env(), "bad")...))
	metrics := p.Addr(t, "metrics")
	testkit.Append(t, log, testkit.Numbered("bad", 0, 10, 0)...)
	reader.WaitFor(within, "the first lines", func(recs []testkit.Record) bool { _, n := testkit.Count(recs, "bad"); return n >= 10 })
	waitReadyz(t, metrics, "ready", http.StatusOK)

	k.RefuseAuth(true)
	k.Cut()
	testkit.Append(t, log, testkit.Numbered("bad", 10, 20, 0)...)
	want := []string{"kafka broker " + k.Addr, `SASL SCRAM-SHA-512 as user "logpipe"`, "authentication failed", "check --kafka-sasl-username"}
	body := waitReadyz(t, metrics, "the refused credential", http.StatusServiceUnavailable, want...)
	t.Logf("/readyz while refused: %s", body)
	p.WaitFor(t, "authentication failed", within) // logged once
	st := w.waitStatus("bad", "the refused credential", func(st statusView) bool {
		return strings.Contains(strings.Join(st.Errors, "\n"), "authentication failed")
	})
	statusJSON, _ := json.Marshal(st.Errors)
	t.Logf("status key errors while refused: %s", statusJSON)

	k.RefuseAuth(false)
	reader.WaitFor(within, "the lines written while refused", func(recs []testkit.Record) bool { _, n := testkit.Count(recs, "bad"); return n >= 20 })
	waitReadyz(t, metrics, "ready again", http.StatusOK)
	p.WaitFor(t, "records get through to Kafka again", within)
	w.waitStatus("bad", "no errors again", func(st statusView) bool { return len(st.Errors) == 0 })
	if out := p.Output() + body + string(statusJSON); strings.Contains(out, secret) {
		t.Fatalf("the password is in the agent's output, /readyz or status key:\n%s", out)
	}
}

// TestEtcdCredentialGoesBad: when the agent's etcd password is changed
// while it runs (which invalidates its token), /readyz and the logs say
// that etcd refuses the user and what to check; once the password is set
// back, the agent is ready again and applies a new config revision.
func TestEtcdCredentialGoesBad(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	e := securetest.StartEtcd(t, securetest.NewPKI(t, "logpipe test CA"), "root-pass")
	e.AddAgent(t, "sec", etcdSecret)
	put := func(value string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), within)
		defer cancel()
		if _, err := e.Root.Put(ctx, keys.AgentConfig("sec"), value); err != nil {
			t.Fatal(err)
		}
	}
	password := func(pw string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), within)
		defer cancel()
		if _, err := e.Root.UserChangePassword(ctx, "agent-sec", pw); err != nil {
			t.Fatal(err)
		}
	}
	a, b := w.path("a.log"), w.path("b.log")
	testkit.Append(t, a, testkit.Numbered("a", 0, 10, 0)...)
	testkit.Append(t, b, testkit.Numbered("b", 0, 10, 0)...)
	put(configJSON(entryJSON(a, `"job":"a"`)))
	p := proc.StartCmd(t, "agent", securetest.Command(agentBinary(t), w.etcdEnv(e.AgentEnv("sec", etcdSecret), "sec")...))
	metrics := p.Addr(t, "metrics")
	w.waitLines("a", 10, within)
	waitReadyz(t, metrics, "ready", http.StatusOK)

	password("changed-" + etcdSecret)
	want := []string{"etcd " + e.Endpoint, `user "agent-sec"`, "authentication failed", "check --etcd-username and the password (LOGPIPE_ETCD_PASSWORD)"}
	body := waitReadyz(t, metrics, "etcd refusing the user", http.StatusServiceUnavailable, want...)
	t.Logf("/readyz while refused: %s", body)
	p.WaitFor(t, `authentication failed`, within)

	password(etcdSecret)
	waitReadyz(t, metrics, "ready again", http.StatusOK)
	put(configJSON(entryJSON(a, `"job":"a"`), entryJSON(b, `"job":"b"`)))
	w.waitLines("b", 10, within)
	if out := p.Output() + body; strings.Contains(out, etcdSecret) {
		t.Fatalf("the password is in the agent's output or /readyz:\n%s", out)
	}
}
