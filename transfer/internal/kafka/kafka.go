// Package kafka holds the sarama settings that transfer's consumer group
// and dead-letter producer share.
package kafka

import (
	"time"

	"github.com/IBM/sarama"
	gometrics "github.com/rcrowley/go-metrics"
)

func init() {
	// transfer exports Prometheus metrics, not sarama's go-metrics. Nil
	// metrics save their CPU cost and the go-metrics meter goroutine,
	// which never ends.
	gometrics.UseNilMetrics = true
}

// NewConfig returns sarama's defaults with transfer's client id and
// timeouts that notice an unreachable broker within seconds.
func NewConfig(clientID string) *sarama.Config {
	c := sarama.NewConfig()
	c.ClientID = clientID
	c.Net.DialTimeout = 5 * time.Second
	c.Metadata.Full = false
	c.Metadata.Retry.Max = 2
	c.Metadata.Retry.Backoff = 200 * time.Millisecond
	return c
}
