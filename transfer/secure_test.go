package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/logpipe/logpipe/common/kafkasec"
	"github.com/logpipe/logpipe/devstack/proc"
	"github.com/logpipe/logpipe/devstack/securetest"
	"github.com/logpipe/logpipe/devstack/stack"
	"github.com/logpipe/logpipe/transfer/internal/kafka"
)

// secret is the SASL password of the secured Kafka; no output may hold it.
const secret = "s3cret-kafka-pass-91ab"

// secureEnv is transfer's environment for kafkaEnv and the search engine of s.
func secureEnv(s *stack.Stack, kafkaEnv []string, index string) []string {
	return append(kafkaEnv,
		"LOGPIPE_KAFKA_TOPICS=logs",
		"LOGPIPE_DLQ_TOPIC=logs.dlq",
		"LOGPIPE_ES_ADDRESSES="+s.ESURL(),
		"LOGPIPE_ES_INDEX="+index,
		"LOGPIPE_METRICS_ADDR=127.0.0.1:0",
		"LOGPIPE_LOG_FORMAT=json",
		"LOGPIPE_BATCH_WAIT=50ms",
	)
}

// TestSecuredKafka runs transfer, configured from the environment alone,
// against a Kafka that serves only SASL_SSL with SCRAM-SHA-512: its
// consumer group indexes the records, its dead-letter producer writes the
// one that is not a record, and the password, given as a file, is never
// printed.
func TestSecuredKafka(t *testing.T) {
	t.Parallel()
	s := stack.New(t, stack.Options{Without: []string{stack.Etcd, stack.Kafka}})
	k := securetest.StartKafka(t, securetest.NewPKI(t, "logpipe test CA"), secret, 3, "logs", "logs.dlq")
	index := "logs-logpipe-secure"
	es := &esAPI{t: t, url: s.ESURL(), index: index}

	sec := kafkasec.Config{CAFile: k.PKI.CAFile, SASLMechanism: securetest.KafkaMechanism, SASLUsername: securetest.KafkaUser, SASLPassword: secret}
	must(t, sec.Validate())
	c := kafka.NewConfig("test-producer", &sec)
	c.Producer.Return.Successes = true
	sp, err := sarama.NewSyncProducer([]string{k.Addr}, c)
	must(t, err)
	t.Cleanup(func() { _ = sp.Close() })
	const n = 100
	msgs := []*sarama.ProducerMessage{{Topic: "logs", Value: sarama.StringEncoder("not a record")}}
	for i := range n {
		msgs = append(msgs, &sarama.ProducerMessage{Topic: "logs", Value: sarama.ByteEncoder(testRecord(i))})
	}
	must(t, sp.SendMessages(msgs))

	// The password comes from a file, as a mounted secret.
	env := securetest.SecretsInFiles(t, k.Env(), "LOGPIPE_KAFKA_SASL_PASSWORD")
	p := proc.StartCmd(t, "transfer", securetest.Command(transferBinary(t), secureEnv(s, env, index)...))
	waitFor(t, within, "the records indexed over SASL_SSL", func() bool {
		got, _ := es.tryCount("")
		return got >= n
	})
	cl, err := sarama.NewClient([]string{k.Addr}, c)
	must(t, err)
	defer cl.Close()
	waitFor(t, within, "the dead letter", func() bool {
		parts, err := cl.Partitions("logs.dlq")
		if err != nil {
			return false
		}
		var letters int64
		for _, part := range parts {
			end, err := cl.GetOffset("logs.dlq", part, sarama.OffsetNewest)
			if err != nil {
				return false
			}
			letters += end
		}
		return letters == 1
	})
	if out := p.Output(); strings.Contains(out, secret) {
		t.Fatalf("the password is in transfer's output:\n%s", out)
	}
}

// TestSecuredKafkaRefusals: a wrong password, an untrusted CA, plaintext
// against the TLS port and TLS against a plaintext one each end transfer at
// start with exit code 1 and one line that says what was tried and what to
// check, without the password. The plaintext Kafka that TLS is tried
// against is of both kinds: kfake and Apache Kafka.
func TestSecuredKafkaRefusals(t *testing.T) {
	t.Parallel()
	stack.ForBackends(t, func(t *testing.T, kind string) {
		s := stack.New(t, stack.Options{Backends: kind, Without: []string{stack.Etcd}})
		k := securetest.StartKafka(t, securetest.NewPKI(t, "logpipe test CA"), secret, 1, "logs")
		for _, r := range k.Refusals(t, s.KafkaAddrs()[0]) {
			t.Run(r.Name, func(t *testing.T) {
				p := proc.StartCmd(t, "transfer", securetest.Command(transferBinary(t), secureEnv(s, r.Env, "logs-logpipe-refused")...))
				if code := p.Wait(t, time.Minute); code != 1 {
					t.Fatalf("exit code %d, want 1", code)
				}
				securetest.CheckRefusal(t, p.Output(), "transfer | transfer: ", r.Want, secret)
			})
		}
	})
}

// A credential that goes bad while transfer runs (the broker refuses the
// user from now on) is retried, shows on /readyz, and transfer recovers
// once the broker takes it again, indexing what was produced meanwhile.
func TestSecuredKafkaCredentialGoesBad(t *testing.T) {
	t.Parallel()
	s := stack.New(t, stack.Options{Without: []string{stack.Etcd, stack.Kafka}})
	k := securetest.StartKafka(t, securetest.NewPKI(t, "logpipe test CA"), secret, 3, "logs", "logs.dlq")
	index := "logs-logpipe-secure"
	es := &esAPI{t: t, url: s.ESURL(), index: index}
	sec := kafkasec.Config{CAFile: k.PKI.CAFile, SASLMechanism: securetest.KafkaMechanism, SASLUsername: securetest.KafkaUser, SASLPassword: secret}
	must(t, sec.Validate())
	send := func(from, n int) {
		t.Helper()
		c := kafka.NewConfig("test-producer", &sec)
		c.Producer.Return.Successes = true
		sp, err := sarama.NewSyncProducer([]string{k.Addr}, c)
		must(t, err)
		defer sp.Close()
		var msgs []*sarama.ProducerMessage
		for i := from; i < from+n; i++ {
			msgs = append(msgs, &sarama.ProducerMessage{Topic: "logs", Value: sarama.ByteEncoder(testRecord(i))})
		}
		must(t, sp.SendMessages(msgs))
	}
	send(0, 50)
	p := proc.StartCmd(t, "transfer", securetest.Command(transferBinary(t), append(secureEnv(s, k.Env(), index),
		"LOGPIPE_BACKOFF_MIN=50ms", "LOGPIPE_BACKOFF_MAX=500ms")...))
	metrics := p.Addr(t, "metrics")
	waitFor(t, within, "the first records indexed", func() bool { n, _ := es.tryCount(""); return n >= 50 })
	waitFor(t, within, "ready", func() bool { code, _ := readyz(t, metrics); return code == http.StatusOK })

	k.RefuseAuth(true)
	k.Cut()
	var body string
	waitFor(t, within, "/readyz to report the refused credential", func() bool {
		var code int
		code, body = readyz(t, metrics)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "SASL Authentication failed")
	})
	t.Logf("/readyz while refused: %s", body)
	for _, want := range []string{"kafka broker " + k.Addr, `SASL SCRAM-SHA-512 as user "logpipe"`, "authentication failed", "check --kafka-sasl-username"} {
		if !strings.Contains(body, want) {
			t.Errorf("/readyz does not say %q: %s", want, body)
		}
	}

	k.RefuseAuth(false)
	send(50, 50)
	waitFor(t, within, "ready again", func() bool { code, _ := readyz(t, metrics); return code == http.StatusOK })
	waitFor(t, within, "the records produced since indexed", func() bool { n, _ := es.tryCount(""); return n >= 100 })
	if out := p.Output() + body; strings.Contains(out, secret) {
		t.Fatalf("the password is in transfer's output or /readyz:\n%s", out)
	}
}
