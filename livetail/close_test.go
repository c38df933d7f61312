package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/logpipe/logpipe/devstack/stack"
	"github.com/logpipe/logpipe/livetail/internal/api"
	"github.com/logpipe/logpipe/livetail/internal/redistest"
	"github.com/logpipe/logpipe/livetail/internal/wire"
)

const testSecret = "a test secret that is long enough for HS256"

func hsToken(t testing.TB, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// expectClose dials and expects the connection to be closed with code and
// an error frame whose reason contains want.
func expectClose(t *testing.T, rawURL string, header http.Header, code websocket.StatusCode, want string) {
	t.Helper()
	c, err := dial(t, rawURL, header)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	got, reason := c.closeCode(within)
	if got != code {
		t.Fatalf("close code %d (reason %q), want %d", got, reason, code)
	}
	if !strings.Contains(reason, want) {
		t.Fatalf("reason %q does not contain %q", reason, want)
	}
}

// Bad requests close with 4400 and a reason that names the parameter, on
// kfake and on Apache Kafka (a cursor beyond the end is checked against the
// partition's end).
func TestCloseBadRequest(t *testing.T) {
	stack.ForBackends(t, testCloseBadRequest)
}

func testCloseBadRequest(t *testing.T, kind string) {
	s := newKafkaOf(t, stack.Options{Backends: kind})
	ts := startServer(t, testConfig(s))
	tests := map[string]struct{ query, param string }{
		"missing job":        {query(), "job"},
		"bad since":          {query("job", "a", "since", "yesterday"), "since"},
		"negative since":     {query("job", "a", "since", "-5m"), "since"},
		"bad grep":           {query("job", "a", "grep", "(unclosed"), "grep"},
		"tail out of range":  {query("job", "a", "tail", "100000"), "tail"},
		"tail not a number":  {query("job", "a", "tail", "ten"), "tail"},
		"bad cursor":         {query("job", "a", "cursor", "-3"), "cursor"},
		"cursor beyond end":  {query("job", "a", "cursor", "99999999"), "cursor"},
		"tail and cursor":    {query("job", "a", "tail", "5", "cursor", "3"), "cursor"},
		"job over 256 bytes": {query("job", strings.Repeat("j", 300)), "job"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			expectClose(t, ts.url(tt.query), nil, api.StatusBadRequest, tt.param+":")
		})
	}
	if n := ts.metric(t, "livetail_connections_rejected_total", "reason", "bad_request"); n != 9 {
		t.Errorf("rejected{bad_request} = %v, want 9 (the cursor is checked in the session)", n)
	}
}

// JWT: 4401 for a missing, invalid or expired token or a token of another
// algorithm; 4403 for a job outside the jobs claim.
func TestCloseAuth(t *testing.T) {
	s := newKafka(t)
	cfg := testConfig(s)
	cfg.Auth.Value = "jwt"
	cfg.JWTSecret = testSecret
	ts := startServer(t, cfg)

	exp := time.Now().Add(time.Hour).Unix()
	good := hsToken(t, jwt.MapClaims{"sub": "alice", "exp": exp, "jobs": []string{"web-*"}})
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	es256, _ := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"sub": "alice", "exp": exp}).SignedString(ecKey)
	hs384, _ := jwt.NewWithClaims(jwt.SigningMethodHS384, jwt.MapClaims{"sub": "alice", "exp": exp}).SignedString([]byte(testSecret))
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "alice", "exp": exp}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	wrongKey, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "alice", "exp": exp}).SignedString([]byte("another secret"))

	tests := map[string]struct {
		query  string
		header http.Header
		code   websocket.StatusCode
		reason string
	}{
		"missing token":           {query("job", "web-1"), nil, api.StatusUnauthorized, "token missing"},
		"expired":                 {query("job", "web-1", "token", hsToken(t, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(-time.Minute).Unix()})), nil, api.StatusUnauthorized, "expired"},
		"no exp":                  {query("job", "web-1", "token", hsToken(t, jwt.MapClaims{"sub": "alice"})), nil, api.StatusUnauthorized, "exp"},
		"no sub":                  {query("job", "web-1", "token", hsToken(t, jwt.MapClaims{"exp": exp})), nil, api.StatusUnauthorized, "sub"},
		"ES256 not HS256":         {query("job", "web-1", "token", es256), nil, api.StatusUnauthorized, "signing method"},
		"HS384 not HS256":         {query("job", "web-1", "token", hs384), nil, api.StatusUnauthorized, "signing method"},
		"alg none":                {query("job", "web-1", "token", none), nil, api.StatusUnauthorized, "signing method"},
		"wrong key":               {query("job", "web-1", "token", wrongKey), nil, api.StatusUnauthorized, "signature"},
		"garbage":                 {query("job", "web-1", "token", "not.a.token"), nil, api.StatusUnauthorized, "malformed"},
		"job not allowed":         {query("job", "db-1", "token", good), nil, api.StatusForbidden, "db-1"},
		"header, job not allowed": {query("job", "db-1"), http.Header{"Authorization": {"Bearer " + good}}, api.StatusForbidden, "db-1"},
		"second job not allowed":  {url.Values{"job": {"web-1", "db-1", "mail"}, "token": {good}}.Encode(), nil, api.StatusForbidden, "job db-1"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			expectClose(t, ts.url(tt.query), tt.header, tt.code, tt.reason)
		})
	}
	t.Run("allowed", func(t *testing.T) {
		for _, c := range []*client{
			mustDial(t, ts.url(query("job", "web-1", "token", good))),
			must(dial(t, ts.url(query("job", "web-2")), http.Header{"Authorization": {"Bearer " + good}})),
		} {
			if f := c.mustNext(); f.Type != wire.TypeHello {
				t.Fatalf("got %+v, want hello", f)
			}
		}
	})
	t.Run("history", func(t *testing.T) {
		// The history endpoint checks as a tail does, and answers in JSON.
		for _, tt := range []struct {
			query url.Values
			code  int
			body  string
		}{
			{url.Values{"job": {"web-1"}, "before": {"0:5"}}, http.StatusUnauthorized, `token missing`},
			{url.Values{"job": {"web-1", "db-1"}, "before": {"0:5"}, "token": {good}}, http.StatusForbidden, `{"error":"job: user alice may not tail job db-1","param":"job"}`},
			{url.Values{"job": {"web-1"}, "before": {"0:5"}, "limit": {"0"}, "token": {good}}, http.StatusBadRequest, `"param":"limit"`},
		} {
			code, body := httpGet(t, "http://"+ts.Addr()+"/api/v1/history?"+tt.query.Encode())
			if code != tt.code || !strings.Contains(body, tt.body) {
				t.Errorf("%v: %d %s, want %d with %s", tt.query, code, body, tt.code, tt.body)
			}
		}
	})
	if strings.Contains(ts.logs.String(), good) {
		t.Error("a token was logged")
	}
}

func must(c *client, err error) *client {
	if err != nil {
		panic(err)
	}
	return c
}

// RS256 and ES256 public keys pin their algorithm.
func TestAuthPublicKey(t *testing.T) {
	s := newKafka(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	path := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(s)
	cfg.Auth.Value = "jwt"
	cfg.JWTPublicKey = path
	ts := startServer(t, cfg)

	exp := time.Now().Add(time.Hour).Unix()
	good, _ := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"sub": "bob", "exp": exp}).SignedString(key)
	// The classic confusion: HS256 signed with the public key's bytes.
	confused, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "bob", "exp": exp}).SignedString(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))

	if f := mustDial(t, ts.url(query("job", "x", "token", good))).mustNext(); f.Type != wire.TypeHello {
		t.Fatalf("good ES256 token: %+v", f)
	}
	expectClose(t, ts.url(query("job", "x", "token", confused)), nil, api.StatusUnauthorized, "signing method")
}

// A session reaching --max-session is closed with 4408, on both kinds of
// backends.
func TestCloseMaxSession(t *testing.T) {
	stack.ForBackends(t, testCloseMaxSession)
}

func testCloseMaxSession(t *testing.T, kind string) {
	s := newKafkaOf(t, stack.Options{Backends: kind})
	cfg := testConfig(s)
	cfg.MaxSession = 300 * time.Millisecond
	ts := startServer(t, cfg)
	expectClose(t, ts.url(query("job", "a")), nil, api.StatusMaxSession, "maximum duration")
}

// The 11th connection of one user is refused with 4429, with both limiters;
// closing one makes room. --max-conns refuses with 1013 (try again later).
// On both kinds of backends, with one Redis.
func TestCloseTooMany(t *testing.T) {
	redisAddr := redistest.Start(t)
	stack.ForBackends(t, func(t *testing.T, kind string) { testCloseTooMany(t, kind, redisAddr) })
}

func testCloseTooMany(t *testing.T, kind, redisAddr string) {
	s := newKafkaOf(t, stack.Options{Backends: kind})
	for _, limiter := range []string{"memory", "redis"} {
		t.Run(limiter, func(t *testing.T) {
			cfg := testConfig(s)
			cfg.Limiter.Value = limiter
			cfg.RedisAddr = redisAddr
			a := startServer(t, cfg)
			b := a
			if limiter == "redis" {
				b = startServer(t, cfg) // a second replica sharing the count
			}
			var open []*client
			for i := range 10 {
				srv := a
				if i%2 == 1 {
					srv = b
				}
				c := mustDial(t, srv.url(query("job", "j")))
				if f := c.mustNext(); f.Type != wire.TypeHello {
					t.Fatalf("connection %d: %+v", i+1, f)
				}
				open = append(open, c)
			}
			expectClose(t, a.url(query("job", "j")), nil, api.StatusTooMany, "too many connections for user 127.0.0.1 (limit 10)")
			expectClose(t, b.url(query("job", "j")), nil, api.StatusTooMany, "limit 10")
			if n := a.metric(t, "livetail_connections_rejected_total", "reason", "user_limit"); n < 1 {
				t.Errorf("rejected{user_limit} = %v", n)
			}
			open[0].c.Close(websocket.StatusNormalClosure, "")
			eventually(t, within, "a slot freed", func() bool {
				c, err := dial(t, b.url(query("job", "j")), nil)
				if err != nil {
					return false
				}
				f, err := c.next(within)
				return err == nil && f.Type == wire.TypeHello
			})
		})
	}
	t.Run("server limit", func(t *testing.T) {
		cfg := testConfig(s)
		cfg.MaxConns = 2
		ts := startServer(t, cfg)
		for range 2 {
			mustDial(t, ts.url(query("job", "j"))).mustNext()
		}
		expectClose(t, ts.url(query("job", "j")), nil, websocket.StatusTryAgainLater, "this server is at its connection limit (2): try again later")
	})
}

// On shutdown every client gets 1001, live or reading history, on both
// kinds of backends.
func TestCloseShutdown(t *testing.T) {
	stack.ForBackends(t, testCloseShutdown)
}

func testCloseShutdown(t *testing.T, kind string) {
	s := newKafkaOf(t, stack.Options{Backends: kind})
	ts := startServer(t, testConfig(s))
	var cs []*client
	for _, q := range []string{query("job", "a"), query("job", "b", "tail", "10"), query("job", "a", "grep", "x")} {
		c := mustDial(t, ts.url(q))
		c.mustNext()
		cs = append(cs, c)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- ts.stop() }()
	for i, c := range cs {
		code, reason := c.closeCode(within)
		if code != websocket.StatusGoingAway || !strings.Contains(reason, "shutting down") {
			t.Errorf("client %d: close %d %q, want 1001", i, code, reason)
		}
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
}

// Kafka going away, on kfake and on Apache Kafka: an outage shorter than the
// retries goes unnoticed; one longer than them closes the sessions with 1011
// and fails /readyz until Kafka is back. Both take Kafka down, so on real
// backends they share one Kafka of the test's own (Private: the shared one
// cannot be stopped), whose JVM takes several seconds to start again.
func TestUpstreamOutage(t *testing.T) {
	t.Parallel() // it waits for Kafka to start again: beside the other parallel tests
	stack.ForBackends(t, func(t *testing.T, kind string) {
		// A Kafka of the test's own: stack.New decides through
		// stack.SkipReal whether the real subtest runs.
		s := newKafkaOf(t, stack.Options{Backends: kind, Private: true})
		t.Run("shorter than the retries", func(t *testing.T) { testUpstreamShortOutage(t, s) })
		t.Run("longer than the retries", func(t *testing.T) { testUpstreamGone(t, s) })
	})
}

// An outage shorter than the retries goes unnoticed: no error, no gap, no
// duplicate.
func testUpstreamShortOutage(t *testing.T, s *stack.Stack) {
	cfg := testConfig(s)
	// Retries for longer than Apache Kafka takes to start again (StartKafka
	// gives it two minutes at most), kfake's gate coming up at once.
	cfg.Retry.Tries = 1500
	cfg.Retry.Min, cfg.Retry.Max = 100*time.Millisecond, 200*time.Millisecond
	ts := startServer(t, cfg)
	p := newProducer(t, s)
	c := mustDial(t, ts.url(query("job", "blip")))
	c.collect(0, within)
	p.produce(t, "blip", 0, 50)

	// The client reads all along, as a browser does, and so answers the
	// pings of a session that outlives a ping interval: Apache Kafka takes
	// longer to start again than that.
	var outage sync.WaitGroup
	var outageErr error
	outage.Go(func() { outageErr = shortOutage(s, ts, p) })
	t.Cleanup(outage.Wait) // when collect fails; before the server stops
	got := c.collect(100, 3*time.Minute)
	outage.Wait()
	if outageErr != nil {
		t.Fatal(outageErr)
	}
	checkContiguous(t, got.offsets, p.offsets("blip"), 0)
	if len(got.dropped) > 0 {
		t.Fatalf("dropped: %+v", got.dropped)
	}
}

// shortOutage stops Kafka, waits for livetail to have tried to reconnect,
// starts Kafka again and produces 50 more lines of job blip.
func shortOutage(s *stack.Stack, ts *testServer, p *producer) error {
	if err := s.StopKafka(); err != nil {
		return err
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		n, err := ts.readMetric("livetail_upstream_reconnects_total")
		if err != nil {
			return err
		}
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			return errors.New("livetail made no reconnect attempt within a minute of Kafka stopping")
		}
	}
	if err := s.StartKafka(); err != nil {
		return err
	}
	_, err := p.try("blip", 50, 50)
	return err
}

// When Kafka stays away longer than the retries, sessions get an error
// frame and 1011, and /readyz fails; when it is back, tails work again.
func testUpstreamGone(t *testing.T, s *stack.Stack) {
	cfg := testConfig(s)
	cfg.Retry.Tries = 3
	ts := startServer(t, cfg)
	p := newProducer(t, s)
	c := mustDial(t, ts.url(query("job", "up")))
	c.collect(0, within)
	p.produce(t, "up", 0, 5)
	c.collect(5, within)

	if err := s.StopKafka(); err != nil {
		t.Fatal(err)
	}
	code, reason := c.closeCode(within)
	if code != websocket.StatusInternalError || !strings.Contains(reason, "upstream unavailable") {
		t.Fatalf("close %d %q, want 1011 upstream unavailable", code, reason)
	}
	if status, body := httpGet(t, "http://"+ts.Addr()+"/readyz"); status != http.StatusServiceUnavailable {
		t.Errorf("/readyz: %d %s while Kafka is down", status, body)
	}
	// A new session for the same job is refused with 1011 at once.
	expectClose(t, ts.url(query("job", "up")), nil, websocket.StatusInternalError, "upstream unavailable")

	if err := s.StartKafka(); err != nil {
		t.Fatal(err)
	}
	eventually(t, within, "ready again", func() bool {
		status, _ := httpGet(t, "http://"+ts.Addr()+"/readyz")
		return status == http.StatusOK
	})
	c = mustDial(t, ts.url(query("job", "up", "cursor", "0")))
	p.produce(t, "up", 5, 5)
	got := c.collect(4, within)
	checkContiguous(t, got.offsets, p.offsets("up"), 1)
}

// Only the server's own origin and --allowed-origins may open a tail from a
// browser; client frames are limited in size.
func TestOriginAndClientFrames(t *testing.T) {
	s := newKafka(t)
	cfg := testConfig(s)
	cfg.AllowedOrigins = []string{"viewer.example.com"}
	ts := startServer(t, cfg)

	if _, err := dial(t, ts.url(query("job", "a")), http.Header{"Origin": {"http://evil.example.org"}}); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("a foreign origin: %v, want a 403", err)
	}
	for _, origin := range []string{"http://viewer.example.com", "http://" + ts.Addr()} {
		c, err := dial(t, ts.url(query("job", "a")), http.Header{"Origin": {origin}})
		if err != nil {
			t.Fatalf("origin %s: %v", origin, err)
		}
		c.mustNext()
	}
	if n := ts.metric(t, "livetail_connections_rejected_total", "reason", "handshake"); n != 1 {
		t.Errorf("rejected{handshake} = %v", n)
	}

	// A small message is ignored; a large one closes the connection with 1009.
	c := mustDial(t, ts.url(query("job", "a")))
	c.collect(0, within)
	ctx := t.Context()
	if err := c.c.Write(ctx, websocket.MessageText, []byte(`{"hello":"server"}`)); err != nil {
		t.Fatal(err)
	}
	// Just over the limit, so that the whole frame is written before the
	// server closes.
	if err := c.c.Write(ctx, websocket.MessageText, make([]byte, 5000)); err != nil {
		t.Fatal(err)
	}
	_, err := c.next(within)
	if code := websocket.CloseStatus(err); code != websocket.StatusMessageTooBig {
		t.Fatalf("after a 5000-byte message: %v, want close 1009", err)
	}
}

// --jwt-audience and --jwt-issuer must match; /api/v1/jobs needs a token
// and lists only the jobs it allows; a session ends with 4401 when its
// token expires. On kfake and on Apache Kafka.
func TestAuthAudienceJobsExpiry(t *testing.T) {
	t.Parallel() // it waits for a token to expire: beside the other parallel tests
	stack.ForBackends(t, testAuthAudienceJobsExpiry)
}

func testAuthAudienceJobsExpiry(t *testing.T, kind string) {
	s := newKafkaOf(t, stack.Options{Backends: kind})
	cfg := testConfig(s)
	// The test waits for livetail to read lines no session watches yet.
	cfg.Consume.Value = "all"
	cfg.Auth.Value = "jwt"
	cfg.JWTSecret = testSecret
	cfg.JWTAudience = "livetail"
	cfg.JWTIssuer = "https://idp.example"
	ts := startServer(t, cfg)
	p := newProducer(t, s)
	p.produce(t, "web-1", 0, 1)
	p.produce(t, "other-1", 0, 1)
	p.produce(t, "other-2", 0, 1)

	exp := time.Now().Add(time.Hour).Unix()
	token := func(claims jwt.MapClaims) string {
		c := jwt.MapClaims{"sub": "alice", "exp": exp, "aud": "livetail", "iss": "https://idp.example"}
		maps.Copy(c, claims)
		for k, v := range c {
			if v == nil {
				delete(c, k)
			}
		}
		return hsToken(t, c)
	}
	for name, tt := range map[string]struct{ token, reason string }{
		"other audience": {token(jwt.MapClaims{"aud": "grafana"}), "audience"},
		"no audience":    {token(jwt.MapClaims{"aud": nil}), "aud"},
		"other issuer":   {token(jwt.MapClaims{"iss": "https://evil.example"}), "issuer"},
		"no issuer":      {token(jwt.MapClaims{"iss": nil}), "iss"},
	} {
		t.Run(name, func(t *testing.T) {
			expectClose(t, ts.url(query("job", "web-1", "token", tt.token)), nil, api.StatusUnauthorized, tt.reason)
		})
	}

	t.Run("jobs list", func(t *testing.T) {
		jobsURL := "http://" + ts.Addr() + "/api/v1/jobs"
		for name, auth := range map[string]string{
			"no token":       "",
			"bad token":      "Bearer not.a.token",
			"other audience": "Bearer " + token(jwt.MapClaims{"aud": "grafana"}),
		} {
			if code, body := httpGetAuth(t, jobsURL, auth); code != http.StatusUnauthorized || strings.Contains(body, "web-1") {
				t.Errorf("%s: %d %q, want 401 without the jobs", name, code, body)
			}
		}
		limited := "Bearer " + token(jwt.MapClaims{"jobs": []string{"other-*"}})
		eventually(t, within, "the allowed jobs listed", func() bool {
			_, body := httpGetAuth(t, jobsURL, limited)
			return strings.Contains(body, `"other-1"`) && strings.Contains(body, `"other-2"`)
		})
		if _, body := httpGetAuth(t, jobsURL, limited); strings.Contains(body, "web-1") {
			t.Fatalf("a token for other-* was shown web-1: %s", body)
		}
		if _, body := httpGetAuth(t, jobsURL, "Bearer "+token(nil)); !strings.Contains(body, "web-1") {
			t.Fatalf("a token without a jobs claim does not see web-1: %s", body)
		}
	})

	t.Run("expiry", func(t *testing.T) {
		short := token(jwt.MapClaims{"exp": time.Now().Add(3 * time.Second).Unix()})
		c := mustDial(t, ts.url(query("job", "web-1", "token", short)))
		code, reason := c.closeCode(30 * time.Second)
		if code != api.StatusUnauthorized || !strings.Contains(reason, "token expired") {
			t.Fatalf("close %d %q, want 4401 token expired", code, reason)
		}
		if !c.caughtUp {
			t.Fatal("the session ended before it was live")
		}
	})
}

// httpGetAuth is a GET with an Authorization header (none when empty).
func httpGetAuth(t testing.TB, rawURL, authorization string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
