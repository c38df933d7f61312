// Package kafka holds the sarama settings that transfer's consumer group
// and dead-letter producer share.
package kafka

import (
	"time"

	"github.com/IBM/sarama"
	gometrics "github.com/rcrowley/go-metrics"

	"github.com/logpipe/logpipe/common/kafkasec"
)

func init() {
	// transfer exports Prometheus metrics, not sarama's go-metrics. Nil
	// metrics save their CPU cost and the go-metrics meter goroutine,
	// which never ends.
	gometrics.UseNilMetrics = true
}

// NewConfig returns sarama's defaults with transfer's client id, timeouts
// that notice an unreachable broker within seconds, and the TLS and SASL of
// sec (none when nil; sec has been validated at start).
func NewConfig(clientID string, sec *kafkasec.Config) *sarama.Config {
	c := sarama.NewConfig()
	if sec != nil {
		_ = sec.Apply(c) // fails only for what Validate refuses
	}
	c.ClientID = clientID
	c.Net.DialTimeout = 5 * time.Second
	c.Metadata.Full = false
	c.Metadata.Retry.Max = 2
	c.Metadata.Retry.Backoff = 200 * time.Millisecond
	return c
}
