package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/logpipe/logpipe/agent/internal/testkit"
	"github.com/logpipe/logpipe/devstack/proc"
	"github.com/logpipe/logpipe/devstack/securetest"
	"github.com/logpipe/logpipe/devstack/stack"
)

// TestKafkaListeners runs the agent against a broker of each kind a
// managed Kafka offers: PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 over TLS,
// and mutual TLS without SASL. Its lines reach the topic, read back by a
// client of the same listener, and the password, given as a file, is
// never printed.
func TestKafkaListeners(t *testing.T) {
	t.Parallel()
	w := newWorldOn(t, stack.Options{Without: []string{stack.Kafka}})
	pki := securetest.NewPKI(t, "logpipe test CA")
	for _, l := range securetest.Listeners {
		t.Run(l.Name(), func(t *testing.T) {
			k := securetest.StartListener(t, pki, l, secret, 1, "logs")
			reader := testkit.NewReader(t, []string{k.Addr}, "logs", k.ClientOpts()...)
			name := strings.ToLower(strings.ReplaceAll(l.Name(), "-", ""))
			log := w.path(name + ".log")
			if err := os.WriteFile(log, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			w.put("/logpipe/agents/"+name, configJSON(entryJSON(log, `"job":"`+name+`"`)))
			env := securetest.SecretsInFiles(t, k.Env(), "LOGPIPE_KAFKA_SASL_PASSWORD")
			env = append(w.secureEnv(env, name), "LOGPIPE_STATE_DIR="+t.TempDir())
			p := proc.StartCmd(t, "agent", securetest.Command(agentBinary(t), env...))
			testkit.Append(t, log, testkit.Numbered(name, 0, 20, 0)...)
			reader.WaitFor(within, "20 lines over "+l.Name(), func(recs []testkit.Record) bool {
				_, n := testkit.Count(recs, name)
				return n >= 20
			})
			if out := p.Output(); strings.Contains(out, secret) {
				t.Fatalf("the password is in the agent's output:\n%s", out)
			}
		})
	}
}

// TestKafkaWrongMechanism: a SASL mechanism the user does not have on the
// broker (SCRAM-SHA-256 for a SCRAM-SHA-512 user, PLAIN for a SCRAM user)
// ends the agent at start with exit code 1 and the one line of a failed
// authentication.
func TestKafkaWrongMechanism(t *testing.T) {
	t.Parallel()
	w := newWorldOn(t, stack.Options{Without: []string{stack.Kafka}})
	pki := securetest.NewPKI(t, "logpipe test CA")
	k := securetest.StartListener(t, pki, securetest.Listener{Mechanism: "SCRAM-SHA-512"}, secret, 1, "logs")
	for _, mech := range []string{"SCRAM-SHA-256", "PLAIN"} {
		t.Run(mech, func(t *testing.T) {
			env := append(k.Env(), "LOGPIPE_KAFKA_SASL_MECHANISM="+mech) // the later value wins
			p := proc.StartCmd(t, "agent", securetest.Command(agentBinary(t), w.secureEnv(env, "wrongmech")...))
			if code := p.Wait(t, time.Minute); code != 1 {
				t.Fatalf("exit code %d, want 1", code)
			}
			securetest.CheckRefusal(t, p.Output(), "agent | agent: ", []string{
				"kafka broker " + k.Addr, "SASL " + mech + ` as user "logpipe"`, "authentication failed", "that the user exists for " + mech,
			}, secret)
		})
	}
}
