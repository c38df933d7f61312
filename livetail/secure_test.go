package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/coder/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/logpipe/logpipe/common/kafkasec"
	"github.com/logpipe/logpipe/common/record"
	"github.com/logpipe/logpipe/devstack/proc"
	"github.com/logpipe/logpipe/devstack/securetest"
	"github.com/logpipe/logpipe/livetail/internal/redistest"
)

// The secrets of the secured Kafka and Redis; no output may hold them.
const (
	secret      = "s3cret-kafka-pass-c41d"
	redisSecret = "s3cret-redis-pass-0e7a"
)

// livetailBinary builds livetail once for the package's tests.
func livetailBinary(tb testing.TB) string {
	tb.Helper()
	return proc.Build(tb, "github.com/logpipe/logpipe/livetail")
}

// secureEnv is livetail's environment for kafkaEnv, on ports the kernel picks.
func secureEnv(kafkaEnv []string, extra ...string) []string {
	return append(append(kafkaEnv,
		"LOGPIPE_KAFKA_TOPIC=logs",
		"LOGPIPE_LISTEN=127.0.0.1:0",
		"LOGPIPE_METRICS_ADDR=127.0.0.1:0",
		"LOGPIPE_LOG_FORMAT=json",
		"LOGPIPE_UPSTREAM_RETRIES=1",
	), extra...)
}

// TestSecuredKafka runs livetail, configured from the environment alone,
// against a Kafka that serves only SASL_SSL with SCRAM-SHA-512 and a Redis
// that requires a password (--redis-url), serving wss itself
// (--tls-cert-file): a client gets history and live lines, the per-user
// count lives in Redis, and neither password is printed.
func TestSecuredKafka(t *testing.T) {
	t.Parallel()
	pki := securetest.NewPKI(t, "logpipe test CA")
	k := securetest.StartKafka(t, pki, secret, 3, "logs")
	redisAddr := redistest.StartWith(t, "--requirepass", redisSecret)

	sec := kafkasec.Config{CAFile: pki.CAFile, SASLMechanism: securetest.KafkaMechanism, SASLUsername: securetest.KafkaUser, SASLPassword: secret}
	if err := sec.Validate(); err != nil {
		t.Fatal(err)
	}
	pc := sarama.NewConfig()
	pc.Producer.Return.Successes = true
	if err := sec.Apply(pc); err != nil {
		t.Fatal(err)
	}
	sp, err := sarama.NewSyncProducer([]string{k.Addr}, pc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	produce := func(first, n int) {
		t.Helper()
		for i := first; i < first+n; i++ {
			rec := record.Record{Timestamp: time.Now(), Message: line("sec", i), Job: "sec", Host: record.Host{Name: "node-a"}}
			if _, _, err := sp.SendMessage(&sarama.ProducerMessage{Topic: "logs", Key: sarama.StringEncoder("sec"), Value: sarama.ByteEncoder(rec.AppendJSON(nil))}); err != nil {
				t.Fatal(err)
			}
		}
	}
	produce(0, 5)

	// The Kafka password comes from a file, as a mounted secret.
	kafkaEnv := securetest.SecretsInFiles(t, k.Env(), "LOGPIPE_KAFKA_SASL_PASSWORD")
	p := proc.StartCmd(t, "livetail", securetest.Command(livetailBinary(t), secureEnv(kafkaEnv,
		"LOGPIPE_TLS_CERT_FILE="+pki.ServerCert,
		"LOGPIPE_TLS_KEY_FILE="+pki.ServerKey,
		"LOGPIPE_LIMITER=redis",
		"LOGPIPE_REDIS_URL=redis://:"+redisSecret+"@"+redisAddr,
	)...))
	addr := p.Addr(t, "http")

	pem, err := os.ReadFile(pki.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	httpc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "wss://"+addr+"/api/v1/tail?job=sec&tail=10", &websocket.DialOptions{HTTPClient: httpc})
	if err != nil {
		t.Fatalf("wss: %v", err)
	}
	defer ws.CloseNow()
	c := &client{t: t, c: ws}

	var lines []string
	read := func(n int) {
		t.Helper()
		for len(lines) < n {
			f := c.mustNext()
			if f.Type == "entries" { // the frame type of DESIGN.md, "livetail HTTP API"
				for _, e := range f.Entries {
					lines = append(lines, e.Line)
				}
			}
		}
	}
	read(5)
	produce(5, 5)
	read(10)
	for i, l := range lines {
		if l != line("sec", i) {
			t.Fatalf("line %d is %q, want %q", i, l, line("sec", i))
		}
	}

	rdb := redis.NewClient(&redis.Options{Addr: redisAddr, Password: redisSecret})
	defer rdb.Close()
	keys, err := rdb.Keys(ctx, "livetail:conns:*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("the connection is not counted in Redis: keys %v, %v", keys, err)
	}
	ws.Close(websocket.StatusNormalClosure, "")
	out := p.Output()
	for _, s := range []string{secret, redisSecret} {
		if strings.Contains(out, s) {
			t.Fatalf("a password is in livetail's output:\n%s", out)
		}
	}
}

// TestSecuredKafkaRefusals: a wrong password, an untrusted CA, plaintext
// against the TLS port and TLS against a plaintext one each end livetail at
// start with exit code 1 and one line that says what was tried and what to
// check, without the password.
func TestSecuredKafkaRefusals(t *testing.T) {
	t.Parallel()
	s := newKafka(t)
	k := securetest.StartKafka(t, securetest.NewPKI(t, "logpipe test CA"), secret, 1, "logs")
	for _, r := range k.Refusals(t, s.KafkaAddrs()[0]) {
		t.Run(r.Name, func(t *testing.T) {
			p := proc.StartCmd(t, "livetail", securetest.Command(livetailBinary(t), secureEnv(r.Env)...))
			if code := p.Wait(t, time.Minute); code != 1 {
				t.Fatalf("exit code %d, want 1", code)
			}
			securetest.CheckRefusal(t, p.Output(), "livetail | livetail: ", r.Want, secret)
		})
	}
}
