package main

import (
	"flag"
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/logpipe/logpipe/common/conf"
	"github.com/logpipe/logpipe/common/essec"
	"github.com/logpipe/logpipe/common/kafkasec"
	"github.com/logpipe/logpipe/transfer/internal/backoff"
	"github.com/logpipe/logpipe/transfer/internal/catalogue"
	"github.com/logpipe/logpipe/transfer/internal/group"
)

// binary names the program in messages and prefixes its metrics.
const binary = "transfer"

// Config is transfer's configuration: the common flags plus its own.
type Config struct {
	Common conf.Common `yaml:"common"`
	// Kafka is the TLS and SASL of every Kafka connection.
	Kafka kafkasec.Config `yaml:"kafka"`
	// Warnings are logged at start: how the configuration was given.
	Warnings []string `yaml:"-"`

	Topics    conf.List `yaml:"kafka_topics"`
	Group     string    `yaml:"group"`
	Instance  string    `yaml:"group_instance_id"`
	DLQTopic  string    `yaml:"dlq_topic"`
	ParseJSON bool      `yaml:"parse_json"`

	// ES is how to reach the search engine: the --es-* flags.
	essec.Config `yaml:",inline"`

	BatchDocs    int           `yaml:"batch_docs"`
	BatchBytes   conf.Bytes    `yaml:"batch_bytes"`
	BatchWait    time.Duration `yaml:"batch_wait"`
	BackoffMin   time.Duration `yaml:"backoff_min"`
	BackoffMax   time.Duration `yaml:"backoff_max"`
	DrainTimeout time.Duration `yaml:"drain_timeout"`

	// The jobs catalogue (README, "Jobs catalogue").
	JobsTopic    string        `yaml:"jobs_topic"`
	JobsInterval time.Duration `yaml:"jobs_interval"`
}

// DefaultConfig returns the defaults of every flag.
func DefaultConfig() Config {
	return Config{
		Common:    conf.DefaultCommon("127.0.0.1:9102"),
		Topics:    conf.List{"logs"},
		Group:     "logpipe-transfer",
		DLQTopic:  "logs.dlq",
		ParseJSON: true,
		Config: essec.Config{
			ESAddresses: conf.List{"http://127.0.0.1:9200"},
			ESIndex:     essec.DefaultIndex,
			ESTimeout:   time.Minute,
		},
		BatchDocs:    1000,
		BatchBytes:   5 << 20,
		BatchWait:    time.Second,
		BackoffMin:   100 * time.Millisecond,
		BackoffMax:   30 * time.Second,
		DrainTimeout: 10 * time.Second,
		JobsTopic:    "logs.jobs",
		JobsInterval: 10 * time.Second,
	}
}

// Register adds every flag to fs, with c's values as defaults.
func (c *Config) Register(fs *flag.FlagSet) {
	c.Common.Register(fs, true)
	c.Kafka.Register(fs)
	fs.Var(&c.Topics, "kafka-topics", "comma-separated topics to consume (when not set, --kafka-topic)")
	fs.StringVar(&c.Group, "group", c.Group, "Kafka consumer group")
	fs.StringVar(&c.Instance, "group-instance-id", c.Instance, "static group membership: a restarted instance gets its partitions back at once (unique per instance; empty: dynamic)")
	fs.StringVar(&c.DLQTopic, "dlq-topic", c.DLQTopic, "dead-letter topic for records Elasticsearch refuses for their own content (400 parsing or mapping errors) and values that are not records")
	fs.BoolVar(&c.ParseJSON, "parse-json", c.ParseJSON, "also index a message that is a JSON object under json.*")
	c.Config.Register(fs, "comma-separated Elasticsearch URLs", "data stream to write to; its index template is installed at start")
	fs.IntVar(&c.BatchDocs, "batch-docs", c.BatchDocs, "records per bulk request, at most (per partition)")
	fs.Var(&c.BatchBytes, "batch-bytes", "bulk request body size that ends a batch (per partition)")
	fs.DurationVar(&c.BatchWait, "batch-wait", c.BatchWait, "how long a record may wait for its batch to fill")
	fs.DurationVar(&c.BackoffMin, "backoff-min", c.BackoffMin, "first retry delay after a 429, 5xx or unreachable Elasticsearch or Kafka")
	fs.DurationVar(&c.BackoffMax, "backoff-max", c.BackoffMax, "longest retry delay; retries go on forever")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", c.DrainTimeout, "at shutdown or rebalance, how long the batch in progress may take before it is abandoned uncommitted")
	fs.StringVar(&c.JobsTopic, "jobs-topic", c.JobsTopic, "compacted topic of the jobs catalogue, written for the partitions this instance owns and created when missing (empty: no catalogue)")
	fs.DurationVar(&c.JobsInterval, "jobs-interval", c.JobsInterval, "how often the jobs catalogue is written")
}

// parseConfig parses the command line, the environment and the config file.
func parseConfig(args []string, env func(string) (string, bool)) (Config, error) {
	c := DefaultConfig()
	fs := flag.NewFlagSet(binary, flag.ContinueOnError)
	c.Register(fs)
	if err := conf.Parse(fs, args, env); err != nil {
		return c, err
	}
	// --kafka-topics falls back to the common --kafka-topic.
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["kafka-topics"] && set["kafka-topic"] {
		c.Topics = conf.List{c.Common.KafkaTopic}
	}
	c.Warnings = kafkasec.Warnings(args)
	c.Warnings = append(c.Warnings, essec.Warnings(args)...)
	return c, c.Validate()
}

var (
	// Kafka's rule for topic names.
	topicRE = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)
)

// Validate checks every value; the error names the flag and the value.
func (c *Config) Validate() error {
	bad := func(flag string, value any, why string) error {
		return fmt.Errorf("%w: --%s %v: %s", conf.ErrValue, flag, value, why)
	}
	if err := c.Common.Validate(); err != nil {
		return err
	}
	if err := c.Kafka.Validate(); err != nil {
		return fmt.Errorf("%w: %w", conf.ErrValue, err)
	}
	if err := c.Config.Validate(); err != nil {
		return fmt.Errorf("%w: %w", conf.ErrValue, err)
	}
	if len(c.ESAddresses) == 0 {
		return bad("es-addresses", `""`, "empty")
	}
	for _, t := range c.Topics {
		if !topicRE.MatchString(t) {
			return bad("kafka-topics", t, "not a Kafka topic name (letters, digits, '.', '_', '-')")
		}
	}
	switch {
	case c.Group == "":
		return bad("group", `""`, "empty")
	case !topicRE.MatchString(c.DLQTopic):
		return bad("dlq-topic", c.DLQTopic, "not a Kafka topic name (letters, digits, '.', '_', '-')")
	case slices.Contains(c.Topics, c.DLQTopic):
		return bad("dlq-topic", c.DLQTopic, "is also in --kafka-topics")
	case c.BatchDocs < 1:
		return bad("batch-docs", c.BatchDocs, "must be at least 1")
	case c.BatchBytes < 1:
		return bad("batch-bytes", c.BatchBytes.String(), "must be at least 1")
	case c.BatchWait <= 0:
		return bad("batch-wait", c.BatchWait, "must be positive")
	case c.BackoffMin <= 0:
		return bad("backoff-min", c.BackoffMin, "must be positive")
	case c.BackoffMax < c.BackoffMin:
		return bad("backoff-max", c.BackoffMax, "below --backoff-min "+c.BackoffMin.String())
	case c.DrainTimeout < 0:
		return bad("drain-timeout", c.DrainTimeout, "negative")
	case c.JobsTopic != "" && !topicRE.MatchString(c.JobsTopic):
		return bad("jobs-topic", c.JobsTopic, "not a Kafka topic name (letters, digits, '.', '_', '-')")
	case c.JobsTopic != "" && (slices.Contains(c.Topics, c.JobsTopic) || c.JobsTopic == c.DLQTopic):
		return bad("jobs-topic", c.JobsTopic, "is also a log or dead-letter topic")
	case c.JobsInterval < time.Second:
		return bad("jobs-interval", c.JobsInterval, "below 1s")
	}
	return nil
}

func (c *Config) backoff() backoff.Policy {
	return backoff.Policy{Min: c.BackoffMin, Max: c.BackoffMax}
}

func (c *Config) catalogueConfig() catalogue.Config {
	return catalogue.Config{
		Brokers:  c.Common.KafkaBrokers,
		Topic:    c.JobsTopic,
		Interval: c.JobsInterval,
		ClientID: "logpipe-" + binary,
		Backoff:  c.backoff(),
		Security: &c.Kafka,
	}
}

func (c *Config) groupConfig() group.Config {
	return group.Config{
		Brokers:      c.Common.KafkaBrokers,
		Topics:       c.Topics,
		Group:        c.Group,
		InstanceID:   c.Instance,
		ClientID:     "logpipe-" + binary,
		BatchDocs:    c.BatchDocs,
		BatchBytes:   int(c.BatchBytes),
		BatchWait:    c.BatchWait,
		DrainTimeout: c.DrainTimeout,
		Security:     &c.Kafka,
		Backoff:      c.backoff(),
	}
}
