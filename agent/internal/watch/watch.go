// Package watch follows one etcd key: it reads the key's value, then
// watches it from the next revision, and starts over with a fresh read
// whenever the watch ends (etcd restarted or unreachable for long, the watch
// cancelled, the revision compacted). The caller reconciles each value it is
// given, so a value seen twice does no harm.
package watch

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/sirupsen/logrus"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Value is the key's value at a revision.
type Value struct {
	Revision int64 // the key's mod revision; 0 when it does not exist
	Data     []byte
	Exists   bool
}

// Options configure Run.
type Options struct {
	Key         string
	Log         logrus.FieldLogger
	GetTimeout  time.Duration // per read; default 5s
	MaxBackoff  time.Duration // between failed reads; default 5s
	MinBackoff  time.Duration // default 100ms
	OnConnected func(bool)    // optional: told whether the last read succeeded
}

// Client is the part of *clientv3.Client that Run uses.
type Client interface {
	clientv3.KV
	clientv3.Watcher
}

// Run calls apply with the key's current value and then with every change,
// from one goroutine, until ctx is done. It returns nil then.
func Run(ctx context.Context, cli Client, opts Options, apply func(Value)) error {
	if opts.GetTimeout <= 0 {
		opts.GetTimeout = 5 * time.Second
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 5 * time.Second
	}
	log := opts.Log
	if log == nil {
		l := logrus.New()
		l.SetLevel(logrus.PanicLevel)
		log = l
	}
	log = log.WithField("key", opts.Key)
	connected := func(ok bool) {
		if opts.OnConnected != nil {
			opts.OnConnected(ok)
		}
	}
	var backoff time.Duration
	failing := false
	for ctx.Err() == nil {
		gctx, cancel := context.WithTimeout(ctx, opts.GetTimeout)
		resp, err := cli.Get(gctx, opts.Key)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			connected(false)
			if !failing {
				log.WithError(err).Warn("cannot read the config key; retrying")
				failing = true
			}
			backoff = min(max(2*backoff, opts.MinBackoff), opts.MaxBackoff)
			if !sleep(ctx, backoff/2+rand.N(backoff/2+1)) {
				return nil
			}
			continue
		}
		if failing {
			log.Info("config key readable again")
			failing = false
		}
		connected(true)
		backoff = 0
		v := Value{}
		if len(resp.Kvs) > 0 {
			kv := resp.Kvs[0]
			v = Value{Revision: kv.ModRevision, Data: kv.Value, Exists: true}
		}
		apply(v)
		reason := follow(ctx, cli, opts.Key, resp.Header.Revision+1, apply)
		if ctx.Err() != nil {
			return nil
		}
		log.WithError(reason).Info("config watch ended; reading the key again")
		if !sleep(ctx, opts.MinBackoff) {
			return nil
		}
	}
	return nil
}

// errWatchClosed is the reason a watch channel closed without an error.
var errWatchClosed = errors.New("watch channel closed")

// follow watches key from rev and applies every change until the watch ends.
func follow(ctx context.Context, cli Client, key string, rev int64, apply func(Value)) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for resp := range cli.Watch(wctx, key, clientv3.WithRev(rev)) {
		if resp.CompactRevision != 0 {
			return rpctypes.ErrCompacted
		}
		if err := resp.Err(); err != nil {
			return err
		}
		if resp.Canceled {
			return errWatchClosed
		}
		for _, ev := range resp.Events {
			switch ev.Type {
			case clientv3.EventTypePut:
				apply(Value{Revision: ev.Kv.ModRevision, Data: ev.Kv.Value, Exists: true})
			case clientv3.EventTypeDelete:
				apply(Value{Revision: ev.Kv.ModRevision})
			}
		}
	}
	return errWatchClosed
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
