package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/logpipe/logpipe/common/keys"
	"github.com/logpipe/logpipe/devstack/backends"
)

// runAll is devstack --all: the sample writer, the agent config in etcd, and
// agent, transfer and livetail as child processes. It prints how to reach
// everything, then "ready", and returns when ctx ends or a service fails.
func runAll(ctx context.Context, cfg Config, s *backends.Stack, log logrus.FieldLogger, out io.Writer) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding the service binaries: %w", err)
	}
	binDir := filepath.Dir(exe)

	// Sample logs and the agent's offsets live with the data when it is kept,
	// and in a fresh directory otherwise, so that a second run starts clean.
	workDir := filepath.Join(cfg.DataDir, "run")
	if cfg.DataDir == "" {
		if workDir, err = os.MkdirTemp("", "logpipe-run-"); err != nil {
			return err
		}
		defer os.RemoveAll(workDir)
	}
	logDir, stateDir := filepath.Join(workDir, "logs"), filepath.Join(workDir, "agent-state")
	for _, d := range []string{logDir, stateDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}

	etcd := strings.Join(s.EtcdEndpoints(), ",")
	if err := putAgentConfig(ctx, s.EtcdEndpoints(), sampleConfig(logDir)); err != nil {
		return err
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return writeSamples(gctx, logDir, cfg.SampleInterval) })
	g.Go(func() error {
		svcs := services(cfg, etcd, strings.Join(s.KafkaAddrs(), ","), s.ESURL(), stateDir)
		err := runServices(gctx, binDir, svcs, log, func(addrs map[string]string) {
			fmt.Fprint(out, summary(addrs, etcd, s.ESURL(), s.OpenSearch() != nil, logDir))
			fmt.Fprintln(out, "ready")
			log.Info("devstack ready: whole pipeline running")
		})
		if err != nil {
			return err
		}
		return gctx.Err() // stopping the services stops the writer too
	})
	if err := g.Wait(); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// putAgentConfig writes the collect config of the devstack agent.
func putAgentConfig(ctx context.Context, endpoints []string, config string) error {
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: nopZap()})
	if err != nil {
		return fmt.Errorf("etcd client: %w", err)
	}
	defer cli.Close()
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := cli.Put(pctx, keys.AgentConfig(agentName), config); err != nil {
		return fmt.Errorf("putting the agent config: %w", err)
	}
	return nil
}

// summary tells a person what is running and how to use it; addrs are the
// services' listen addresses by "service/listener" (see runServices).
func summary(addrs map[string]string, etcd, es string, openSearch bool, logDir string) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("")
	w("logpipe is running:")
	w("  viewer      http://%s/?job=web&tail=100", addrs["livetail/http"])
	w("  jobs        web, checkout, worker (sample logs in %s)", logDir)
	w("  metrics     agent http://%s/metrics  transfer http://%s/metrics  livetail http://%s/metrics",
		addrs["agent/metrics"], addrs["transfer/metrics"], addrs["livetail/metrics"])
	w("  own logs    http://%s/debug/logs (and the other two metrics addresses)", addrs["agent/metrics"])
	w("")
	w("Tail another file: add an entry to the agent's config (etcdctl from Debian's etcd-client):")
	w("  echo 'hello from my app' >> /tmp/myapp.log")
	w("  etcdctl --endpoints=%s get --print-value-only %s", etcd, keys.AgentConfig(agentName))
	w("  etcdctl --endpoints=%s put %s '%s'", etcd, keys.AgentConfig(agentName), withEntry(sampleConfig(logDir),
		`{"path":"/tmp/myapp.log","job":"myapp","from":"beginning"}`))
	w("  etcdctl --endpoints=%s get %s   # the agent's status", etcd, keys.AgentStatus(agentName))
	w("")
	if openSearch {
		w("Search the index (OpenSearch, through its Elasticsearch-compatible proxy):")
	} else {
		w("Search the index (esfake, the development stand-in for Elasticsearch):")
	}
	w(`  curl -s '%s/logs-logpipe-default/_search?pretty' -H 'Content-Type: application/json' -d '{"query":{"match":{"message":"error"}},"size":5,"sort":[{"@timestamp":"desc"}]}'`, es)
	w(`  curl -s '%s/logs-logpipe-default/_count'`, es)
	w("")
	w("Ctrl-C stops everything.")
	return b.String()
}

// withEntry is config (a JSON array) with entry appended, on one line.
func withEntry(config, entry string) string {
	var b bytes.Buffer
	_ = json.Compact(&b, []byte(config))
	return strings.TrimSuffix(b.String(), "]") + "," + entry + "]"
}

func nopZap() *zap.Logger { return zap.NewNop() }
