package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/logpipe/logpipe/agent/internal/testkit"
	"github.com/logpipe/logpipe/common/keys"
	"github.com/logpipe/logpipe/devstack/proc"
	"github.com/logpipe/logpipe/devstack/securetest"
	"github.com/logpipe/logpipe/devstack/stack"
)

// secret is the SASL password of the secured Kafka; no output may hold it.
const secret = "s3cret-kafka-pass-7f2c"

// secureEnv is the environment of an agent named name that reaches the
// plaintext etcd of w and Kafka as kafkaEnv says.
func (w *world) secureEnv(kafkaEnv []string, name string) []string {
	return append(kafkaEnv,
		"LOGPIPE_NAME="+name,
		"LOGPIPE_ETCD_ENDPOINTS="+strings.Join(w.stack.EtcdEndpoints(), ","),
		"LOGPIPE_KAFKA_TOPIC=logs",
		"LOGPIPE_STATE_DIR="+w.state,
		"LOGPIPE_METRICS_ADDR=127.0.0.1:0",
		"LOGPIPE_LOG_FORMAT=json",
		"LOGPIPE_SCAN_INTERVAL=200ms",
		"LOGPIPE_POLL_INTERVAL=50ms",
		"LOGPIPE_STATUS_INTERVAL=200ms",
	)
}

// TestSecuredKafka runs the agent, configured from the environment alone,
// against a Kafka that serves only SASL_SSL with SCRAM-SHA-512: it carries
// lines, and never prints the password.
func TestSecuredKafka(t *testing.T) {
	t.Parallel()
	w := newWorldOn(t, stack.Options{Without: []string{stack.Kafka}})
	k := securetest.StartKafka(t, securetest.NewPKI(t, "logpipe test CA"), secret, 3, "logs")
	reader := testkit.NewReader(t, []string{k.Addr}, "logs", k.ClientOpts()...)

	log := w.path("app.log")
	if err := os.WriteFile(log, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	w.put("/logpipe/agents/sec", configJSON(entryJSON(log, `"job":"sec"`)))
	p := proc.StartCmd(t, "agent", securetest.Command(agentBinary(t), w.secureEnv(k.Env(), "sec")...))
	p.Addr(t, "metrics")
	testkit.Append(t, log, testkit.Numbered("sec", 0, 50, 0)...)
	reader.WaitFor(within, "50 lines over SASL_SSL", func(recs []testkit.Record) bool {
		_, n := testkit.Count(recs, "sec")
		return n >= 50
	})
	if out := p.Output(); strings.Contains(out, secret) {
		t.Fatalf("the password is in the agent's output:\n%s", out)
	}
}

// TestSecuredKafkaRefusals: a wrong password, an untrusted CA, plaintext
// against the TLS port and TLS against a plaintext one each end the agent
// at start with exit code 1 and one line that says what was tried and what
// to check, without the password.
func TestSecuredKafkaRefusals(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	k := securetest.StartKafka(t, securetest.NewPKI(t, "logpipe test CA"), secret, 1, "logs")
	for _, r := range k.Refusals(t, w.stack.KafkaAddrs()[0]) {
		t.Run(r.Name, func(t *testing.T) {
			env := w.secureEnv(r.Env, "refused")
			p := proc.StartCmd(t, "agent", securetest.Command(agentBinary(t), env...))
			if code := p.Wait(t, time.Minute); code != 1 {
				t.Fatalf("exit code %d, want 1", code)
			}
			securetest.CheckRefusal(t, p.Output(), "agent | agent: ", r.Want, secret)
		})
	}
}

// etcdSecret is the agent's etcd password; no output may hold it.
const etcdSecret = "s3cret-etcd-pass-d3a9"

// etcdEnv is the environment of an agent named name that reaches the
// plaintext Kafka of w and the secured etcd as etcdEnv says.
func (w *world) etcdEnv(etcdEnv []string, name string) []string {
	return append(etcdEnv,
		"LOGPIPE_NAME="+name,
		"LOGPIPE_KAFKA_BROKERS="+strings.Join(w.stack.KafkaAddrs(), ","),
		"LOGPIPE_KAFKA_TOPIC="+w.topic,
		"LOGPIPE_STATE_DIR="+w.state,
		"LOGPIPE_METRICS_ADDR=127.0.0.1:0",
		"LOGPIPE_LOG_FORMAT=json",
		"LOGPIPE_SCAN_INTERVAL=200ms",
		"LOGPIPE_POLL_INTERVAL=50ms",
		"LOGPIPE_STATUS_INTERVAL=200ms",
	)
}

// TestSecuredEtcd runs the agent against an etcd that serves TLS, requires
// a client certificate and has auth on, as a user whose role may only read
// its config key and write its status key, with the password in a file:
// the agent applies its config, reloads it, keeps its status with a lease,
// and never prints the password.
func TestSecuredEtcd(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	e := securetest.StartEtcd(t, securetest.NewPKI(t, "logpipe test CA"), "root-pass")
	e.AddAgent(t, "sec", etcdSecret)
	put := func(value string) int64 {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), within)
		defer cancel()
		resp, err := e.Root.Put(ctx, keys.AgentConfig("sec"), value)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Header.Revision
	}
	a, b := w.path("a.log"), w.path("b.log")
	testkit.Append(t, a, testkit.Numbered("a", 0, 20, 0)...)
	testkit.Append(t, b, testkit.Numbered("b", 0, 20, 0)...)
	put(configJSON(entryJSON(a, `"job":"a"`)))

	// The password comes from a file, as a mounted secret.
	env := securetest.SecretsInFiles(t, e.AgentEnv("sec", etcdSecret), "LOGPIPE_ETCD_PASSWORD")
	p := proc.StartCmd(t, "agent", securetest.Command(agentBinary(t), w.etcdEnv(env, "sec")...))
	w.waitLines("a", 20, within)
	rev := put(configJSON(entryJSON(a, `"job":"a"`), entryJSON(b, `"job":"b"`)))
	w.waitLines("b", 20, within)

	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), within)
		resp, err := e.Root.Get(ctx, keys.AgentStatus("sec"))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) == 1 {
			var st statusView
			if err := json.Unmarshal(resp.Kvs[0].Value, &st); err != nil {
				t.Fatal(err)
			}
			if resp.Kvs[0].Lease == 0 {
				t.Fatal("status written without a lease")
			}
			if st.ConfigRevision == rev && len(st.Errors) == 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the status never showed revision %d without errors: %v", rev, resp.Kvs)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The premise: the agent's role is limited to its own keys.
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	if _, err := e.Client(t, "agent-sec", etcdSecret).Get(ctx, keys.AgentConfig("other")); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Fatalf("the agent's user read another agent's config: %v", err)
	}
	if out := p.Output(); strings.Contains(out, etcdSecret) {
		t.Fatalf("the password is in the agent's output:\n%s", out)
	}
}

// TestSecuredEtcdRefusals: a wrong password and a missing client
// certificate each end the agent at start with exit code 1 and one line.
func TestSecuredEtcdRefusals(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	e := securetest.StartEtcd(t, securetest.NewPKI(t, "logpipe test CA"), "root-pass")
	e.AddAgent(t, "sec", etcdSecret)
	without := func(env []string, prefix string) []string {
		var out []string
		for _, v := range env {
			if !strings.HasPrefix(v, prefix) {
				out = append(out, v)
			}
		}
		return out
	}
	for name, tc := range map[string]struct {
		env  []string
		want []string
	}{
		"wrong password": {
			env:  append(without(e.AgentEnv("sec", etcdSecret), "LOGPIPE_ETCD_PASSWORD="), "LOGPIPE_ETCD_PASSWORD=not-"+etcdSecret),
			want: []string{"etcd " + e.Endpoint, "tried TLS (CA ", `user "agent-sec"`, "authentication failed", "check --etcd-username and the password (LOGPIPE_ETCD_PASSWORD)"},
		},
		"no client certificate": {
			env:  without(without(e.AgentEnv("sec", etcdSecret), "LOGPIPE_ETCD_CERT_FILE="), "LOGPIPE_ETCD_KEY_FILE="),
			want: []string{"etcd " + e.Endpoint, "tried TLS (CA ", "check --etcd-ca-file", "--etcd-cert-file"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			p := proc.StartCmd(t, "agent", securetest.Command(agentBinary(t), w.etcdEnv(tc.env, "sec")...))
			if code := p.Wait(t, time.Minute); code != 1 {
				t.Fatalf("exit code %d, want 1", code)
			}
			securetest.CheckRefusal(t, p.Output(), "agent | agent: ", tc.want, etcdSecret)
		})
	}
}

// A password given as a flag works, with a warning that points to the
// variable; neither it nor --help echoes the password.
func TestPasswordFlagWarns(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	k := securetest.StartKafka(t, securetest.NewPKI(t, "logpipe test CA"), secret, 1, "logs")
	var env []string
	for _, e := range w.secureEnv(k.Env(), "flag") {
		if !strings.HasPrefix(e, "LOGPIPE_KAFKA_SASL_PASSWORD=") {
			env = append(env, e)
		}
	}
	cmd := securetest.Command(agentBinary(t), env...)
	cmd.Args = append(cmd.Args, "--kafka-sasl-password", secret)
	p := proc.StartCmd(t, "agent", cmd)
	p.WaitFor(t, "connected to Kafka", within)
	out := p.Output()
	if !strings.Contains(out, "--kafka-sasl-password was given on the command line") || !strings.Contains(out, "set LOGPIPE_KAFKA_SASL_PASSWORD or --kafka-sasl-password-file instead") {
		t.Errorf("no warning about the password flag:\n%s", out)
	}
	if strings.Contains(out, secret) {
		t.Fatalf("the password is in the agent's output:\n%s", out)
	}

	help := securetest.Command(agentBinary(t), "LOGPIPE_KAFKA_SASL_PASSWORD="+secret, "LOGPIPE_ETCD_PASSWORD="+etcdSecret)
	help.Args = append(help.Args, "--help")
	h := proc.StartCmd(t, "agent-help", help)
	if code := h.Wait(t, time.Minute); code != 0 {
		t.Fatalf("--help exit code %d", code)
	}
	hout := h.Output()
	if !strings.Contains(hout, "--kafka-sasl-password") || !strings.Contains(hout, "--etcd-password") {
		t.Fatalf("--help lacks the password flags:\n%s", hout)
	}
	if strings.Contains(hout, secret) || strings.Contains(hout, etcdSecret) {
		t.Fatalf("--help shows a password:\n%s", hout)
	}
}
