package backends

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/logpipe/logpipe/devstack/internal/esauth"
)

// TestSecureEmbedded starts a secured embedded stack and checks what a
// client of each backend sees: with the settings of secure.env it works;
// without TLS, without a client certificate, or without the password it is
// refused.
func TestSecureEmbedded(t *testing.T) {
	s, err := Start(t.Context(), Options{Secure: true, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	sec := s.Security()

	env, err := ReadEnvFile(s.EnvFile())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"LOGPIPE_KAFKA_SASL_PASSWORD=" + sec.KafkaPassword, "LOGPIPE_ETCD_ENDPOINTS=https://", "LOGPIPE_ES_ADDRESSES=https://", "ETCDCTL_USER=logpipe:" + sec.EtcdPassword} {
		if !slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, want) }) {
			t.Errorf("secure.env lacks %s...: %v", want, env)
		}
	}
	if fi, err := os.Stat(s.EnvFile()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("secure.env: %v, mode %v; want 0600", err, fi.Mode())
	}

	t.Run("etcd", func(t *testing.T) {
		ctx := testContext(t, time.Minute)
		cli, err := sec.EtcdClient(s.EtcdEndpoints())
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		if _, err := cli.Put(ctx, "/logpipe/agents/x", "[]"); err != nil {
			t.Fatalf("put as %s: %v", EtcdUser, err)
		}
		// A certificate but no user: auth refuses.
		anon, err := clientv3.New(clientv3.Config{Endpoints: s.EtcdEndpoints(), TLS: sec.PKI.ClientTLS(true), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		defer anon.Close()
		if _, err := anon.Get(ctx, "/logpipe/agents/x"); err == nil {
			t.Error("a get without a user was served")
		}
		// No client certificate: the handshake fails.
		nocert, err := clientv3.New(clientv3.Config{Endpoints: s.EtcdEndpoints(), TLS: sec.PKI.ClientTLS(false),
			Username: EtcdUser, Password: sec.EtcdPassword, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
		if err == nil {
			sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			_, err = nocert.Get(sctx, "/logpipe/agents/x")
			cancel()
			nocert.Close()
		}
		if err == nil {
			t.Error("a client without a certificate was served")
		}
	})

	t.Run("kafka", func(t *testing.T) {
		ctx := testContext(t, time.Minute)
		cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(s.KafkaAddrs()...)}, sec.KafkaOpts()...)...)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "logs", Value: []byte("x")}).FirstErr(); err != nil {
			t.Fatalf("produce over SASL_SSL: %v", err)
		}
		for name, opts := range map[string][]kgo.Opt{
			"plaintext":      nil,
			"wrong password": {kgo.DialTLSConfig(sec.PKI.ClientTLS(false)), kgo.SASL(scram.Auth{User: KafkaUser, Pass: "not-" + sec.KafkaPassword}.AsSha512Mechanism())},
		} {
			bad, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(s.KafkaAddrs()...), kgo.RequestRetries(0)}, opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			err = bad.Ping(pctx)
			cancel()
			bad.Close()
			if err == nil {
				t.Errorf("%s: a Kafka client was served", name)
			}
		}
	})

	t.Run("es", func(t *testing.T) {
		client := sec.ESClient(10 * time.Second)
		get := func(user, password string) *http.Response {
			req, _ := http.NewRequest(http.MethodGet, s.ESURL()+"/", nil)
			if user != "" {
				req.SetBasicAuth(user, password)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return resp
		}
		if resp := get(ESUser, sec.ESPassword); resp.StatusCode != http.StatusOK {
			t.Errorf("with the password: %s", resp.Status)
		}
		for _, user := range []string{"", ESUser} {
			resp := get(user, "not-"+sec.ESPassword)
			if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != esauth.Challenge {
				t.Errorf("user %q, wrong password: %s, WWW-Authenticate %q; want 401 and %q", user, resp.Status, resp.Header.Get("WWW-Authenticate"), esauth.Challenge)
			}
		}
		plain := &http.Client{Timeout: 10 * time.Second}
		if resp, err := plain.Get("http" + strings.TrimPrefix(s.ESURL(), "https") + "/"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Error("plain HTTP was served")
			}
		}
		var unknown *tls.CertificateVerificationError
		if _, err := (&http.Client{Timeout: 10 * time.Second}).Get(s.ESURL() + "/"); !errors.As(err, &unknown) {
			t.Errorf("a client that does not trust the CA: %v; want a certificate error", err)
		}
	})
}

// TestEnvFileQuoting checks that a value with a quote, a space and a
// dollar sign comes back from secure.env as it went in, for ReadEnvFile and
// for sh alike.
func TestEnvFileQuoting(t *testing.T) {
	for _, v := range []string{"plain", "it's", "a b", "$HOME", `back\slash`, ""} {
		q := shellQuote(v)
		got, ok := unquoteShell(q)
		if !ok || got != v {
			t.Errorf("%q quoted as %s reads back as %q, %v", v, q, got, ok)
		}
		out, err := exec.Command("sh", "-c", "printf %s "+q).Output()
		if err != nil || string(out) != v {
			t.Errorf("%q quoted as %s: sh prints %q, %v", v, q, out, err)
		}
	}
}
