package securetest

import (
	"context"
	"net/url"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"

	"github.com/logpipe/logpipe/common/keys"
)

// Etcd is an etcd in this process that serves TLS, requires a client
// certificate of its PKI, and has auth enabled with a root user.
type Etcd struct {
	Endpoint string // https://127.0.0.1:port
	PKI      *PKI
	Root     *clientv3.Client // as root
}

// StartEtcd starts the etcd on a port the kernel picks; tb stops it.
func StartEtcd(tb testing.TB, pki *PKI, rootPassword string) *Etcd {
	tb.Helper()
	cfg := embed.NewConfig()
	cfg.Name = "securetest"
	cfg.Dir = tb.TempDir()
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	// The least bcrypt cost: every authentication hashes the password, and
	// the default cost takes seconds under the race detector.
	cfg.BcryptCost = uint(bcrypt.MinCost)
	client := url.URL{Scheme: "https", Host: "127.0.0.1:0"}
	peer := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.ClientTLSInfo = transport.TLSInfo{
		CertFile:       pki.ServerCert,
		KeyFile:        pki.ServerKey,
		TrustedCAFile:  pki.CAFile,
		ClientCertAuth: true,
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(time.Minute):
		tb.Fatal("etcd did not start within a minute")
	}
	endpoint := "https://" + e.Clients[0].Addr().String()
	et := &Etcd{Endpoint: endpoint, PKI: pki}

	admin := et.Client(tb, "", "")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, step := range []func() error{
		func() error { _, err := admin.UserAdd(ctx, "root", rootPassword); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := admin.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			tb.Fatal(err)
		}
	}
	et.Root = et.Client(tb, "root", rootPassword)
	return et
}

// Client is a client of e with its PKI's client certificate, as user (none
// when ""); tb closes it.
func (e *Etcd) Client(tb testing.TB, user, password string) *clientv3.Client {
	tb.Helper()
	tc, err := transport.TLSInfo{CertFile: e.PKI.ClientCert, KeyFile: e.PKI.ClientKey, TrustedCAFile: e.PKI.CAFile}.ClientConfig()
	if err != nil {
		tb.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: []string{e.Endpoint}, TLS: tc, Username: user, Password: password,
		DialTimeout: 10 * time.Second, Logger: zap.NewNop(),
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cli.Close() })
	return cli
}

// AddAgent adds the user of the agent name with the smallest role it needs:
// read its config key, read and write its status key (README, "Connecting
// to secured clusters").
func (e *Etcd) AddAgent(tb testing.TB, name, password string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	role := "logpipe-agent-" + name
	for _, step := range []func() error{
		func() error { _, err := e.Root.RoleAdd(ctx, role); return err },
		func() error {
			_, err := e.Root.RoleGrantPermission(ctx, role, keys.AgentConfig(name), "", clientv3.PermissionType(clientv3.PermRead))
			return err
		},
		func() error {
			_, err := e.Root.RoleGrantPermission(ctx, role, keys.AgentStatus(name), "", clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := e.Root.UserAdd(ctx, "agent-"+name, password); return err },
		func() error { _, err := e.Root.UserGrantRole(ctx, "agent-"+name, role); return err },
	} {
		if err := step(); err != nil {
			tb.Fatal(err)
		}
	}
}

// AgentEnv is the environment an agent named name needs to reach e as its
// user (AddAgent).
func (e *Etcd) AgentEnv(name, password string) []string {
	return []string{
		"LOGPIPE_ETCD_ENDPOINTS=" + e.Endpoint,
		"LOGPIPE_ETCD_CA_FILE=" + e.PKI.CAFile,
		"LOGPIPE_ETCD_CERT_FILE=" + e.PKI.ClientCert,
		"LOGPIPE_ETCD_KEY_FILE=" + e.PKI.ClientKey,
		"LOGPIPE_ETCD_USERNAME=agent-" + name,
		"LOGPIPE_ETCD_PASSWORD=" + password,
	}
}
