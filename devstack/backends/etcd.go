package backends

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"
)

// etcdServer is a single-member etcd cluster in this process. Clients reach
// it through a gate on the public address; the server itself listens on
// kernel-chosen loopback ports, so that an outage (gate down) keeps the
// server, its data and its leases as they are.
type etcdServer struct {
	e       *embed.Etcd
	g       *gate
	fwd     *forwarder
	sockDir string // holds the server's own client socket
	scheme  string // http, or https when secured
}

// startEtcd starts etcd with its data in dir and waits until it serves.
// With sec, the gate serves TLS and requires a client certificate of sec's
// CA: etcd itself, on its socket, sees the connections after TLS.
func startEtcd(ctx context.Context, addr, dir string, sec *Security) (*etcdServer, error) {
	g, err := newGate(addr)
	if err != nil {
		return nil, err
	}
	scheme := "http"
	if sec != nil {
		scheme = "https"
	}
	public := url.URL{Scheme: scheme, Host: g.Addr().String()}
	// The server's own client listener is a unix socket in a directory of
	// its own: etcd's HTTP/JSON gateway dials that listener at the address
	// configured, so a TCP port would have to be picked before etcd binds
	// it, and another process could take it in between. The peer URL keeps
	// port 0: nothing dials it, and it stays the same from run to run, as
	// the member recorded in a kept data directory requires.
	sockDir, err := os.MkdirTemp("", "logpipe-etcd-")
	if err != nil {
		g.Close()
		return nil, fmt.Errorf("starting etcd: %w", err)
	}
	fail := func(err error) (*etcdServer, error) {
		g.Close()
		os.RemoveAll(sockDir)
		return nil, fmt.Errorf("starting etcd: %w", err)
	}
	internalClient := url.URL{Scheme: "unix", Path: filepath.Join(sockDir, "client.sock")}
	internal := url.URL{Scheme: "http", Host: "127.0.0.1:0"}

	cfg := embed.NewConfig()
	cfg.Name = "devstack"
	cfg.Dir = dir
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.ListenClientUrls = []url.URL{internalClient}
	cfg.AdvertiseClientUrls = []url.URL{public}
	cfg.ListenPeerUrls = []url.URL{internal}
	cfg.AdvertisePeerUrls = []url.URL{internal}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.ListenMetricsUrls = nil
	cfg.EnablePprof = false
	// A development server: fsync buys nothing here but slowness. Data
	// still survives a clean stop and a killed process.
	cfg.UnsafeNoFsync = true
	// A single member elects itself after one election timeout, at a
	// random point between one and two of them: keep it short.
	cfg.TickMs = 10
	cfg.ElectionMs = 100
	// The least bcrypt cost: every authentication hashes the password, and
	// the default cost takes a good part of a second under the race
	// detector. The passwords are a development stack's.
	cfg.BcryptCost = uint(bcrypt.MinCost)

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fail(err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return fail(err)
	case <-ctx.Done():
		e.Close()
		return fail(context.Cause(ctx))
	}
	if len(e.Clients) == 0 {
		e.Close()
		return fail(errors.New("no client listener"))
	}
	var tc *tls.Config
	if sec != nil {
		tc = sec.serverTLS(true)
		// gRPC clients insist on HTTP/2 named in the handshake; etcd's
		// HTTP endpoints (/health, /version) answer HTTP/1.1.
		tc.NextProtos = []string{"h2", "http/1.1"}
	}
	return &etcdServer{e: e, g: g, sockDir: sockDir, scheme: scheme,
		fwd: startForwarder(g, e.Clients[0].Addr(), tc)}, nil
}

// Endpoint is the client URL, such as http://127.0.0.1:2379 (https when
// secured).
func (s *etcdServer) Endpoint() string { return s.scheme + "://" + s.g.Addr().String() }

// Close cuts every client connection, then stops the server and waits for it.
func (s *etcdServer) Close() error {
	err := s.fwd.Close()
	s.e.Close()
	return errors.Join(err, os.RemoveAll(s.sockDir))
}
