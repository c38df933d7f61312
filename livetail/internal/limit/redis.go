package limit

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/sirupsen/logrus"
)

// DefaultTTL is how long a replica's connection entries outlive its last
// refresh: a crashed replica's connections stop counting within it.
const DefaultTTL = 30 * time.Second

// acquireScript admits a connection atomically. KEYS[1] is the user's sorted
// set of connections (member: replica/connection, score: expiry in ms of the
// Redis clock); ARGV: limit, ttl in ms, member. Expired entries (of replicas
// that stopped refreshing) are removed first.
var acquireScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`)

// refreshScript extends the expiry of this replica's live connections of one
// user. KEYS[1] as above; ARGV: ttl in ms, members... Only members still in
// the set are updated (ZADD XX): a connection released after the refresher
// listed it stays released.
var refreshScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local exp = now + tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', exp, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
`)

// RedisOptions configures a Redis limiter.
type RedisOptions struct {
	Addr string
	// URL, when set, is used instead of Addr: redis://[user:password@]host:port[/db],
	// or rediss:// for TLS. Its password is never logged.
	URL string
	// RootCAs are the CAs a rediss:// server's certificate must be signed
	// by; nil: the system's.
	RootCAs *x509.CertPool
	Max     int           // connections per user across all replicas
	TTL     time.Duration // DefaultTTL if zero; refreshed every TTL/3
	Prefix  string        // key prefix, "livetail:conns:" if empty
	Log     logrus.FieldLogger
	Errors  prometheus.Counter // Redis failures (the connection is then admitted)
}

// Redis is a Limiter shared by several livetail replicas through Redis.
// Each connection is an entry in the user's sorted set that expires unless
// its replica refreshes it, so a replica that crashes stops counting within
// TTL. When Redis cannot be reached, connections are admitted (live tail
// stays available; the per-process --max-conns still applies) and counted in
// Errors.
type Redis struct {
	opts    RedisOptions
	client  *redis.Client
	replica string
	seq     atomic.Uint64

	mu   sync.Mutex
	live map[string]map[string]struct{} // user → members held by this replica

	lastWarn atomic.Int64
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

// NewRedis returns a Redis limiter and starts its refresher. It does not
// wait for Redis: Ping to check.
func NewRedis(opts RedisOptions) *Redis {
	if opts.TTL <= 0 {
		opts.TTL = DefaultTTL
	}
	if opts.Prefix == "" {
		opts.Prefix = "livetail:conns:"
	}
	if opts.Log == nil {
		l := logrus.New()
		l.Out = nopWriter{}
		opts.Log = l
	}
	if opts.Errors == nil {
		opts.Errors = prometheus.NewCounter(prometheus.CounterOpts{Name: "unused"})
	}
	var id [6]byte
	_, _ = rand.Read(id[:])
	host, _ := os.Hostname()
	ro := &redis.Options{Addr: opts.Addr}
	if opts.URL != "" {
		if u, err := redis.ParseURL(opts.URL); err == nil {
			ro = u
		}
	}
	if ro.TLSConfig != nil && opts.RootCAs != nil {
		ro.TLSConfig.RootCAs = opts.RootCAs
	}
	ro.DialTimeout, ro.ReadTimeout, ro.WriteTimeout = 2*time.Second, 2*time.Second, 2*time.Second
	ro.MaxRetries = 1
	ro.DisableIdentity = true
	r := &Redis{
		opts:    opts,
		client:  redis.NewClient(ro),
		replica: host + "-" + hex.EncodeToString(id[:]),
		live:    map[string]map[string]struct{}{},
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go r.refresher()
	return r
}

// Ping checks that Redis answers.
func (r *Redis) Ping(ctx context.Context) error {
	return r.client.Ping(ctx).Err()
}

// ErrRefused is wrapped by the errors of Check.
var ErrRefused = errors.New("redis refused the connection")

// RefusedError is Redis refusing the connection for a reason retrying does
// not fix: what went wrong and what to check, never the password.
type RefusedError struct{ Problem, Check string }

func (e *RefusedError) Error() string { return e.Problem + "; check " + e.Check }

// Unwrap makes errors.Is(err, ErrRefused) true.
func (e *RefusedError) Unwrap() error { return ErrRefused }

// Check pings Redis once. It returns a *RefusedError when Redis refuses
// the user or password, its certificate is not trusted, or it does not
// speak TLS; nil when Redis answers or cannot be reached (the limiter then
// admits connections until it can).
func (r *Redis) Check(ctx context.Context) error {
	err := r.Ping(ctx)
	if err == nil {
		return nil
	}
	msg := strings.Join(strings.Fields(err.Error()), " ")
	var unknown x509.UnknownAuthorityError
	var verify *tls.CertificateVerificationError
	var header tls.RecordHeaderError
	switch {
	case strings.HasPrefix(msg, "WRONGPASS") || strings.HasPrefix(msg, "NOAUTH") || strings.Contains(msg, "invalid password"):
		return &RefusedError{"authentication failed (" + msg + ")", "the user and password of --redis-url (LOGPIPE_REDIS_URL)"}
	case errors.As(err, &unknown) || errors.As(err, &verify):
		return &RefusedError{"the server's certificate is not trusted (" + msg + ")", "--redis-ca-file (the CA that signed Redis's certificate)"}
	case errors.As(err, &header):
		return &RefusedError{"the port answers without TLS (" + msg + ")", "the scheme of --redis-url (rediss:// is TLS) and the port"}
	}
	return nil
}

func (r *Redis) key(user string) string { return r.opts.Prefix + user }

// Acquire implements Limiter.
func (r *Redis) Acquire(ctx context.Context, user string) (func(), error) {
	member := r.replica + "/" + strconv.FormatUint(r.seq.Add(1), 10)
	ok, err := acquireScript.Run(ctx, r.client, []string{r.key(user)}, r.opts.Max, r.opts.TTL.Milliseconds(), member).Int()
	if err != nil {
		r.failed(err)
		return func() {}, nil
	}
	if ok == 0 {
		return nil, &Error{User: user, Limit: r.opts.Max}
	}
	r.mu.Lock()
	set := r.live[user]
	if set == nil {
		set = map[string]struct{}{}
		r.live[user] = set
	}
	set[member] = struct{}{}
	r.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { r.release(user, member) }) }, nil
}

func (r *Redis) release(user, member string) {
	r.mu.Lock()
	if set := r.live[user]; set != nil {
		delete(set, member)
		if len(set) == 0 {
			delete(r.live, user)
		}
	}
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := r.client.ZRem(ctx, r.key(user), member).Err(); err != nil {
		r.failed(err) // the entry expires within TTL
	}
}

func (r *Redis) failed(err error) {
	r.opts.Errors.Inc()
	now := time.Now().UnixNano()
	if last := r.lastWarn.Load(); now-last > int64(10*time.Second) && r.lastWarn.CompareAndSwap(last, now) {
		r.opts.Log.WithError(err).WithField("redis", r.opts.Addr).Warn("connection limiter: Redis unavailable; admitting connections without the per-user limit")
	}
}

func (r *Redis) refresher() {
	defer close(r.done)
	t := time.NewTicker(r.opts.TTL / 3)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			r.refresh()
		}
	}
}

// refresh extends the expiry of every connection this replica holds.
func (r *Redis) refresh() { r.push(r.snapshot()) }

// snapshot lists, per user, the refresh script's arguments for the
// connections this replica holds.
func (r *Redis) snapshot() map[string][]any {
	r.mu.Lock()
	batch := make(map[string][]any, len(r.live))
	for user, set := range r.live {
		args := make([]any, 0, len(set)+1)
		args = append(args, r.opts.TTL.Milliseconds())
		for m := range set {
			args = append(args, m)
		}
		batch[user] = args
	}
	r.mu.Unlock()
	return batch
}

// push runs the refresh script for batch.
func (r *Redis) push(batch map[string][]any) {
	if len(batch) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.opts.TTL/3)
	defer cancel()
	pipe := r.client.Pipeline()
	for user, args := range batch {
		refreshScript.Eval(ctx, pipe, []string{r.key(user)}, args...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		r.failed(fmt.Errorf("refreshing connection entries: %w", err))
	}
}

// stopRefresh stops the refresher; what this replica holds then expires.
func (r *Redis) stopRefresh() {
	r.stopOnce.Do(func() { close(r.stop) })
	<-r.done
}

// Close implements Limiter: it stops the refresher and closes the client.
// Connections still held expire within TTL.
func (r *Redis) Close() error {
	r.stopRefresh()
	return r.client.Close()
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }
