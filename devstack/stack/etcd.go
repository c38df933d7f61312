package stack

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"syscall"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// etcdServer is a single-member etcd cluster in this process. Clients reach
// it through a gate on the public address; the server itself listens on
// kernel-chosen loopback ports, so that an outage (gate down) keeps the
// server, its data and its leases as they are.
type etcdServer struct {
	e   *embed.Etcd
	g   *gate
	fwd *forwarder
}

// etcdStartTries bounds the starts of etcd whose internal client port,
// free when picked, was taken before etcd bound it.
const etcdStartTries = 5

// startEtcd starts etcd with its data in dir and waits until it serves.
func startEtcd(ctx context.Context, addr, dir string) (*etcdServer, error) {
	g, err := newGate(addr)
	if err != nil {
		return nil, err
	}
	for try := 1; ; try++ {
		s, err := startEtcdBehind(ctx, g, dir)
		if err == nil {
			return s, nil
		}
		if try == etcdStartTries || !addrInUse(err) {
			g.Close()
			return nil, err
		}
	}
}

// addrInUse reports whether err is a bind that found its address taken.
func addrInUse(err error) bool {
	return errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")
}

// startEtcdBehind starts etcd serving through g.
func startEtcdBehind(ctx context.Context, g *gate, dir string) (*etcdServer, error) {
	public := url.URL{Scheme: "http", Host: g.Addr().String()}
	// The internal client URL needs a real port: etcd's HTTP/JSON gateway
	// dials it as configured. The peer URL keeps port 0: nothing dials it,
	// and it stays the same from run to run, as the member recorded in a
	// kept data directory requires.
	clientAddr, err := pickAddr()
	if err != nil {
		return nil, fmt.Errorf("starting etcd: %w", err)
	}
	internalClient := url.URL{Scheme: "http", Host: clientAddr}
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
		return nil, fmt.Errorf("starting etcd: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("starting etcd: %w", err)
	case <-ctx.Done():
		e.Close()
		return nil, fmt.Errorf("starting etcd: %w", context.Cause(ctx))
	}
	if len(e.Clients) == 0 {
		e.Close()
		return nil, errors.New("starting etcd: no client listener")
	}
	return &etcdServer{e: e, g: g, fwd: startForwarder(g, e.Clients[0].Addr().String())}, nil
}

// Endpoint is the client URL, such as http://127.0.0.1:2379.
func (s *etcdServer) Endpoint() string { return "http://" + s.g.Addr().String() }

// Close cuts every client connection, then stops the server and waits for it.
func (s *etcdServer) Close() error {
	err := s.fwd.Close()
	s.e.Close()
	return err
}

// pickAddr returns a loopback address with a port that was free a moment ago.
func pickAddr() (string, error) {
	ln, err := listen("")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}
