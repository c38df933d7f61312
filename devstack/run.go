package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/logpipe/logpipe/common/conf"
	"github.com/logpipe/logpipe/common/logging"
	"github.com/logpipe/logpipe/devstack/backends"
	"github.com/logpipe/logpipe/devstack/esfake"
	"github.com/logpipe/logpipe/devstack/real"
)

// run starts the backends, prints their endpoints and "ready" to out, and
// stops them when ctx ends.
func run(ctx context.Context, cfg Config, out io.Writer) error {
	log, err := logging.New(cfg.LogLevel.Value, cfg.LogFormat.Value, os.Stderr, nil)
	if err != nil {
		return err
	}
	if cfg.Fetch {
		return fetch(ctx, cfg, log, out)
	}
	s, err := backends.Start(ctx, backends.Options{
		EtcdAddr:   cfg.EtcdAddr,
		KafkaAddr:  cfg.KafkaAddr,
		ESAddr:     cfg.ESAddr,
		DataDir:    cfg.DataDir,
		Partitions: cfg.Partitions,
		Backends:   cfg.Backends.Value,
		Secure:     cfg.Secure,
		Logger:     log,
	})
	if err != nil {
		return err
	}
	fmt.Fprint(out, endpoints(s))
	where := "in memory"
	if cfg.Backends.Value == backends.Real {
		where = "in temporary directories"
	}
	if cfg.DataDir != "" {
		where = cfg.DataDir
	}
	if cfg.All {
		err = runAll(ctx, cfg, s, log, out)
	} else {
		fmt.Fprintln(out, "ready")
		log.WithField("data", where).Info("devstack ready")
		<-ctx.Done()
	}
	log.Info("devstack stopping")
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	log.Info("devstack stopped")
	return err
}

// endpoints is one line per backend, saying what runs:
//
//	etcd      http://127.0.0.1:2379
//	kafka     127.0.0.1:9092 (topics logs, logs.dlq; 6 partitions)
//	esfake    ... (esfake's own startup line)
//
// or with real backends:
//
//	etcd       http://127.0.0.1:2379
//	kafka      127.0.0.1:9092 (Apache Kafka 4.1.1; topics logs, logs.dlq; 6 partitions)
//	opensearch http://127.0.0.1:9200 (OpenSearch 2.19.6 behind an Elasticsearch-compatible proxy)
//
// With --secure, etcd's and the search endpoint's URLs are https, the kafka
// line says "SASL_SSL, SCRAM-SHA-512; " before the topics, and one more
// line names the settings file (no password is ever printed):
//
//	secure.env /tmp/logpipe-devstack-secure-123/secure.env
func endpoints(s *backends.Stack) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-9s %s\n", "etcd", strings.Join(s.EtcdEndpoints(), ","))
	kind := ""
	if k := s.RealKafka(); k != nil {
		kind = "Apache Kafka " + k.Version() + "; "
	}
	if s.Security() != nil {
		kind += "SASL_SSL, " + backends.KafkaMechanism + "; "
	}
	fmt.Fprintf(&b, "%-9s %s (%stopics %s; %d partitions)\n", "kafka",
		strings.Join(s.KafkaAddrs(), ","), kind, strings.Join(s.Topics(), ", "), s.Partitions())
	if o := s.OpenSearch(); o != nil {
		fmt.Fprintf(&b, "%-9s %s (OpenSearch %s behind an Elasticsearch-compatible proxy)\n", "opensearch", o.URL(), o.Version())
	} else {
		fmt.Fprintln(&b, esfake.StartupLine(s.ESURL()))
	}
	if env := s.EnvFile(); env != "" {
		fmt.Fprintf(&b, "%s %s\n", backends.EnvFile, env)
	}
	return b.String()
}

// fetch prepares the real backends' jars and Java mains (Maven and javac,
// the first time) and says where they are.
func fetch(ctx context.Context, cfg Config, log logrus.FieldLogger, out io.Writer) error {
	if cfg.Backends.Value != backends.Real {
		return fmt.Errorf("%w: --fetch is for --backends real", conf.ErrValue)
	}
	dist, err := real.Prepare(ctx, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "real backends ready to start: Apache Kafka %s and OpenSearch %s, in %s\n", dist.KafkaVersion, dist.OpenSearchVersion, dist.Dir)
	return nil
}
