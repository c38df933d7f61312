package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/logpipe/logpipe/common/kafkasec"
	"github.com/logpipe/logpipe/common/record"
	"github.com/logpipe/logpipe/devstack/proc"
	"github.com/logpipe/logpipe/devstack/securetest"
)

// TestKafkaCredentialGoesBad: when the broker starts refusing livetail's
// user while it runs, the partition consumers retry, /readyz names the
// partitions and says that authentication fails and what to check, and
// once the broker takes the user again livetail is ready and serves the
// lines produced meanwhile.
func TestKafkaCredentialGoesBad(t *testing.T) {
	t.Parallel()
	k := securetest.StartKafka(t, securetest.NewPKI(t, "logpipe test CA"), secret, 1, "logs")
	sec := kafkasec.Config{CAFile: k.PKI.CAFile, SASLMechanism: securetest.KafkaMechanism, SASLUsername: securetest.KafkaUser, SASLPassword: secret}
	if err := sec.Validate(); err != nil {
		t.Fatal(err)
	}
	produce := func(first, n int) {
		t.Helper()
		pc := sarama.NewConfig()
		pc.Producer.Return.Successes = true
		if err := sec.Apply(pc); err != nil {
			t.Fatal(err)
		}
		sp, err := sarama.NewSyncProducer([]string{k.Addr}, pc)
		if err != nil {
			t.Fatal(err)
		}
		defer sp.Close()
		for i := first; i < first+n; i++ {
			rec := record.Record{Timestamp: time.Now(), Message: line("bad", i), Job: "bad", Host: record.Host{Name: "node-a"}}
			if _, _, err := sp.SendMessage(&sarama.ProducerMessage{Topic: "logs", Key: sarama.StringEncoder("bad"), Value: sarama.ByteEncoder(rec.AppendJSON(nil))}); err != nil {
				t.Fatal(err)
			}
		}
	}
	produce(0, 5)
	p := proc.StartCmd(t, "livetail", securetest.Command(livetailBinary(t), secureEnv(k.Env())...))
	addr, metrics := p.Addr(t, "http"), p.Addr(t, "metrics")
	readyz := func() (int, string) { return httpGet(t, "http://"+metrics+"/readyz") }
	var body string
	eventually(t, within, "ready", func() bool { code, _ := readyz(); return code == http.StatusOK })

	k.RefuseAuth(true)
	k.Cut()
	want := []string{"kafka partitions [0] unavailable", "kafka broker " + k.Addr, `SASL SCRAM-SHA-512 as user "logpipe"`, "authentication failed", "check --kafka-sasl-username"}
	eventually(t, within, "/readyz to say the credential is refused", func() bool {
		var code int
		code, body = readyz()
		for _, w := range want {
			if !strings.Contains(body, w) {
				return false
			}
		}
		return code == http.StatusServiceUnavailable
	})
	t.Logf("/readyz while refused: %s", body)

	k.RefuseAuth(false)
	produce(5, 5)
	eventually(t, within, "ready again", func() bool { code, _ := readyz(); return code == http.StatusOK })
	c := mustDial(t, "ws://"+addr+"/api/v1/tail?job=bad&tail=10")
	var lines []string
	for len(lines) < 10 {
		f := c.mustNext()
		for _, e := range f.Entries {
			lines = append(lines, e.Line)
		}
	}
	for i, l := range lines {
		if l != line("bad", i) {
			t.Fatalf("line %d is %q, want %q", i, l, line("bad", i))
		}
	}
	if out := p.Output() + body; strings.Contains(out, secret) {
		t.Fatalf("the password is in livetail's output or /readyz:\n%s", out)
	}
}
