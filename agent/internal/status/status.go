// Package status publishes the agent's status at
// /logpipe/status/agents/<name> under an etcd lease, so that the key
// disappears when the agent dies (DESIGN.md, "etcd keys"). The key is
// rewritten every Interval and on Kick; the lease is kept alive with each
// write and granted again when etcd has lost it.
package status

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Status is the value of the status key.
type Status struct {
	ConfigRevision int64     `json:"config_revision"`
	AppliedAt      time.Time `json:"applied_at"`
	Files          any       `json:"files"`
	Errors         []string  `json:"errors"`
}

// Options configure a Publisher.
type Options struct {
	Key      string
	TTL      time.Duration // lease TTL; default 10s
	Interval time.Duration // default 2s
	Timeout  time.Duration // per etcd call; default 3s
	Log      logrus.FieldLogger
	// Explain, when set, turns a failed write's error into the one line
	// logged and returned by Err (the endpoint, what was tried, what to
	// check).
	Explain func(error) error
}

// Publisher writes the status key.
type Publisher struct {
	cli     *clientv3.Client
	opts    Options
	collect func() Status
	kick    chan struct{}
	lastErr atomic.Pointer[error] // of the last write; nil once one succeeds
}

// Err is why the last write of the status key failed, nil when it
// succeeded: a readiness check sees etcd refusing the agent's credential.
func (p *Publisher) Err() error {
	if e := p.lastErr.Load(); e != nil {
		return *e
	}
	return nil
}

// New returns a Publisher that writes what collect returns.
func New(cli *clientv3.Client, opts Options, collect func() Status) *Publisher {
	if opts.TTL <= 0 {
		opts.TTL = 10 * time.Second
	}
	if opts.Interval <= 0 {
		opts.Interval = 2 * time.Second
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 3 * time.Second
	}
	if opts.Log == nil {
		l := logrus.New()
		l.SetLevel(logrus.PanicLevel)
		opts.Log = l
	}
	return &Publisher{cli: cli, opts: opts, collect: collect, kick: make(chan struct{}, 1)}
}

// Kick asks for a write now.
func (p *Publisher) Kick() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Run writes the status until ctx is done, then revokes the lease so that
// the key goes away at once.
func (p *Publisher) Run(ctx context.Context) error {
	var lease clientv3.LeaseID
	failing := false
	t := time.NewTicker(p.opts.Interval)
	defer t.Stop()
	for {
		err := p.publish(ctx, &lease)
		if err != nil && ctx.Err() == nil {
			if p.opts.Explain != nil {
				err = p.opts.Explain(err)
			}
			p.lastErr.Store(&err)
		} else if err == nil {
			p.lastErr.Store(nil)
		}
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			p.opts.Log.WithError(err).Warn("cannot write the status key; retrying")
			failing = true
		case err == nil && failing:
			p.opts.Log.Info("status key written again")
			failing = false
		}
		select {
		case <-ctx.Done():
			if lease != 0 {
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.opts.Timeout)
				_, _ = p.cli.Revoke(rctx, lease)
				cancel()
			}
			return nil
		case <-t.C:
		case <-p.kick:
		}
	}
}

func (p *Publisher) publish(ctx context.Context, lease *clientv3.LeaseID) error {
	data, err := json.Marshal(p.collect())
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	if *lease != 0 {
		_, err := p.cli.KeepAliveOnce(cctx, *lease)
		switch {
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			*lease = 0 // expired or etcd lost it: grant another
		case err != nil:
			// etcd unreachable, or the publisher stopping: the lease is
			// kept, to be kept alive next time or revoked by Run.
			return err
		}
	}
	if *lease == 0 {
		g, err := p.cli.Grant(cctx, int64(p.opts.TTL/time.Second))
		if err != nil {
			return err
		}
		*lease = g.ID
	}
	_, err = p.cli.Put(cctx, p.opts.Key, string(data), clientv3.WithLease(*lease))
	return err
}
