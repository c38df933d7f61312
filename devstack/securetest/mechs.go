package securetest

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// Listener is how a broker of StartListener takes clients: always over
// TLS, with a SASL mechanism (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; ""
// for none), and requiring a client certificate of the PKI (mutual TLS).
type Listener struct {
	Mechanism  string
	ClientCert bool
}

// Name is the listener in test names: "SCRAM-SHA-256", "mTLS".
func (l Listener) Name() string {
	var parts []string
	if l.Mechanism != "" {
		parts = append(parts, l.Mechanism)
	}
	if l.ClientCert {
		parts = append(parts, "mTLS")
	}
	return strings.Join(parts, "+")
}

// Listeners are the ways a managed Kafka takes clients that the binaries
// support: each SASL mechanism over TLS, and mutual TLS without SASL.
var Listeners = []Listener{
	{Mechanism: "PLAIN"},
	{Mechanism: "SCRAM-SHA-256"},
	{Mechanism: "SCRAM-SHA-512"},
	{ClientCert: true},
}

// ListenerKafka is a kfake cluster that serves one Listener.
type ListenerKafka struct {
	*Kafka
	Listener Listener
}

// StartListener starts one kfake broker as StartKafka does, but serving
// l: the user KafkaUser with password for l's mechanism, and a required
// client certificate when l says so. RefuseAuth and Cut work as on Kafka.
func StartListener(tb testing.TB, pki *PKI, l Listener, password string, partitions int, topics ...string) *ListenerKafka {
	tb.Helper()
	k := &ListenerKafka{Kafka: &Kafka{Password: password, PKI: pki}, Listener: l}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			ln, err := net.Listen(network, "127.0.0.1:0")
			if err != nil {
				return nil, err
			}
			k.ln = &trackListener{Listener: ln, conns: map[net.Conn]struct{}{}}
			return k.ln, nil
		}),
		kfake.TLS(pki.ServerTLS(l.ClientCert)),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(partitions),
		kfake.SeedTopics(int32(partitions), topics...),
	}
	if l.Mechanism != "" {
		opts = append(opts, kfake.EnableSASL(), kfake.Superuser(l.Mechanism, KafkaUser, password))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	k.Addr, k.Cluster = c.ListenAddrs()[0], c
	c.ControlKey(int16(kmsg.SASLAuthenticate), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if !k.refuse.Load() {
			return nil, nil, false
		}
		resp := req.ResponseKind().(*kmsg.SASLAuthenticateResponse)
		resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
		msg := "Authentication failed during authentication due to invalid credentials with SASL mechanism " + l.Mechanism
		resp.ErrorMessage = &msg
		return resp, nil, true
	})
	return k
}

// Env is the environment a logpipe binary needs to reach k.
func (k *ListenerKafka) Env() []string {
	env := []string{
		"LOGPIPE_KAFKA_BROKERS=" + k.Addr,
		"LOGPIPE_KAFKA_CA_FILE=" + k.PKI.CAFile,
	}
	if k.Listener.ClientCert {
		env = append(env, "LOGPIPE_KAFKA_CERT_FILE="+k.PKI.ClientCert, "LOGPIPE_KAFKA_KEY_FILE="+k.PKI.ClientKey)
	}
	if k.Listener.Mechanism != "" {
		env = append(env,
			"LOGPIPE_KAFKA_SASL_MECHANISM="+k.Listener.Mechanism,
			"LOGPIPE_KAFKA_SASL_USERNAME="+KafkaUser,
			"LOGPIPE_KAFKA_SASL_PASSWORD="+k.Password)
	}
	return env
}

// ClientOpts are the franz-go options of a test client of k.
func (k *ListenerKafka) ClientOpts() []kgo.Opt {
	tc := k.PKI.ClientTLS(k.Listener.ClientCert)
	tc.ServerName = "127.0.0.1"
	opts := []kgo.Opt{kgo.SeedBrokers(k.Addr), kgo.DialTLSConfig(tc)}
	switch k.Listener.Mechanism {
	case "PLAIN":
		opts = append(opts, kgo.SASL(plain.Auth{User: KafkaUser, Pass: k.Password}.AsMechanism()))
	case "SCRAM-SHA-256":
		opts = append(opts, kgo.SASL(scram.Auth{User: KafkaUser, Pass: k.Password}.AsSha256Mechanism()))
	case "SCRAM-SHA-512":
		opts = append(opts, kgo.SASL(scram.Auth{User: KafkaUser, Pass: k.Password}.AsSha512Mechanism()))
	}
	return opts
}

// SecretsInFiles is env with each variable of names (such as
// "LOGPIPE_KAFKA_SASL_PASSWORD") moved into a file, as a mounted secret:
// the variable is replaced by NAME_FILE naming a file that holds the value
// and a trailing newline.
func SecretsInFiles(tb testing.TB, env []string, names ...string) []string {
	tb.Helper()
	dir := tb.TempDir()
	out := make([]string, 0, len(env))
	for _, e := range env {
		name, value, _ := strings.Cut(e, "=")
		moved := false
		for _, n := range names {
			if name != n {
				continue
			}
			path := filepath.Join(dir, strings.ToLower(n))
			if err := os.WriteFile(path, []byte(value+"\n"), 0o600); err != nil {
				tb.Fatal(err)
			}
			out = append(out, n+"_FILE="+path)
			moved = true
		}
		if !moved {
			out = append(out, e)
		}
	}
	return out
}
