// Package securetest starts secured backends for tests: a throwaway CA and
// its certificates (package devstack/internal/pki), and a kfake cluster
// that serves SASL_SSL with a SCRAM-SHA-512 user. It is for tests only; nothing in a binary imports it.
package securetest

import (
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/logpipe/logpipe/devstack/internal/pki"
)

// PKI is a throwaway CA with a server certificate for 127.0.0.1 and
// localhost, and a client certificate, each written to a PEM file (package
// devstack/internal/pki, which devstack --secure uses too).
type PKI = pki.PKI

// NewPKI makes a CA named name and its certificates in a directory that
// tb removes.
func NewPKI(tb testing.TB, name string) *PKI {
	tb.Helper()
	p, err := pki.New(tb.TempDir(), name)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// Kafka user of the cluster Kafka starts.
const (
	KafkaUser      = "logpipe"
	KafkaMechanism = "SCRAM-SHA-512"
)

// Kafka is a kfake cluster that serves only SASL_SSL.
type Kafka struct {
	Addr     string
	Password string
	PKI      *PKI
	Cluster  *kfake.Cluster

	ln     *trackListener
	refuse atomic.Bool
}

// StartKafka starts one kfake broker on a loopback port the kernel picks,
// with TLS by pki's server certificate and SASL with the SCRAM-SHA-512 user
// KafkaUser and password, and topics of partitions each. tb stops it.
func StartKafka(tb testing.TB, pki *PKI, password string, partitions int, topics ...string) *Kafka {
	tb.Helper()
	return StartListener(tb, pki, Listener{Mechanism: KafkaMechanism}, password, partitions, topics...).Kafka
}

// RefuseAuth makes k refuse every SASL authentication while refuse is
// true, as a broker does after the user's password was changed or the user
// removed. Connections already authenticated stay: Cut ends them.
func (k *Kafka) RefuseAuth(refuse bool) { k.refuse.Store(refuse) }

// Cut closes every client connection, so that the clients connect and
// authenticate again.
func (k *Kafka) Cut() { k.ln.cut() }

// trackListener keeps the connections it accepted, to cut them.
type trackListener struct {
	net.Listener
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func (l *trackListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns[c] = struct{}{}
		l.mu.Unlock()
	}
	return c, err
}

func (l *trackListener) cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.conns {
		c.Close()
		delete(l.conns, c)
	}
}

// Env is the environment a logpipe binary needs to reach k: brokers, CA,
// mechanism, user and password, as LOGPIPE_* variables.
func (k *Kafka) Env() []string {
	return []string{
		"LOGPIPE_KAFKA_BROKERS=" + k.Addr,
		"LOGPIPE_KAFKA_CA_FILE=" + k.PKI.CAFile,
		"LOGPIPE_KAFKA_SASL_MECHANISM=" + KafkaMechanism,
		"LOGPIPE_KAFKA_SASL_USERNAME=" + KafkaUser,
		"LOGPIPE_KAFKA_SASL_PASSWORD=" + k.Password,
	}
}

// ClientOpts are the franz-go options of a test client of k.
func (k *Kafka) ClientOpts() []kgo.Opt {
	tc := k.PKI.ClientTLS(false)
	tc.ServerName = "127.0.0.1"
	return []kgo.Opt{
		kgo.SeedBrokers(k.Addr),
		kgo.DialTLSConfig(tc),
		kgo.SASL(scram.Auth{User: KafkaUser, Pass: k.Password}.AsSha512Mechanism()),
	}
}

// Refusal is a misconfigured connection to a secured Kafka: the environment
// that makes it, and what the one line a binary exits with must say.
type Refusal struct {
	Name string
	Env  []string
	Want []string
}

// Refusals are the connections to k that must end a binary's start with
// exit code 1 and one line: a wrong password, an untrusted CA, plaintext
// against k's TLS port, and TLS against plaintextAddr (a plaintext Kafka).
func (k *Kafka) Refusals(tb testing.TB, plaintextAddr string) []Refusal {
	other := NewPKI(tb, "some other CA")
	with := func(env []string, kv ...string) []string {
		out := []string{}
		for _, e := range env {
			drop := false
			for _, x := range kv {
				name, _, _ := strings.Cut(x, "=")
				if strings.HasPrefix(e, name+"=") {
					drop = true
				}
			}
			if !drop {
				out = append(out, e)
			}
		}
		for _, x := range kv {
			if !strings.HasSuffix(x, "=") {
				out = append(out, x)
			}
		}
		return out
	}
	return []Refusal{{
		Name: "wrong password",
		Env:  with(k.Env(), "LOGPIPE_KAFKA_SASL_PASSWORD=not-"+k.Password),
		Want: []string{"kafka broker " + k.Addr, "TLS (CA " + k.PKI.CAFile, `SASL SCRAM-SHA-512 as user "logpipe"`, "authentication failed", "LOGPIPE_KAFKA_SASL_PASSWORD"},
	}, {
		Name: "untrusted CA",
		Env:  with(k.Env(), "LOGPIPE_KAFKA_CA_FILE="+other.CAFile),
		Want: []string{"kafka broker " + k.Addr, "TLS (CA " + other.CAFile, "unknown authority", "check that --kafka-ca-file"},
	}, {
		Name: "plaintext against TLS",
		Env:  with(k.Env(), "LOGPIPE_KAFKA_CA_FILE="),
		Want: []string{"kafka broker " + k.Addr, "plaintext (no TLS)", `SASL SCRAM-SHA-512 as user "logpipe"`, "the port expects TLS", "--kafka-ca-file"},
	}, {
		Name: "TLS against plaintext",
		Env:  with(k.Env(), "LOGPIPE_KAFKA_BROKERS="+plaintextAddr),
		Want: []string{"kafka broker " + plaintextAddr, "TLS (CA " + k.PKI.CAFile, "the port answers plaintext Kafka, not TLS"},
	}}
}

// Command is bin with the environment of this process, less its LOGPIPE_*
// variables, plus env: a binary configured from the environment alone.
func Command(bin string, env ...string) *exec.Cmd {
	cmd := exec.Command(bin)
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "LOGPIPE_") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

// CheckRefusal checks the output of a process that exited on a Refusal:
// exactly one line starts with prefix (the binary's "name: "), it holds
// every want, and no line holds secret.
func CheckRefusal(tb testing.TB, out, prefix string, want []string, secret string) {
	tb.Helper()
	if strings.Contains(out, secret) {
		tb.Fatalf("the password is in the output:\n%s", out)
	}
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 {
		tb.Fatalf("want one line starting %q, got %d in:\n%s", prefix, len(lines), out)
	}
	tb.Log(lines[0])
	for _, w := range want {
		if !strings.Contains(lines[0], w) {
			tb.Errorf("the line does not say %q:\n%s", w, lines[0])
		}
	}
}
