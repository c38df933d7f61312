package esbulk

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/logpipe/logpipe/transfer/internal/backoff"
)

// Setup is what Maintain installs and how it watches Elasticsearch.
type Setup struct {
	// Index is the data stream written to; TemplateName's patterns are
	// that name.
	Index        string
	TemplateName string
	// ManagedBy is the _meta.managed_by of Template: another template
	// with it is a copy of transfer's, installed by hand.
	ManagedBy string
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

// installed is what install found and did.
type installed struct {
	info Info
	// other is the template the cluster takes for the data stream when
	// it is not transfer's own, else nil.
	other *IndexTemplate
	// own tells whether transfer's own template is in place (unused when
	// other outranks it).
	own bool
}

// install asks the cluster what it is, creates the component template if
// it is missing, puts the index template and checks which template the
// cluster takes for s.Index. That is transfer's own, unless another one
// matches the name with a higher priority, or with the same priority
// (then the cluster refuses transfer's): an operator's copy of the
// template under another name, say. Such a template is used as it is if
// it makes data streams; if it does not, install returns
// ErrTemplateConflict.
func (c *Client) install(ctx context.Context, s Setup) (installed, error) {
	var in installed
	var err error
	if in.info, err = c.Info(ctx); err != nil {
		return in, fmt.Errorf("asking Elasticsearch what it is: %w", err)
	}
	if s.Component != "" {
		if _, err := c.CreateComponentTemplate(ctx, s.Component, s.ComponentBody); err != nil {
			return in, err
		}
	}
	putErr := c.PutTemplate(ctx, s.TemplateName, s.Template(in.info))
	if putErr != nil && !isOverlap(putErr) {
		return in, putErr
	}
	in.own = putErr == nil
	chosen, err := c.ChosenTemplate(ctx, s.Index)
	switch {
	case err != nil:
		return in, err
	case chosen == nil && !in.own:
		return in, putErr // the overlapping template is gone since: try again
	case chosen == nil || chosen.Name == s.TemplateName:
		return in, nil
	case !chosen.DataStream:
		why := "outranks transfer's " + s.TemplateName + " for " + s.Index
		if !in.own {
			why = "matches " + s.Index + " with the priority of transfer's " + s.TemplateName + ", so the cluster refuses transfer's"
		}
		return in, fmt.Errorf("%w: index template %s %s, and it makes no data stream, which transfer writes to: delete it, give it another priority, or install configs/index-template.json under the name %s",
			ErrTemplateConflict, chosen, why, s.Index)
	}
	in.other = chosen
	return in, nil
}

// Maintain installs the index template (see Setup), retrying until it
// succeeds or ctx ends, and then closes the channel that Installed
// returns. After that it pings Elasticsearch whenever no request has ended
// for s.PingEvery. It returns nil when ctx ends, and an error wrapping
// ErrTemplateConflict, at once, when the cluster would create the data
// stream from another template that makes no data stream (see install).
func (c *Client) Maintain(ctx context.Context, s Setup, log logrus.FieldLogger) error {
	b := s.Backoff.Start()
	var in installed
	for {
		var err error
		in, err = c.install(ctx, s)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrTemplateConflict) {
			return err
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
	engine := in.info.Distribution
	if engine == "" {
		engine = "elasticsearch"
	}
	engine += " " + in.info.Version
	if in.other == nil {
		log.WithFields(logrus.Fields{"template": s.TemplateName, "engine": engine}).Info("elasticsearch: index template installed")
	} else {
		whose := "a copy of logpipe's installed under another name"
		if s.ManagedBy == "" || in.other.ManagedBy != s.ManagedBy {
			whose = "which is not logpipe's: documents are mapped as it says"
		}
		own := "transfer's own " + s.TemplateName + " is not installed"
		if in.own {
			own = "transfer's own " + s.TemplateName + " is installed but has a lower priority"
		}
		log.WithFields(logrus.Fields{"template": in.other.String(), "engine": engine}).Warn(
			"elasticsearch: " + s.Index + " takes index template " + in.other.Name + ", " + whose + "; transfer uses it as it is and never changes it (" + own + "; delete " + in.other.Name + " to have transfer's apply)")
	}

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
