package main

import (
	"flag"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/logpipe/logpipe/common/conf"
	"github.com/logpipe/logpipe/devstack/backends"
)

// binary is the program name in messages.
const binary = "devstack"

// Config is devstack's configuration (flags, LOGPIPE_* environment
// variables, --config YAML).
type Config struct {
	LogLevel   conf.OneOf
	LogFormat  conf.OneOf
	Backends   conf.OneOf
	EtcdAddr   string
	KafkaAddr  string
	ESAddr     string
	DataDir    string
	Partitions int
	All        bool
	Fetch      bool
	Secure     bool

	// Used with --all only.
	ViewerAddr          string
	AgentMetricsAddr    string
	TransferMetricsAddr string
	LivetailMetricsAddr string
	SampleInterval      time.Duration
}

// DefaultConfig returns the defaults: the backends' usual ports on loopback,
// data in memory.
func DefaultConfig() Config {
	common := conf.DefaultCommon("")
	return Config{
		LogLevel:   common.LogLevel,
		LogFormat:  common.LogFormat,
		Backends:   conf.OneOf{Value: backends.Embedded, Allowed: []string{backends.Embedded, backends.Real}},
		EtcdAddr:   "127.0.0.1:2379",
		KafkaAddr:  "127.0.0.1:9092",
		ESAddr:     "127.0.0.1:9200",
		Partitions: 6,

		ViewerAddr:          "127.0.0.1:8080",
		AgentMetricsAddr:    "127.0.0.1:9101",
		TransferMetricsAddr: "127.0.0.1:9102",
		LivetailMetricsAddr: "127.0.0.1:9103",
		SampleInterval:      200 * time.Millisecond,
	}
}

// Register adds the flags to fs.
func (c *Config) Register(fs *flag.FlagSet) {
	fs.Var(&c.LogLevel, "log-level", "log level: "+strings.Join(c.LogLevel.Allowed, ", "))
	fs.Var(&c.LogFormat, "log-format", "log format: text or json")
	fs.Var(&c.Backends, "backends", "embedded: kfake and esfake in this process; real: Apache Kafka and OpenSearch in JVMs (Java and Maven needed; jars fetched once)")
	fs.StringVar(&c.EtcdAddr, "etcd-addr", c.EtcdAddr, "etcd client listen address (port 0: a free port)")
	fs.StringVar(&c.KafkaAddr, "kafka-addr", c.KafkaAddr, "Kafka listen address (port 0: a free port)")
	fs.StringVar(&c.ESAddr, "es-addr", c.ESAddr, "Elasticsearch API listen address: esfake's, or the proxy's in front of OpenSearch (port 0: a free port)")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory for etcd, Kafka (and OpenSearch) data, kept across runs (empty: gone on exit)")
	fs.IntVar(&c.Partitions, "partitions", c.Partitions, "partitions of the logs and logs.dlq topics")
	fs.BoolVar(&c.Fetch, "fetch", c.Fetch, "with --backends real: fetch the jars the JVMs need (once, into the cache) and exit")
	fs.BoolVar(&c.Secure, "secure", c.Secure, "serve Kafka over SASL_SSL (SCRAM-SHA-512), etcd over TLS with client certificates and auth, and the Elasticsearch API over HTTPS with basic auth, from a throwaway CA; write secure.env (settings and passwords for the binaries, etcdctl and kcat) in the data directory")
	fs.BoolVar(&c.All, "all", c.All, "also run agent, transfer, livetail (from the directory of this binary) and a sample log writer")
	fs.StringVar(&c.ViewerAddr, "viewer-addr", c.ViewerAddr, "with --all: livetail's listen address (the viewer; port 0: a free port)")
	fs.StringVar(&c.AgentMetricsAddr, "agent-metrics-addr", c.AgentMetricsAddr, "with --all: the agent's metrics address (port 0: a free port)")
	fs.StringVar(&c.TransferMetricsAddr, "transfer-metrics-addr", c.TransferMetricsAddr, "with --all: transfer's metrics address (port 0: a free port)")
	fs.StringVar(&c.LivetailMetricsAddr, "livetail-metrics-addr", c.LivetailMetricsAddr, "with --all: livetail's metrics address (port 0: a free port)")
	fs.DurationVar(&c.SampleInterval, "sample-interval", c.SampleInterval, "with --all: how often the sample writer appends to its logs")
}

// Validate checks values that flag parsing cannot.
func (c *Config) Validate() error {
	for _, a := range []struct{ flag, addr string }{
		{"etcd-addr", c.EtcdAddr}, {"kafka-addr", c.KafkaAddr}, {"es-addr", c.ESAddr},
		{"viewer-addr", c.ViewerAddr}, {"agent-metrics-addr", c.AgentMetricsAddr}, {"transfer-metrics-addr", c.TransferMetricsAddr},
		{"livetail-metrics-addr", c.LivetailMetricsAddr},
	} {
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			return fmt.Errorf("%w: --%s %q: want host:port", conf.ErrValue, a.flag, a.addr)
		}
	}
	if c.Partitions < 1 {
		return fmt.Errorf("%w: --partitions %d: must be at least 1", conf.ErrValue, c.Partitions)
	}
	if c.SampleInterval <= 0 {
		return fmt.Errorf("%w: --sample-interval %v: must be positive", conf.ErrValue, c.SampleInterval)
	}
	return nil
}

// parseConfig parses args and the environment.
func parseConfig(args []string, env func(string) (string, bool)) (Config, error) {
	c := DefaultConfig()
	fs := flag.NewFlagSet(binary, flag.ContinueOnError)
	c.Register(fs)
	if err := conf.Parse(fs, args, env); err != nil {
		return c, err
	}
	if err := c.Validate(); err != nil {
		return c, err
	}
	return c, nil
}
