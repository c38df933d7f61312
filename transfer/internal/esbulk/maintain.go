package esbulk

import (
	"context"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/logpipe/logpipe/transfer/internal/backoff"
)

// Setup is what Maintain installs and how it watches Elasticsearch.
type Setup struct {
	TemplateName string
	// Template is the index template's body for the cluster that GET /
	// describes: Elasticsearch and OpenSearch differ in field types.
	Template func(Info) []byte
	// Component, when set, is a component template that Template is
	// composed of and that belongs to the operators: Maintain creates it
	// with ComponentBody when it does not exist, and never changes it.
	Component     string
	ComponentBody []byte
	Backoff       backoff.Policy
	// PingEvery is how long Elasticsearch may go without a request before
	// Maintain pings it, so that Health notices an outage while idle.
	PingEvery time.Duration
}

// install asks the cluster what it is, creates the component template if
// it is missing and puts the index template.
func (c *Client) install(ctx context.Context, s Setup) (Info, error) {
	info, err := c.Info(ctx)
	if err != nil {
		return info, fmt.Errorf("asking Elasticsearch what it is: %w", err)
	}
	if s.Component != "" {
		if _, err := c.CreateComponentTemplate(ctx, s.Component, s.ComponentBody); err != nil {
			return info, err
		}
	}
	return info, c.PutTemplate(ctx, s.TemplateName, s.Template(info))
}

// Maintain installs the index template (see Setup), retrying until it
// succeeds or ctx ends, and then closes the channel that Installed
// returns. After that it pings Elasticsearch whenever no request has ended
// for s.PingEvery. It returns nil when ctx ends.
func (c *Client) Maintain(ctx context.Context, s Setup, log logrus.FieldLogger) error {
	b := s.Backoff.Start()
	var info Info
	for {
		var err error
		info, err = c.install(ctx, s)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		c.mu.Lock()
		c.setupErr = err
		c.mu.Unlock()
		d := b.Next()
		log.WithError(err).WithField("retry_in", d.Round(time.Millisecond)).Warn("elasticsearch: cannot install the index template yet")
		if backoff.Sleep(ctx, d) != nil {
			return nil
		}
	}
	c.mu.Lock()
	c.setupErr = nil
	c.mu.Unlock()
	close(c.installed)
	distribution := info.Distribution
	if distribution == "" {
		distribution = "elasticsearch"
	}
	log.WithFields(logrus.Fields{"template": s.TemplateName, "engine": distribution + " " + info.Version}).Info("elasticsearch: index template installed")

	t := time.NewTicker(s.PingEvery)
	defer t.Stop()
	healthy := true
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if c.idle() >= s.PingEvery {
			_ = c.Ping(ctx)
		}
		switch err := c.Health(); {
		case err != nil && healthy && ctx.Err() == nil:
			log.WithError(err).Warn("elasticsearch: unreachable; indexing waits and retries")
			healthy = false
		case err == nil && !healthy:
			log.Info("elasticsearch: reachable again")
			healthy = true
		}
	}
}

// Installed is closed once Maintain has installed the index template.
func (c *Client) Installed() <-chan struct{} { return c.installed }

// Ready is nil when the template is installed and Elasticsearch answers.
func (c *Client) Ready() error {
	select {
	case <-c.installed:
	default:
		c.mu.Lock()
		err := c.setupErr
		c.mu.Unlock()
		if err == nil {
			return fmt.Errorf("elasticsearch: index template not installed yet")
		}
		return fmt.Errorf("elasticsearch: index template not installed yet: %w", err)
	}
	if err := c.Health(); err != nil {
		return fmt.Errorf("elasticsearch: %w", err)
	}
	return nil
}
