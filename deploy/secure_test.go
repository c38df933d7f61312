package deploy_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"maps"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/logpipe/logpipe/devstack/stack"
)

// secureFile is the secured variant, an override of docker-compose.yml.
const secureFile = "docker-compose.secure.yml"

// loadSecureProject loads docker-compose.yml with docker-compose.secure.yml
// over it, as `docker compose -f docker-compose.yml -f
// docker-compose.secure.yml` does, with an empty environment.
func loadSecureProject(tb testing.TB, profiles ...string) *types.Project {
	tb.Helper()
	return loadFiles(tb, []string{"docker-compose.yml", secureFile}, profiles)
}

// TestSecureComposeEnvMatchesFlags: every LOGPIPE_* variable the secured
// variant gives a Go service is a flag of that binary, and each service
// takes its passwords from files.
func TestSecureComposeEnvMatchesFlags(t *testing.T) {
	p := loadSecureProject(t)
	want := map[string][]string{
		"agent":    {"LOGPIPE_KAFKA_SASL_PASSWORD_FILE", "LOGPIPE_ETCD_PASSWORD_FILE", "LOGPIPE_ETCD_CERT_FILE", "LOGPIPE_KAFKA_CA_FILE"},
		"transfer": {"LOGPIPE_KAFKA_SASL_PASSWORD_FILE", "LOGPIPE_ES_PASSWORD_FILE", "LOGPIPE_ES_CA_FILE", "LOGPIPE_KAFKA_CA_FILE"},
		"livetail": {"LOGPIPE_KAFKA_SASL_PASSWORD_FILE", "LOGPIPE_KAFKA_CA_FILE"},
	}
	for _, name := range goServices {
		t.Run(name, func(t *testing.T) {
			s := service(t, p, name)
			flags := flagsOf(t, name)
			for _, k := range slices.Sorted(maps.Keys(s.Environment)) {
				if _, ok := flags[envFlag(k)]; !strings.HasPrefix(k, "LOGPIPE_") || !ok {
					t.Errorf("%s: %s matches no flag --%s of %s", name, k, envFlag(k), name)
				}
			}
			for _, k := range want[name] {
				if _, ok := env(s, k); !ok {
					t.Errorf("%s does not set %s", name, k)
				}
			}
		})
	}
}

// secretTargets are the paths where s finds its compose secrets.
func secretTargets(s types.ServiceConfig) map[string]string {
	out := map[string]string{}
	for _, sec := range s.Secrets {
		target := sec.Target
		if target == "" {
			target = "/run/secrets/" + sec.Source
		} else if !path.IsAbs(target) {
			target = "/run/secrets/" + target
		}
		out[target] = sec.Source
	}
	return out
}

// mountedAt reports whether file is inside a volume, a bind mount or a
// secret of s.
func mountedAt(s types.ServiceConfig, file string) bool {
	if _, ok := secretTargets(s)[file]; ok {
		return true
	}
	for _, v := range s.Volumes {
		if rel, err := filepath.Rel(v.Target, file); err == nil && !strings.HasPrefix(rel, "..") {
			return true
		}
	}
	return false
}

// fileVars are the variables of s that name a file it reads: *_FILE,
// *_LOCATION (Kafka's stores), and the relative certs/ paths of
// Elasticsearch's ssl settings (under its config directory).
func fileVars(s types.ServiceConfig) map[string]string {
	out := map[string]string{}
	for k, v := range s.Environment {
		if v == nil {
			continue
		}
		switch {
		case strings.HasSuffix(k, "_FILE") || strings.HasSuffix(k, "_LOCATION"):
			out[k] = *v
		case strings.HasPrefix(k, "xpack.security.") && strings.HasPrefix(*v, "certs/"):
			out[k] = "/usr/share/elasticsearch/config/" + *v
		}
	}
	return out
}

// TestSecureComposeFilesMounted: every file a service of the secured
// variant is told to read (certificates, keys, password files) is in a
// volume or secret mounted into that service, and the certificates are in
// the volume init-certs writes, which the service waits for.
func TestSecureComposeFilesMounted(t *testing.T) {
	p := loadSecureProject(t)
	var checked int
	for _, name := range p.ServiceNames() {
		s := service(t, p, name)
		for k, file := range fileVars(s) {
			checked++
			if !mountedAt(s, file) {
				t.Errorf("%s: %s=%s is in no volume or secret of the service", name, k, file)
			}
		}
		for _, arg := range s.Command {
			if _, file, ok := strings.Cut(arg, "-file="); ok {
				checked++
				if !mountedAt(s, file) {
					t.Errorf("%s: command argument %s names a file in no volume of the service", name, arg)
				}
			}
		}
	}
	if checked < 20 {
		t.Fatalf("only %d files checked: the premise, that the services read their certificates and passwords from files, does not hold", checked)
	}
	certsWriter := service(t, p, "init-certs")
	if !hasNamedVolumeAt(certsWriter, "/certs") {
		t.Fatal("init-certs does not write the volume certs at /certs")
	}
	for _, name := range []string{"kafka", "etcd", "elasticsearch"} {
		dep, ok := service(t, p, name).DependsOn["init-certs"]
		if !ok || dep.Condition != types.ServiceConditionCompletedSuccessfully {
			t.Errorf("%s does not wait for init-certs to complete", name)
		}
	}
}

// TestSecureComposeNoPlainSecrets: no service has a password, key or token
// as a plain value in its environment, and every secret is a file.
func TestSecureComposeNoPlainSecrets(t *testing.T) {
	p := loadSecureProject(t)
	for _, name := range p.ServiceNames() {
		s := service(t, p, name)
		for k, v := range s.Environment {
			upper := strings.ToUpper(k)
			secretish := strings.Contains(upper, "PASSWORD") || strings.Contains(upper, "API_KEY") || strings.Contains(upper, "SECRET")
			if secretish && !strings.HasSuffix(upper, "_FILE") && v != nil && *v != "" {
				t.Errorf("%s: %s holds a value in environment:; give it as a file (a compose secret)", name, k)
			}
			if v != nil && strings.Contains(strings.ToLower(*v), "password=") {
				t.Errorf("%s: %s holds a password in environment:", name, k)
			}
		}
		for target, source := range secretTargets(s) {
			sec, ok := p.Secrets[source]
			if !ok {
				t.Errorf("%s: secret %s is not declared", name, source)
				continue
			}
			if sec.File == "" {
				t.Errorf("secret %s is not a file", source)
			}
			if !strings.HasPrefix(target, "/run/secrets/") {
				t.Errorf("%s: secret %s is mounted at %s, not under /run/secrets", name, source, target)
			}
		}
	}
}

// TestSecureComposeSecured: in the secured variant the services reach
// Kafka, etcd and Elasticsearch only through their secured endpoints, and
// those serve nothing else to other containers.
func TestSecureComposeSecured(t *testing.T) {
	p := loadSecureProject(t)
	kafka := service(t, p, "kafka")
	protocols := map[string]string{}
	if v, ok := env(kafka, "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"); ok {
		for _, kv := range strings.Split(v, ",") {
			name, proto, _ := strings.Cut(kv, ":")
			protocols[name] = proto
		}
	}
	for name, addr := range kafkaListeners(t, kafka) {
		host, _, _ := net.SplitHostPort(addr)
		if protocols[name] != "SASL_SSL" && host != "127.0.0.1" {
			t.Errorf("kafka listener %s (%s) is %s and reachable by other containers", name, addr, protocols[name])
		}
	}
	if v, _ := env(kafka, "KAFKA_SASL_ENABLED_MECHANISMS"); v != "SCRAM-SHA-512" {
		t.Errorf("kafka enables SASL mechanisms %q, want SCRAM-SHA-512", v)
	}
	etcdCmd := strings.Join(service(t, p, "etcd").Command, " ")
	for _, want := range []string{"--listen-client-urls=https://", "--client-cert-auth", "--trusted-ca-file="} {
		if !strings.Contains(etcdCmd, want) {
			t.Errorf("etcd command %q lacks %s", etcdCmd, want)
		}
	}
	es := service(t, p, "elasticsearch")
	for _, k := range []string{"xpack.security.enabled", "xpack.security.http.ssl.enabled"} {
		if v, _ := env(es, k); v != "true" {
			t.Errorf("elasticsearch: %s=%q, want true", k, v)
		}
	}
	want := map[string]map[string]string{
		"agent":    {"LOGPIPE_ETCD_ENDPOINTS": "https://etcd:2379", "LOGPIPE_KAFKA_BROKERS": kafkaListeners(t, kafka)["INTERNAL"], "LOGPIPE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512"},
		"transfer": {"LOGPIPE_ES_ADDRESSES": "https://elasticsearch:9200", "LOGPIPE_ES_USERNAME": "elastic", "LOGPIPE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512"},
		"livetail": {"LOGPIPE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512"},
	}
	for name, vars := range want {
		for k, v := range vars {
			if got, _ := env(service(t, p, name), k); got != v {
				t.Errorf("%s: %s=%q, want %q", name, k, got, v)
			}
		}
	}
	if _, ok := p.Services["kibana"]; ok {
		t.Error("kibana runs in the secured variant without the kibana_system password")
	}
}

// TestSecureComposeImages: the images the override adds are named without
// a registry host, as the base file's are where it can.
func TestSecureComposeImages(t *testing.T) {
	data := readRepoFile(t, secureFile)
	for _, line := range strings.Split(string(data), "\n") {
		image, ok := strings.CutPrefix(strings.TrimSpace(line), "image: ")
		if !ok {
			continue
		}
		first, _, _ := strings.Cut(image, "/")
		if strings.ContainsAny(first, ".:") && strings.Contains(image, "/") {
			t.Errorf("image %q names a registry host", image)
		}
	}
}

// TestInitCertsScript runs configs/init/certs.sh with this machine's
// openssl and checks what the services need of its output: each server
// certificate verifies against the CA for its compose name and 127.0.0.1,
// the client certificate is for client authentication, Kafka's keystore
// holds a key and its certificate, and a second run keeps the CA.
func TestInitCertsScript(t *testing.T) {
	needTools(t, "sh", "openssl")
	dir := filepath.Join(t.TempDir(), "certs")
	out := runScript(t, "init/certs.sh", "CERTS_DIR="+dir, "SERVER_NAMES=kafka etcd elasticsearch", "CLIENT_NAME=client", "DAYS=2")
	roots := x509.NewCertPool()
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca", "ca.pem"))
	if err != nil || !roots.AppendCertsFromPEM(caPEM) {
		t.Fatalf("no CA in ca/ca.pem (%v); the script said:\n%s", err, out)
	}
	load := func(name string) tls.Certificate {
		t.Helper()
		c, err := tls.LoadX509KeyPair(filepath.Join(dir, name, name+".pem"), filepath.Join(dir, name, name+"-key.pem"))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return c
	}
	for _, name := range []string{"kafka", "etcd", "elasticsearch"} {
		leaf, err := x509.ParseCertificate(load(name).Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		for _, host := range []string{name, "127.0.0.1", "localhost"} {
			if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				t.Errorf("%s's certificate for %s: %v", name, host, err)
			}
		}
	}
	client, err := x509.ParseCertificate(load("client").Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("the client certificate: %v", err)
	}
	keystore, err := os.ReadFile(filepath.Join(dir, "kafka", "keystore.pem"))
	if err != nil || !strings.Contains(string(keystore), "BEGIN PRIVATE KEY") || !strings.Contains(string(keystore), "BEGIN CERTIFICATE") {
		t.Errorf("kafka/keystore.pem does not hold a PKCS#8 key and a certificate (%v)", err)
	}
	if again := runScript(t, "init/certs.sh", "CERTS_DIR="+dir); !strings.Contains(again, "already") {
		t.Errorf("second run says %q, want that it kept the certificates", again)
	}
	if now, _ := os.ReadFile(filepath.Join(dir, "ca", "ca.pem")); string(now) != string(caPEM) {
		t.Error("the second run replaced the CA")
	}
}

// TestInitEtcdAuthScript runs configs/init/etcd.sh and then
// configs/init/etcd-auth.sh against a real etcd server, with the
// environment of the secured variant less TLS: auth ends up enabled, the
// agent's user reads its config key and nothing else, a second run of each
// script keeps what is there (etcd.sh then logs in as root).
func TestInitEtcdAuthScript(t *testing.T) {
	needTools(t, "sh", "curl", "base64", "tr")
	s := stack.New(t, stack.Options{Without: []string{stack.Kafka, stack.ES}})
	dir := t.TempDir()
	secret := func(name, value string) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(value+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	const rootPW, agentPW = "root-pw-5b1c", "agent-pw-9e0d"
	rootFile, agentFile := secret("root", rootPW), secret("agent", agentPW)
	url := s.EtcdEndpoints()[0]
	putEnv := []string{"ETCD_URL=" + url, "AGENT_NAME=node-7", "CONFIG_FILE=" + repoFile(t, "configs", "agent-config.json"),
		"ETCD_USER=root", "ETCD_PASSWORD_FILE=" + rootFile}
	authEnv := []string{"ETCD_URL=" + url, "AGENT_NAME=node-7", "ROOT_PASSWORD_FILE=" + rootFile, "AGENT_PASSWORD_FILE=" + agentFile}

	if out := runScript(t, "init/etcd.sh", putEnv...); !strings.Contains(out, "put ") {
		t.Errorf("etcd.sh before auth says %q, want that it put the config", out)
	}
	out := runScript(t, "init/etcd-auth.sh", authEnv...)
	if !strings.Contains(out, "auth enabled") {
		t.Errorf("etcd-auth.sh says %q, want that it enabled auth", out)
	}
	if strings.Contains(out, rootPW) || strings.Contains(out, agentPW) {
		t.Fatalf("etcd-auth.sh printed a password: %s", out)
	}
	if again := runScript(t, "init/etcd-auth.sh", authEnv...); !strings.Contains(again, "already enabled") {
		t.Errorf("second etcd-auth.sh says %q, want that auth was already enabled", again)
	}
	if again := runScript(t, "init/etcd.sh", putEnv...); !strings.Contains(again, "kept") {
		t.Errorf("etcd.sh under auth says %q, want that it logged in and kept the config", again)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client := func(user, pw string) *clientv3.Client {
		c, err := clientv3.New(clientv3.Config{Endpoints: s.EtcdEndpoints(), DialTimeout: 5 * time.Second, Username: user, Password: pw, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	if _, err := client("", "").Get(ctx, "/logpipe/agents/node-7"); err == nil {
		t.Error("an anonymous client read the config key: auth is not enabled")
	}
	agent := client("logpipe-agent-node-7", agentPW)
	if resp, err := agent.Get(ctx, "/logpipe/agents/node-7"); err != nil || len(resp.Kvs) != 1 {
		t.Errorf("the agent's user cannot read its config key: %v", err)
	}
	if _, err := agent.Put(ctx, "/logpipe/status/agents/node-7", "{}"); err != nil {
		t.Errorf("the agent's user cannot write its status key: %v", err)
	}
	if _, err := agent.Get(ctx, "/logpipe/agents/other"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Errorf("the agent's user read another agent's config key: %v", err)
	}
}

// TestInitTopicsScriptSASL runs configs/init/topics.sh with the secured
// variant's environment and a recording kafka-topics.sh: each call names a
// client properties file for SASL_SSL with the user, the password from the
// secret and the CA, and no call has the password on its command line.
func TestInitTopicsScriptSASL(t *testing.T) {
	needTools(t, "sh")
	bin := t.TempDir()
	record := filepath.Join(bin, "calls")
	// The fake records its arguments and the properties file it was given.
	fake := "#!/bin/sh\necho \"$*\" >>" + record + "\nwhile [ $# -gt 0 ]; do [ \"$1\" = --command-config ] && cat \"$2\" >>" + record + "; shift; done\n"
	if err := os.WriteFile(filepath.Join(bin, "kafka-topics.sh"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	pwFile := filepath.Join(t.TempDir(), "kafka-password")
	const pw = "kafka-pw-77aa"
	if err := os.WriteFile(pwFile, []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	initTopics := service(t, loadSecureProject(t), "init-topics")
	env := []string{"KAFKA_BIN=" + bin, "SASL_PASSWORD_FILE=" + pwFile}
	for _, k := range []string{"BOOTSTRAP", "TOPICS", "PARTITIONS", "SASL_USERNAME", "CA_FILE"} {
		v, ok := initEnv(initTopics.Environment, k)
		if !ok {
			t.Fatalf("init-topics does not set %s in the secured variant", k)
		}
		env = append(env, k+"="+v)
	}
	runScript(t, "init/topics.sh", env...)
	calls, err := os.ReadFile(record)
	if err != nil {
		t.Fatal(err)
	}
	var cmdLines []string
	for _, l := range strings.Split(string(calls), "\n") {
		if strings.HasPrefix(l, "--bootstrap-server") {
			cmdLines = append(cmdLines, l)
		}
	}
	if len(cmdLines) != 4 {
		t.Fatalf("%d calls, want 4 (create and describe of two topics):\n%s", len(cmdLines), calls)
	}
	for _, l := range cmdLines {
		if !strings.Contains(l, "--command-config ") || strings.Contains(l, pw) {
			t.Errorf("call %q: want --command-config and no password", l)
		}
	}
	for _, want := range []string{"security.protocol=SASL_SSL", "sasl.mechanism=SCRAM-SHA-512", `username="logpipe" password="` + pw + `";`, "ssl.truststore.location=/certs/ca/ca.pem"} {
		if !strings.Contains(string(calls), want) {
			t.Errorf("the client properties lack %q:\n%s", want, calls)
		}
	}
}
