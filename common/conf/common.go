package conf

import (
	"flag"
	"fmt"

	"github.com/sirupsen/logrus"
)

// Common holds the flags every binary takes (DESIGN.md, "Flags and environment").
type Common struct {
	LogLevel     OneOf
	LogFormat    OneOf
	KafkaBrokers List
	KafkaTopic   string
	MetricsAddr  string
}

// DefaultCommon returns the defaults; metricsAddr differs per binary.
func DefaultCommon(metricsAddr string) Common {
	levels := make([]string, 0, len(logrus.AllLevels))
	for _, l := range logrus.AllLevels {
		levels = append(levels, l.String())
	}
	return Common{
		LogLevel:     OneOf{Value: "info", Allowed: levels},
		LogFormat:    OneOf{Value: "text", Allowed: []string{"text", "json"}},
		KafkaBrokers: List{"127.0.0.1:9092"},
		KafkaTopic:   "logs",
		MetricsAddr:  metricsAddr,
	}
}

// Register adds the common flags to fs, with c's current values as defaults.
// Binaries without a separate metrics listener pass withMetrics false.
func (c *Common) Register(fs *flag.FlagSet, withMetrics bool) {
	fs.Var(&c.LogLevel, "log-level", "log level: "+joinAllowed(c.LogLevel.Allowed))
	fs.Var(&c.LogFormat, "log-format", "log format: text or json")
	fs.Var(&c.KafkaBrokers, "kafka-brokers", "comma-separated Kafka bootstrap brokers")
	fs.StringVar(&c.KafkaTopic, "kafka-topic", c.KafkaTopic, "Kafka topic of log records")
	if withMetrics {
		fs.StringVar(&c.MetricsAddr, "metrics-addr", c.MetricsAddr, "listen address for /metrics, /healthz, /readyz and /debug/logs")
	}
}

// Validate checks the common values.
func (c *Common) Validate() error {
	if c.KafkaTopic == "" {
		return fmt.Errorf("%w: --kafka-topic is empty", ErrValue)
	}
	return nil
}

func joinAllowed(a []string) string {
	s := ""
	for i, x := range a {
		if i > 0 {
			s += ", "
		}
		s += x
	}
	return s
}
