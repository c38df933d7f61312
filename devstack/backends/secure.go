package backends

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/logpipe/logpipe/devstack/internal/esauth"
	"github.com/logpipe/logpipe/devstack/internal/pki"
	"github.com/logpipe/logpipe/devstack/real"
)

// Users of a secured stack (Options.Secure).
const (
	KafkaUser      = "logpipe"
	KafkaMechanism = "SCRAM-SHA-512"
	EtcdUser       = "logpipe" // with etcd's root role
	ESUser         = "logpipe"
)

// Files a secured stack writes in Security.Dir.
const (
	EnvFile         = "secure.env"
	KcatFile        = "kcat.conf"
	credentialsFile = "credentials.json"
	pkiDir          = "pki"
)

// ErrSecureMix is returned by Start for a kept data directory made with
// Options.Secure by a start without it, or the other way round: the users
// and the TLS settings live in etcd's and Kafka's data.
var ErrSecureMix = errors.New("backends: data directory made with the other --secure setting")

// Security is what a secured stack serves with: a throwaway CA and its
// certificates, made afresh at each start, and passwords, made at the first
// start and kept with the data (etcd's and Kafka's users live there).
type Security struct {
	Dir string // Options.DataDir, or a temporary directory that Close removes
	PKI *pki.PKI

	KafkaPassword    string
	EtcdPassword     string // of EtcdUser
	EtcdRootPassword string
	ESPassword       string
}

// credentials are the passwords, as credentials.json keeps them.
type credentials struct {
	Kafka    string `json:"kafka"`
	Etcd     string `json:"etcd"`
	EtcdRoot string `json:"etcd_root"`
	ES       string `json:"es"`
}

// newSecurity makes the certificates in dir/pki and reads the passwords
// from dir/credentials.json, or makes them and writes it.
func newSecurity(dir string) (*Security, error) {
	p, err := pki.New(filepath.Join(dir, pkiDir), "logpipe devstack CA")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, credentialsFile)
	var c credentials
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &c); err != nil {
			return nil, fmt.Errorf("backends: %s: %w", path, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("backends: %w", err)
	}
	if c.Kafka == "" || c.Etcd == "" || c.EtcdRoot == "" || c.ES == "" {
		c = credentials{Kafka: password(), Etcd: password(), EtcdRoot: password(), ES: password()}
		b, _ := json.Marshal(c)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return nil, fmt.Errorf("backends: %w", err)
		}
	}
	return &Security{Dir: dir, PKI: p, KafkaPassword: c.Kafka, EtcdPassword: c.Etcd, EtcdRootPassword: c.EtcdRoot, ESPassword: c.ES}, nil
}

// checkSecureMix returns ErrSecureMix when dataDir holds data of a start
// with the other Secure setting.
func checkSecureMix(dataDir string, secure bool) error {
	if dataDir == "" {
		return nil
	}
	_, err := os.Stat(filepath.Join(dataDir, "etcd"))
	if err != nil {
		return nil // a new data directory
	}
	_, err = os.Stat(filepath.Join(dataDir, credentialsFile))
	wasSecure := err == nil
	switch {
	case secure && !wasSecure:
		return fmt.Errorf("%w: %s was made without --secure; use another --data-dir", ErrSecureMix, dataDir)
	case !secure && wasSecure:
		return fmt.Errorf("%w: %s was made with --secure; add --secure or use another --data-dir", ErrSecureMix, dataDir)
	}
	return nil
}

// password is 24 random letters and digits: nothing a shell, a JAAS
// config or a SCRAM spec would have to quote.
func password() string {
	const alphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// KafkaOpts are the franz-go options of a client of the secured Kafka.
func (sec *Security) KafkaOpts() []kgo.Opt {
	return []kgo.Opt{
		kgo.DialTLSConfig(sec.PKI.ClientTLS(false)),
		kgo.SASL(scram.Auth{User: KafkaUser, Pass: sec.KafkaPassword}.AsSha512Mechanism()),
	}
}

// EtcdClient is a client of the secured etcd at endpoints, with the client
// certificate, as EtcdUser.
func (sec *Security) EtcdClient(endpoints []string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints: endpoints, TLS: sec.PKI.ClientTLS(true),
		Username: EtcdUser, Password: sec.EtcdPassword,
		DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
	})
}

// ESHandler is h behind basic auth as ESUser.
func (sec *Security) ESHandler(h http.Handler) http.Handler {
	return esauth.Wrap(h, ESUser, sec.ESPassword)
}

// ESClient is an HTTP client that trusts the CA; requests need
// SetBasicAuth(ESUser, ESPassword).
func (sec *Security) ESClient(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{TLSClientConfig: sec.PKI.ClientTLS(false), DisableKeepAlives: true}}
}

// setupEtcdAuth adds etcd's root user and EtcdUser and enables auth, unless
// a kept data directory has them already.
func (sec *Security) setupEtcdAuth(ctx context.Context, endpoint string) error {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: []string{endpoint}, TLS: sec.PKI.ClientTLS(true),
		DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
	})
	if err != nil {
		return fmt.Errorf("etcd auth: %w", err)
	}
	defer cli.Close()
	st, err := cli.AuthStatus(ctx)
	if err != nil {
		return fmt.Errorf("etcd auth: %w", err)
	}
	if st.Enabled {
		return nil
	}
	for _, step := range []func() error{
		func() error { _, err := cli.UserAdd(ctx, "root", sec.EtcdRootPassword); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := cli.UserAdd(ctx, EtcdUser, sec.EtcdPassword); return err },
		// A development stack: the binaries' user may do anything. The
		// README gives the agent's smallest role for a real cluster.
		func() error { _, err := cli.UserGrantRole(ctx, EtcdUser, "root"); return err },
		func() error { _, err := cli.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil && !errors.Is(err, rpctypes.ErrUserAlreadyExist) {
			return fmt.Errorf("etcd auth: %w", err)
		}
	}
	return nil
}

// envVar is one line of secure.env.
type envVar struct{ name, value string }

// secureEnv is what secure.env holds, in order: the LOGPIPE_* variables of the
// three binaries, etcdctl's ETCDCTL_* and kcat's KCAT_CONFIG.
func (s *Stack) secureEnv() []envVar {
	sec := s.sec
	p := sec.PKI
	etcd := strings.Join(s.EtcdEndpoints(), ",")
	v := []envVar{
		{"LOGPIPE_KAFKA_BROKERS", strings.Join(s.KafkaAddrs(), ",")},
		{"LOGPIPE_KAFKA_CA_FILE", p.CAFile},
		{"LOGPIPE_KAFKA_SASL_MECHANISM", KafkaMechanism},
		{"LOGPIPE_KAFKA_SASL_USERNAME", KafkaUser},
		{"LOGPIPE_KAFKA_SASL_PASSWORD", sec.KafkaPassword},
		{"LOGPIPE_ETCD_ENDPOINTS", etcd},
		{"LOGPIPE_ETCD_CA_FILE", p.CAFile},
		{"LOGPIPE_ETCD_CERT_FILE", p.ClientCert},
		{"LOGPIPE_ETCD_KEY_FILE", p.ClientKey},
		{"LOGPIPE_ETCD_USERNAME", EtcdUser},
		{"LOGPIPE_ETCD_PASSWORD", sec.EtcdPassword},
		{"LOGPIPE_ES_ADDRESSES", s.ESURL()},
		{"LOGPIPE_ES_CA_FILE", p.CAFile},
		{"LOGPIPE_ES_USERNAME", ESUser},
		{"LOGPIPE_ES_PASSWORD", sec.ESPassword},
		{"ETCDCTL_API", "3"},
		{"ETCDCTL_ENDPOINTS", etcd},
		{"ETCDCTL_CACERT", p.CAFile},
		{"ETCDCTL_CERT", p.ClientCert},
		{"ETCDCTL_KEY", p.ClientKey},
		{"ETCDCTL_USER", EtcdUser + ":" + sec.EtcdPassword},
		{"KCAT_CONFIG", filepath.Join(sec.Dir, KcatFile)},
	}
	return v
}

// writeSecureFiles writes secure.env and kcat.conf into sec.Dir, readable
// by their owner alone.
func (s *Stack) writeSecureFiles() error {
	var env strings.Builder
	env.WriteString("# Written by devstack --secure at each start: the settings of logpipe's\n" +
		"# binaries (LOGPIPE_*), etcdctl (ETCDCTL_*) and kcat (KCAT_CONFIG) for this\n" +
		"# stack. Load it with: . " + shellQuote(filepath.Join(s.sec.Dir, EnvFile)) + "\n")
	for _, v := range s.secureEnv() {
		fmt.Fprintf(&env, "export %s=%s\n", v.name, shellQuote(v.value))
	}
	kcat := strings.Join([]string{
		"# Written by devstack --secure at each start: kcat -F " + filepath.Join(s.sec.Dir, KcatFile),
		"bootstrap.servers=" + strings.Join(s.KafkaAddrs(), ","),
		"security.protocol=SASL_SSL",
		"sasl.mechanisms=" + s.kcatMechanism(),
		"sasl.username=" + KafkaUser,
		"sasl.password=" + s.sec.KafkaPassword,
		"ssl.ca.location=" + s.sec.PKI.CAFile,
	}, "\n") + "\n"
	for name, text := range map[string]string{EnvFile: env.String(), KcatFile: kcat} {
		if err := os.WriteFile(filepath.Join(s.sec.Dir, name), []byte(text), 0o600); err != nil {
			return fmt.Errorf("backends: %w", err)
		}
	}
	return nil
}

// kcatMechanism is the SASL mechanism of kcat.conf: SCRAM-SHA-512, or PLAIN
// (same user and password) on Apache Kafka, which also offers it, as
// librdkafka before 2.6.1 (Debian 12's kcat) fails SCRAM against Kafka 4.
func (s *Stack) kcatMechanism() string {
	if s.realKafka != nil {
		return "PLAIN"
	}
	return KafkaMechanism
}

// shellQuote quotes v for sh: inside single quotes, each ' is '\”.
func shellQuote(v string) string { return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'" }

// Security is the secured stack's CA, certificates and passwords; nil
// without Options.Secure.
func (s *Stack) Security() *Security { return s.sec }

// EnvFile is the path of secure.env; "" without Options.Secure.
func (s *Stack) EnvFile() string {
	if s.sec == nil {
		return ""
	}
	return filepath.Join(s.sec.Dir, EnvFile)
}

// serverTLS is the servers' TLS configuration; nil when not secured.
func (sec *Security) serverTLS(requireClient bool) *tls.Config {
	if sec == nil {
		return nil
	}
	return sec.PKI.ServerTLS(requireClient)
}

// realKafkaSecurity is Apache Kafka's security with Options.Secure; nil
// without.
func (s *Stack) realKafkaSecurity() *real.KafkaSecurity {
	if s.sec == nil {
		return nil
	}
	return &real.KafkaSecurity{
		KeystoreFile: s.sec.PKI.ServerBundle, CAFile: s.sec.PKI.CAFile,
		ClientTLS: s.sec.PKI.ClientTLS(false), User: KafkaUser, Password: s.sec.KafkaPassword,
	}
}

// realESSecurity is the OpenSearch proxy's security with Options.Secure;
// nil without.
func (s *Stack) realESSecurity() *real.OpenSearchSecurity {
	if s.sec == nil {
		return nil
	}
	return &real.OpenSearchSecurity{
		ServerTLS: s.sec.serverTLS(false), ClientTLS: s.sec.PKI.ClientTLS(false),
		User: ESUser, Password: s.sec.ESPassword,
	}
}

// ErrEnvFile is returned by ReadEnvFile for a line it cannot read.
var ErrEnvFile = errors.New("backends: not a line of secure.env")

// ReadEnvFile reads the variables of a secure.env that Start wrote, as
// NAME=value: each of its lines is a comment or export NAME='value'.
func ReadEnvFile(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("backends: %w", err)
	}
	var env []string
	for i, line := range strings.Split(string(b), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, quoted, ok := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		value, unquoted := unquoteShell(quoted)
		if !ok || !unquoted || !strings.HasPrefix(line, "export ") {
			return nil, fmt.Errorf("%w: %s:%d", ErrEnvFile, path, i+1)
		}
		env = append(env, name+"="+value)
	}
	return env, nil
}

// unquoteShell undoes shellQuote.
func unquoteShell(q string) (string, bool) {
	if len(q) < 2 || q[0] != '\'' || q[len(q)-1] != '\'' {
		return "", false
	}
	return strings.ReplaceAll(q[1:len(q)-1], `'\''`, "'"), true
}
