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
	if err := putAgentConfig(ctx, s, sampleConfig(logDir)); err != nil {
		return err
	}
	svcs := services(cfg, etcd, strings.Join(s.KafkaAddrs(), ","), s.ESURL(), stateDir)
	if s.Security() != nil {
		env, err := backends.ReadEnvFile(s.EnvFile())
		if err != nil {
			return err
		}
		svcs = secureServices(cfg, env, stateDir)
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return writeSamples(gctx, logDir, cfg.SampleInterval) })
	g.Go(func() error {
		err := runServices(gctx, binDir, svcs, log, func(addrs map[string]string) {
			fmt.Fprint(out, summary(addrs, etcd, s.ESURL(), s.OpenSearch() != nil, logDir, s.EnvFile()))
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

// putAgentConfig writes the collect config of the devstack agent, as the
// binaries' etcd user when the stack is secured.
func putAgentConfig(ctx context.Context, s *backends.Stack, config string) error {
	var cli *clientv3.Client
	var err error
	if sec := s.Security(); sec != nil {
		cli, err = sec.EtcdClient(s.EtcdEndpoints())
	} else {
		cli, err = clientv3.New(clientv3.Config{Endpoints: s.EtcdEndpoints(), DialTimeout: 5 * time.Second, Logger: nopZap()})
	}
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
// services' listen addresses by "service/listener" (see runServices), and
// envFile is secure.env on a secured stack ("" otherwise).
func summary(addrs map[string]string, etcd, es string, openSearch bool, logDir, envFile string) string {
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
	// On a secured stack the tools take their settings from secure.env:
	// etcdctl refuses a flag that a variable also sets.
	etcdctl, curl := "etcdctl --endpoints="+etcd, "curl -s"
	if envFile != "" {
		etcdctl, curl = "etcdctl", `curl -s --cacert "$LOGPIPE_ES_CA_FILE" -u "$LOGPIPE_ES_USERNAME:$LOGPIPE_ES_PASSWORD"`
		w("Secured: TLS and passwords everywhere. Load the settings of etcdctl, kcat and curl first:")
		w("  . %s", envFile)
		w("  kcat -L   # the topics, over SASL_SSL ($KCAT_CONFIG)")
		w("")
	}
	w("Tail another file: add an entry to the agent's config (etcdctl from Debian's etcd-client):")
	w("  echo 'hello from my app' >> /tmp/myapp.log")
	w("  %s get --print-value-only %s", etcdctl, keys.AgentConfig(agentName))
	w("  %s put %s '%s'", etcdctl, keys.AgentConfig(agentName), withEntry(sampleConfig(logDir),
		`{"path":"/tmp/myapp.log","job":"myapp","from":"beginning"}`))
	w("  %s get %s   # the agent's status", etcdctl, keys.AgentStatus(agentName))
	w("")
	if openSearch {
		w("Search the index (OpenSearch, through its Elasticsearch-compatible proxy):")
	} else {
		w("Search the index (esfake, the development stand-in for Elasticsearch):")
	}
	w(`  %s '%s/logs-logpipe-default/_search?pretty' -H 'Content-Type: application/json' -d '{"query":{"match":{"message":"error"}},"size":5,"sort":[{"@timestamp":"desc"}]}'`, curl, es)
	w(`  %s '%s/logs-logpipe-default/_count'`, curl, es)
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
