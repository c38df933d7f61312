package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/IBM/sarama"

	"github.com/logpipe/logpipe/common/conf"
	"github.com/logpipe/logpipe/common/kafkasec"
	"github.com/logpipe/logpipe/common/keys"
)

// binary is the program name in messages and the metric prefix.
const binary = "agent"

// Config is the agent's configuration (flags, LOGPIPE_* environment
// variables, --config YAML).
type Config struct {
	conf.Common
	Kafka              kafkasec.Config // TLS and SASL of the Kafka connections
	Etcd               EtcdSecurity
	Warnings           []string // logged at start: how the configuration was given
	Name               string
	EtcdEndpoints      conf.List
	ConfigKey          string
	StateDir           string
	MaxLineBytes       conf.Bytes
	KafkaCompression   conf.OneOf
	KafkaMaxMessage    conf.Bytes
	KafkaLinger        time.Duration
	MaxInflightBytes   conf.Bytes
	MaxInflightRecords int
	ScanInterval       time.Duration
	PollInterval       time.Duration
	RotatedIdle        time.Duration
	MultilineFlush     time.Duration
	SaveInterval       time.Duration
	SaveDelay          time.Duration
	StatusInterval     time.Duration
	ShutdownTimeout    time.Duration
	Pprof              bool
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	return Config{
		Common:             conf.DefaultCommon("127.0.0.1:9101"),
		Name:               host,
		EtcdEndpoints:      conf.List{"127.0.0.1:2379"},
		StateDir:           "./data/agent",
		MaxLineBytes:       1 << 20,
		KafkaCompression:   conf.OneOf{Value: "lz4", Allowed: []string{"none", "gzip", "snappy", "lz4", "zstd"}},
		KafkaMaxMessage:    1000000,
		MaxInflightBytes:   64 << 20,
		MaxInflightRecords: 16384,
		ScanInterval:       time.Second,
		PollInterval:       250 * time.Millisecond,
		RotatedIdle:        5 * time.Second,
		MultilineFlush:     time.Second,
		SaveInterval:       250 * time.Millisecond,
		SaveDelay:          10 * time.Millisecond,
		StatusInterval:     2 * time.Second,
		ShutdownTimeout:    10 * time.Second,
	}
}

// Register adds the flags to fs.
func (c *Config) Register(fs *flag.FlagSet) {
	c.Common.Register(fs, true)
	c.Kafka.Register(fs)
	c.Etcd.Register(fs)
	fs.StringVar(&c.Name, "name", c.Name, "agent name: its etcd config key is /logpipe/agents/<name>")
	fs.Var(&c.EtcdEndpoints, "etcd-endpoints", "comma-separated etcd endpoints")
	fs.StringVar(&c.ConfigKey, "config-key", c.ConfigKey, "etcd key of the collect config (default /logpipe/agents/<name>)")
	fs.StringVar(&c.StateDir, "state-dir", c.StateDir, "directory of the offset registry")
	fs.Var(&c.MaxLineBytes, "max-line-bytes", "longer lines are cut to this size and flagged \"truncated\"")
	fs.Var(&c.KafkaCompression, "kafka-compression", "record compression: none, gzip, snappy, lz4 or zstd")
	fs.Var(&c.KafkaMaxMessage, "kafka-max-message-bytes", "largest record sent to Kafka (the broker's max.message.bytes or less); longer lines are cut further")
	fs.DurationVar(&c.KafkaLinger, "kafka-linger", c.KafkaLinger, "wait this long to fill a batch (0: send when the previous request is answered)")
	fs.Var(&c.MaxInflightBytes, "max-inflight-bytes", "record bytes sent and not yet acknowledged; reading pauses above it")
	fs.IntVar(&c.MaxInflightRecords, "max-inflight-records", c.MaxInflightRecords, "records sent and not yet acknowledged; reading pauses above it")
	fs.DurationVar(&c.ScanInterval, "scan-interval", c.ScanInterval, "how often globs are matched again for new files")
	fs.DurationVar(&c.PollInterval, "poll-interval", c.PollInterval, "how often a file is checked even when no change was notified (inotify); where changes are not notified (NFS), the longest wait at its end")
	fs.DurationVar(&c.RotatedIdle, "rotated-idle", c.RotatedIdle, "a rotated or deleted file is closed after this long without growth")
	fs.DurationVar(&c.MultilineFlush, "multiline-flush", c.MultilineFlush, "a pending multiline event is sent after this long without a new line")
	fs.DurationVar(&c.SaveInterval, "save-interval", c.SaveInterval, "how often the offset registry is written when nothing was acknowledged")
	fs.DurationVar(&c.SaveDelay, "save-delay", c.SaveDelay, "how long after Kafka acknowledged lines the offset registry is written (the acknowledgements meanwhile share the write)")
	fs.DurationVar(&c.StatusInterval, "status-interval", c.StatusInterval, "how often the status key is written")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "how long a shutdown waits for Kafka to acknowledge records in flight")
	fs.BoolVar(&c.Pprof, "pprof", c.Pprof, "serve /debug/pprof/ on the metrics listener")
}

// Validate checks values that flag parsing cannot.
func (c *Config) Validate() error {
	if err := c.Common.Validate(); err != nil {
		return err
	}
	if err := c.Kafka.Validate(); err != nil {
		return fmt.Errorf("%w: %w", conf.ErrValue, err)
	}
	if err := c.Etcd.Validate(); err != nil {
		return fmt.Errorf("%w: %w", conf.ErrValue, err)
	}
	if err := keys.CheckName(c.Name); err != nil {
		return fmt.Errorf("%w: --name: %w", conf.ErrValue, err)
	}
	if c.ConfigKey == "" {
		c.ConfigKey = keys.AgentConfig(c.Name)
	}
	if c.StateDir == "" {
		return fmt.Errorf("%w: --state-dir is empty", conf.ErrValue)
	}
	if c.MaxLineBytes < 1 {
		return fmt.Errorf("%w: --max-line-bytes %d: must be at least 1", conf.ErrValue, c.MaxLineBytes)
	}
	if c.KafkaMaxMessage < 1024 {
		return fmt.Errorf("%w: --kafka-max-message-bytes %d: must be at least 1KiB", conf.ErrValue, c.KafkaMaxMessage)
	}
	if c.MaxInflightRecords < 1 {
		return fmt.Errorf("%w: --max-inflight-records %d: must be at least 1", conf.ErrValue, c.MaxInflightRecords)
	}
	if c.MaxInflightBytes < c.KafkaMaxMessage {
		return fmt.Errorf("%w: --max-inflight-bytes %s: must be at least --kafka-max-message-bytes (%s)", conf.ErrValue, c.MaxInflightBytes.String(), c.KafkaMaxMessage.String())
	}
	for name, d := range map[string]time.Duration{
		"scan-interval": c.ScanInterval, "poll-interval": c.PollInterval, "rotated-idle": c.RotatedIdle,
		"multiline-flush": c.MultilineFlush, "save-interval": c.SaveInterval, "save-delay": c.SaveDelay, "status-interval": c.StatusInterval,
		"shutdown-timeout": c.ShutdownTimeout,
	} {
		if d <= 0 {
			return fmt.Errorf("%w: --%s %v: must be positive", conf.ErrValue, name, d)
		}
	}
	if c.KafkaLinger < 0 {
		return fmt.Errorf("%w: --kafka-linger %v: must not be negative", conf.ErrValue, c.KafkaLinger)
	}
	return nil
}

// compression maps --kafka-compression to sarama's codec.
func (c *Config) compression() sarama.CompressionCodec {
	switch c.KafkaCompression.Value {
	case "none":
		return sarama.CompressionNone
	case "gzip":
		return sarama.CompressionGZIP
	case "snappy":
		return sarama.CompressionSnappy
	case "zstd":
		return sarama.CompressionZSTD
	}
	return sarama.CompressionLZ4
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
	c.Warnings = append(kafkasec.Warnings(args), c.Etcd.warnings(args)...)
	return c, nil
}

var errNoProducer = errors.New("not connected to Kafka yet")

// EtcdSecurity is how the agent reaches a secured etcd: TLS with the
// cluster's CA and a client certificate, and a user when auth is enabled.
type EtcdSecurity struct {
	CAFile   string
	CertFile string
	KeyFile  string
	Username string
	Password string
	// PasswordFile holds the password; Validate reads it.
	PasswordFile string

	tls *tls.Config // made by Validate; nil: plaintext
}

const etcdPasswordFlag = "etcd-password"

// Register adds the --etcd-* security flags to fs.
func (e *EtcdSecurity) Register(fs *flag.FlagSet) {
	fs.StringVar(&e.CAFile, "etcd-ca-file", e.CAFile, "PEM file of the CAs that sign etcd's certificate; setting it (or a client certificate) turns TLS on")
	fs.StringVar(&e.CertFile, "etcd-cert-file", e.CertFile, "PEM client certificate for etcd (with --etcd-key-file)")
	fs.StringVar(&e.KeyFile, "etcd-key-file", e.KeyFile, "PEM private key of --etcd-cert-file")
	fs.StringVar(&e.Username, "etcd-username", e.Username, "etcd user, when etcd has auth enabled")
	fs.StringVar(&e.Password, etcdPasswordFlag, "", "etcd password; prefer the variable "+conf.EnvName(etcdPasswordFlag)+" or --"+etcdPasswordFlag+conf.FileSuffix+" to the flag, which other users can read in the process list")
	fs.StringVar(&e.PasswordFile, etcdPasswordFlag+conf.FileSuffix, e.PasswordFile, "file holding the etcd password (one trailing newline is trimmed), such as a mounted secret")
}

// Validate checks the values and reads the certificate files.
func (e *EtcdSecurity) Validate() error {
	if err := conf.ReadSecret(&e.Password, etcdPasswordFlag, e.PasswordFile); err != nil {
		return err
	}
	e.PasswordFile = ""
	if (e.CertFile == "") != (e.KeyFile == "") {
		return errors.New("--etcd-cert-file and --etcd-key-file go together")
	}
	if (e.Username == "") != (e.Password == "") {
		return fmt.Errorf("--etcd-username and the password (%s or --%s) go together", conf.EnvName(etcdPasswordFlag), etcdPasswordFlag+conf.FileSuffix)
	}
	e.tls = nil
	if e.CAFile == "" && e.CertFile == "" {
		return nil
	}
	tc, err := kafkasec.TLSConfig(e.CAFile, e.CertFile, e.KeyFile, "")
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	e.tls = tc
	return nil
}

func (e *EtcdSecurity) warnings(args []string) []string {
	if w := conf.SecretWarning(args, etcdPasswordFlag); w != "" {
		return []string{w}
	}
	return nil
}

// describe says what an etcd connection tries, without the password.
func (e *EtcdSecurity) describe() string {
	s := "plaintext (no TLS)"
	if e.tls != nil {
		s = "TLS"
		if e.CAFile != "" {
			s += " (CA " + e.CAFile
		} else {
			s += " (system CAs"
		}
		if e.CertFile != "" {
			s += ", client certificate " + e.CertFile
		}
		s += ")"
	}
	if e.Username != "" {
		return s + ", user " + strconv.Quote(e.Username)
	}
	return s + ", no user"
}
