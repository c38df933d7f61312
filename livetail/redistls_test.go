package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/logpipe/logpipe/devstack/proc"
	"github.com/logpipe/logpipe/devstack/securetest"
	"github.com/logpipe/logpipe/livetail/internal/api"
	"github.com/logpipe/logpipe/livetail/internal/redistest"
	"github.com/logpipe/logpipe/livetail/internal/wire"
)

// redisUser is the ACL user livetail's rediss:// URL names.
const redisUser = "livetail"

// startRedisTLS starts a redis-server that takes only TLS, with pki's
// server certificate, requires a password of its default user, and has
// the ACL user redisUser with redisSecret.
func startRedisTLS(t *testing.T, pki *securetest.PKI) string {
	t.Helper()
	return redistest.StartTLS(t, pki.ServerCert, pki.ServerKey, pki.CAFile,
		"--requirepass", "not-"+redisSecret,
		"--user", redisUser, "on", ">"+redisSecret, "~livetail:*", "&*", "+@all")
}

// TestRedisTLS: two livetail processes share the per-user count in a
// Redis reached as rediss://user:password@ with the CA of --redis-ca-file;
// neither prints the password.
func TestRedisTLS(t *testing.T) {
	t.Parallel()
	pki := securetest.NewPKI(t, "logpipe test CA")
	redisAddr := startRedisTLS(t, pki)
	s := newKafka(t)
	env := []string{
		"LOGPIPE_KAFKA_BROKERS=" + strings.Join(s.KafkaAddrs(), ","),
		"LOGPIPE_LIMITER=redis",
		"LOGPIPE_MAX_CONNS_PER_USER=2",
		"LOGPIPE_REDIS_URL=rediss://" + redisUser + ":" + redisSecret + "@" + redisAddr,
		"LOGPIPE_REDIS_CA_FILE=" + pki.CAFile,
	}
	var addrs []string
	var procs []*proc.Process
	for _, name := range []string{"livetail-a", "livetail-b"} {
		p := proc.StartCmd(t, name, securetest.Command(livetailBinary(t), secureEnv(env)...))
		procs = append(procs, p)
		addrs = append(addrs, p.Addr(t, "http"))
	}
	url := func(i int) string { return "ws://" + addrs[i] + "/api/v1/tail?job=j" }
	for i := range 2 {
		c := mustDial(t, url(i))
		if f := c.mustNext(); f.Type != wire.TypeHello {
			t.Fatalf("connection to replica %d: %+v", i, f)
		}
	}
	// The premise: the count lives in the TLS Redis, as the ACL user.
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	opts, err := redis.ParseURL("rediss://" + redisUser + ":" + redisSecret + "@" + redisAddr)
	if err != nil {
		t.Fatal(err)
	}
	opts.TLSConfig.RootCAs = pki.ServerTLS(true).ClientCAs
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	if n, err := rdb.ZCard(ctx, "livetail:conns:127.0.0.1").Result(); err != nil || n != 2 {
		t.Fatalf("the user's connections in Redis: %d, %v; want 2", n, err)
	}
	expectClose(t, url(0), nil, api.StatusTooMany, "limit 2")
	expectClose(t, url(1), nil, api.StatusTooMany, "limit 2")
	for _, p := range procs {
		if out := p.Output(); strings.Contains(out, redisSecret) {
			t.Fatalf("the password is in livetail's output:\n%s", out)
		}
	}
}

// TestRedisTLSRefusals: a wrong password and an untrusted CA each end
// livetail at start with exit code 1 and one line that names the server
// (without the password), what went wrong and what to check.
func TestRedisTLSRefusals(t *testing.T) {
	t.Parallel()
	pki := securetest.NewPKI(t, "logpipe test CA")
	redisAddr := startRedisTLS(t, pki)
	other := securetest.NewPKI(t, "some other CA")
	s := newKafka(t)
	for name, tc := range map[string]struct {
		env  []string
		want []string
	}{
		"wrong password": {
			env:  []string{"LOGPIPE_REDIS_URL=rediss://" + redisUser + ":not-" + redisSecret + "@" + redisAddr, "LOGPIPE_REDIS_CA_FILE=" + pki.CAFile},
			want: []string{"redis rediss://" + redisUser + ":xxxxx@" + redisAddr, "authentication failed", "WRONGPASS", "check the user and password of --redis-url (LOGPIPE_REDIS_URL)"},
		},
		"untrusted CA": {
			env:  []string{"LOGPIPE_REDIS_URL=rediss://" + redisUser + ":" + redisSecret + "@" + redisAddr, "LOGPIPE_REDIS_CA_FILE=" + other.CAFile},
			want: []string{"redis rediss://" + redisUser + ":xxxxx@" + redisAddr, "certificate is not trusted", "check --redis-ca-file"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			env := append([]string{"LOGPIPE_KAFKA_BROKERS=" + strings.Join(s.KafkaAddrs(), ","), "LOGPIPE_LIMITER=redis"}, tc.env...)
			p := proc.StartCmd(t, "livetail", securetest.Command(livetailBinary(t), secureEnv(env)...))
			if code := p.Wait(t, time.Minute); code != 1 {
				t.Fatalf("exit code %d, want 1", code)
			}
			securetest.CheckRefusal(t, p.Output(), "livetail | livetail: ", tc.want, redisSecret)
		})
	}
}
