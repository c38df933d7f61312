package backends

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
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
}

// startEtcd starts etcd with its data in dir and waits until it serves.
func startEtcd(ctx context.Context, addr, dir string) (*etcdServer, error) {
	g, err := newGate(addr)
	if err != nil {
		return nil, err
	}
	public := url.URL{Scheme: "http", Host: g.Addr().String()}
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
	return &etcdServer{e: e, g: g, sockDir: sockDir, fwd: startForwarder(g, e.Clients[0].Addr())}, nil
}

// Endpoint is the client URL, such as http://127.0.0.1:2379.
func (s *etcdServer) Endpoint() string { return "http://" + s.g.Addr().String() }

// Close cuts every client connection, then stops the server and waits for it.
func (s *etcdServer) Close() error {
	err := s.fwd.Close()
	s.e.Close()
	return errors.Join(err, os.RemoveAll(s.sockDir))
}
