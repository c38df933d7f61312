package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/logpipe/logpipe/common/conf"
	"github.com/logpipe/logpipe/common/essec"
	"github.com/logpipe/logpipe/common/kafkasec"
	"github.com/logpipe/logpipe/livetail/internal/api"
	"github.com/logpipe/logpipe/livetail/internal/catalogue"
	"github.com/logpipe/logpipe/livetail/internal/upstream"
)

// Config is livetail's configuration: the common flags and livetail's own
// (DESIGN.md, "Flags and environment"). The yaml keys are the flag names,
// as --config files use them.
type Config struct {
	Common conf.Common `yaml:",inline"`
	// Kafka is the TLS and SASL of every Kafka connection.
	Kafka kafkasec.Config `yaml:",inline"`
	// Warnings are logged at start: how the configuration was given.
	Warnings []string `yaml:"-"`
	// The search index that transfer writes, read for history past
	// Kafka's retention and for context (no --es-addresses: none).
	essec.Config `yaml:",inline"`
	KibanaURL    string `yaml:"kibana-url"`

	Listen string `yaml:"listen"`

	MaxConnsPerUser int           `yaml:"max-conns-per-user"`
	MaxConns        int           `yaml:"max-conns"`
	MaxSession      time.Duration `yaml:"max-session"`
	PingInterval    time.Duration `yaml:"ping-interval"`
	ClientBuffer    int           `yaml:"client-buffer"`
	BatchSize       int           `yaml:"batch-size"`
	BatchWait       time.Duration `yaml:"batch-wait"`
	MaxTail         int           `yaml:"max-tail"`
	MaxHistoryScan  int64         `yaml:"max-history-scan"`

	Limiter   conf.OneOf `yaml:"limiter"`
	RedisAddr string     `yaml:"redis-addr"`
	RedisURL  string     `yaml:"redis-url"`
	// RedisCAFile holds the CAs of a rediss:// server; Validate loads them.
	RedisCAFile string         `yaml:"redis-ca-file"`
	redisCAs    *x509.CertPool // from RedisCAFile; nil: the system's

	TLSCertFile string `yaml:"tls-cert-file"`
	TLSKeyFile  string `yaml:"tls-key-file"`

	Auth           conf.OneOf `yaml:"auth"`
	JWTSecret      string     `yaml:"jwt-secret"`
	JWTPublicKey   string     `yaml:"jwt-public-key"`
	JWTAudience    string     `yaml:"jwt-audience"`
	JWTIssuer      string     `yaml:"jwt-issuer"`
	AllowedOrigins conf.List  `yaml:"allowed-origins"`

	Retry            upstream.Policy `yaml:",inline"`
	HistoryConns     int             `yaml:"history-conns"`
	PartitionRefresh time.Duration   `yaml:"partition-refresh"`

	Jobs      conf.List     `yaml:"jobs"`
	JobsTTL   time.Duration `yaml:"jobs-ttl"`
	StartBack int64         `yaml:"jobs-scan"`
	// The jobs catalogue transfer keeps (README, "Jobs catalogue").
	JobsTopic  string        `yaml:"jobs-topic"`
	JobsWindow time.Duration `yaml:"jobs-window"`

	Pprof bool `yaml:"pprof"`

	// What the live consumers read, and how history reads are shared.
	Consume         conf.OneOf    `yaml:"consume"`
	ConsumeGrace    time.Duration `yaml:"consume-grace"`
	MaxHistoryScans int           `yaml:"max-history-scans"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Common:           conf.DefaultCommon("127.0.0.1:9103"),
		Config:           essec.Config{ESIndex: essec.DefaultIndex, ESTimeout: 30 * time.Second},
		Listen:           "127.0.0.1:8080",
		MaxConnsPerUser:  10,
		MaxConns:         api.DefaultMaxConns,
		MaxSession:       api.DefaultMaxSession,
		PingInterval:     api.DefaultPingInterval,
		ClientBuffer:     api.DefaultClientBuffer,
		BatchSize:        api.DefaultBatchSize,
		BatchWait:        api.DefaultBatchWait,
		MaxTail:          api.DefaultMaxTail,
		MaxHistoryScan:   api.DefaultMaxScan,
		Limiter:          conf.OneOf{Value: "memory", Allowed: []string{"memory", "redis"}},
		RedisAddr:        "127.0.0.1:6379",
		Auth:             conf.OneOf{Value: "none", Allowed: []string{"none", "jwt"}},
		Retry:            upstream.DefaultPolicy(),
		HistoryConns:     upstream.DefaultHistoryConns,
		PartitionRefresh: upstream.DefaultRefresh,
		JobsTTL:          catalogue.DefaultWindow,
		StartBack:        1000,
		JobsTopic:        "logs.jobs",
		JobsWindow:       catalogue.DefaultWindow,
		Consume:          conf.OneOf{Value: "auto", Allowed: []string{"auto", "watched", "all"}},
		ConsumeGrace:     upstream.DefaultGrace,
		MaxHistoryScans:  upstream.DefaultMaxScans,
	}
}

// Register adds the flags to fs, with c's values as defaults.
func (c *Config) Register(fs *flag.FlagSet) {
	c.Common.Register(fs, true)
	c.Kafka.Register(fs)
	c.Config.Register(fs, "comma-separated URLs of the search engine that transfer writes to, read for history older than Kafka retains and for the context of a line (empty: Kafka only)",
		"data stream transfer writes the log documents to (its --es-index)")
	fs.StringVar(&c.KibanaURL, "kibana-url", c.KibanaURL, "Kibana's base URL, for the viewer's Open in Kibana links, e.g. https://kibana.example.com (empty: no links)")
	fs.StringVar(&c.TLSCertFile, "tls-cert-file", c.TLSCertFile, "PEM certificate to serve https and wss on --listen (with --tls-key-file; empty: http)")
	fs.StringVar(&c.TLSKeyFile, "tls-key-file", c.TLSKeyFile, "PEM private key of --tls-cert-file")
	fs.StringVar(&c.Listen, "listen", c.Listen, "listen address for the viewer, the API, /healthz and /readyz (/metrics and /debug/logs are on --metrics-addr)")
	fs.IntVar(&c.MaxConnsPerUser, "max-conns-per-user", c.MaxConnsPerUser, "live tail connections one user may hold at once (4429 beyond)")
	fs.IntVar(&c.MaxConns, "max-conns", c.MaxConns, "live tail connections this server holds at most (1013, try again later, beyond)")
	fs.DurationVar(&c.MaxSession, "max-session", c.MaxSession, "longest session; then it is closed with 4408 and the client reconnects with its cursor")
	fs.DurationVar(&c.PingInterval, "ping-interval", c.PingInterval, "how often clients are pinged; a client that does not answer, or take a frame, within it is dropped")
	fs.IntVar(&c.ClientBuffer, "client-buffer", c.ClientBuffer, "entries queued per client before lines are dropped for it (and announced)")
	fs.IntVar(&c.BatchSize, "batch-size", c.BatchSize, "most entries in one entries frame")
	fs.DurationVar(&c.BatchWait, "batch-wait", c.BatchWait, "under load, the least time between two live entries frames of a client (lines arriving meanwhile are batched); while livetail keeps up, lines go out as they arrive")
	fs.IntVar(&c.MaxTail, "max-tail", c.MaxTail, "largest tail=N a client may ask for")
	fs.Int64Var(&c.MaxHistoryScan, "max-history-scan", c.MaxHistoryScan, "most records one session's history (tail, since or cursor) reads from Kafka; beyond, the oldest part is skipped and announced by a dropped frame")
	fs.Var(&c.Limiter, "limiter", "where per-user connection counts live: memory (this process) or redis (shared by replicas)")
	fs.StringVar(&c.RedisAddr, "redis-addr", c.RedisAddr, "Redis address for --limiter redis, without password or TLS (see --redis-url)")
	fs.StringVar(&c.RedisCAFile, "redis-ca-file", c.RedisCAFile, "PEM file of the CAs that sign the certificate of a rediss:// --redis-url (empty: the system's)")
	fs.StringVar(&c.RedisURL, "redis-url", "", "Redis URL for --limiter redis, redis://[user:password@]host:port[/db] or rediss:// for TLS; overrides --redis-addr. Prefer the variable LOGPIPE_REDIS_URL when it holds a password")
	fs.Var(&c.Auth, "auth", "authentication: none (the user is the client address) or jwt")
	fs.StringVar(&c.JWTSecret, "jwt-secret", c.JWTSecret, "HS256 secret for --auth jwt")
	fs.StringVar(&c.JWTPublicKey, "jwt-public-key", c.JWTPublicKey, "PEM file of the RSA (RS256) or P-256 ECDSA (ES256) public key for --auth jwt")
	fs.StringVar(&c.JWTAudience, "jwt-audience", c.JWTAudience, "when set, a token's aud claim must include it (--auth jwt)")
	fs.StringVar(&c.JWTIssuer, "jwt-issuer", c.JWTIssuer, "when set, a token's iss claim must equal it (--auth jwt)")
	fs.Var(&c.AllowedOrigins, "allowed-origins", "comma-separated origin host patterns allowed to open a WebSocket besides the server's own host (e.g. viewer.example.com,*.example.org)")
	fs.IntVar(&c.Retry.Tries, "upstream-retries", c.Retry.Tries, "reconnect attempts after a Kafka partition consumer fails, before its sessions are closed with 1011")
	fs.DurationVar(&c.Retry.Min, "upstream-backoff-min", c.Retry.Min, "shortest wait before a Kafka reconnect attempt")
	fs.DurationVar(&c.Retry.Max, "upstream-backoff-max", c.Retry.Max, "longest wait before a Kafka reconnect attempt")
	fs.IntVar(&c.HistoryConns, "history-conns", c.HistoryConns, "Kafka clients (each with its own connections) that history reads are spread over")
	fs.DurationVar(&c.PartitionRefresh, "partition-refresh", c.PartitionRefresh, "how often the topic's partitions are looked up again, to follow partitions added")
	fs.Var(&c.Jobs, "jobs", "comma-separated jobs always listed by /api/v1/jobs")
	fs.DurationVar(&c.JobsTTL, "jobs-ttl", c.JobsTTL, "the older name of --jobs-window, used when --jobs-window keeps its default")
	fs.Int64Var(&c.StartBack, "jobs-scan", c.StartBack, "records per partition read back at start to fill the jobs list")
	fs.StringVar(&c.JobsTopic, "jobs-topic", c.JobsTopic, "the jobs catalogue topic that transfer writes, read from its start and followed (empty: list only the jobs this replica reads)")
	fs.DurationVar(&c.JobsWindow, "jobs-window", c.JobsWindow, "how long /api/v1/jobs lists a job after it was last seen, by the jobs catalogue or by this replica")
	fs.BoolVar(&c.Pprof, "pprof", c.Pprof, "serve /debug/pprof/ on the metrics listener")
	fs.Var(&c.Consume, "consume", "partitions read live: watched (only those where the sessions' jobs are, and for --consume-grace after), all (every partition: keyless lines of other producers found anywhere), or auto (watched while the jobs topic exists, else all)")
	fs.DurationVar(&c.ConsumeGrace, "consume-grace", c.ConsumeGrace, "how long a partition is still read after its last session left (--consume watched), so that a reconnect does not start it again")
	fs.IntVar(&c.MaxHistoryScans, "max-history-scans", c.MaxHistoryScans, "partitions scanned for history at once; reads of the same partition share one scan")
}

// topicName is Kafka's rule for topic names.
var topicName = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)

// ErrConfig is wrapped by every Validate error.
var ErrConfig = errors.New("bad value")

// Validate checks the values; each error names the flag and the value.
func (c *Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...)
	}
	if err := c.Common.Validate(); err != nil {
		return err
	}
	if err := c.Kafka.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if err := c.Config.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if c.KibanaURL != "" {
		u, err := url.Parse(c.KibanaURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			return bad("--kibana-url %q: want http://host[:port][/path] or https://..., without user or password", c.KibanaURL)
		}
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return bad("--tls-cert-file and --tls-key-file go together")
	}
	if c.TLSCertFile != "" {
		if _, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile); err != nil {
			return bad("--tls-cert-file %s and --tls-key-file %s: %v", c.TLSCertFile, c.TLSKeyFile, err)
		}
	}
	if c.RedisURL != "" {
		if _, err := redis.ParseURL(c.RedisURL); err != nil {
			// The URL may hold a password: name the flag, not the value.
			return bad("--redis-url: want redis://[user:password@]host:port[/db] or rediss://...")
		}
	}
	if c.RedisCAFile != "" {
		pem, err := os.ReadFile(c.RedisCAFile)
		if err != nil {
			return bad("--redis-ca-file %s: %v", c.RedisCAFile, err)
		}
		c.redisCAs = x509.NewCertPool()
		if !c.redisCAs.AppendCertsFromPEM(pem) {
			return bad("--redis-ca-file %s: no PEM certificate in it", c.RedisCAFile)
		}
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return bad("--listen %q: want host:port", c.Listen)
	}
	if _, _, err := net.SplitHostPort(c.Common.MetricsAddr); err != nil {
		return bad("--metrics-addr %q: want host:port", c.Common.MetricsAddr)
	}
	positive := []struct {
		flag string
		v    int64
	}{
		{"max-conns-per-user", int64(c.MaxConnsPerUser)},
		{"max-conns", int64(c.MaxConns)},
		{"client-buffer", int64(c.ClientBuffer)},
		{"batch-size", int64(c.BatchSize)},
		{"max-tail", int64(c.MaxTail)},
		{"max-history-scan", c.MaxHistoryScan},
		{"history-conns", int64(c.HistoryConns)},
		{"max-history-scans", int64(c.MaxHistoryScans)},
	}
	for _, p := range positive {
		if p.v < 1 {
			return bad("--%s %d: want at least 1", p.flag, p.v)
		}
	}
	durations := []struct {
		flag string
		v    time.Duration
	}{
		{"max-session", c.MaxSession},
		{"ping-interval", c.PingInterval},
		{"jobs-ttl", c.JobsTTL},
		{"jobs-window", c.JobsWindow},
		{"partition-refresh", c.PartitionRefresh},
		{"consume-grace", c.ConsumeGrace},
	}
	for _, d := range durations {
		if d.v <= 0 {
			return bad("--%s %s: want a positive duration", d.flag, d.v)
		}
	}
	if c.BatchWait < 0 {
		return bad("--batch-wait %s: want 0 or more", c.BatchWait)
	}
	if c.JobsTopic != "" && !topicName.MatchString(c.JobsTopic) {
		return bad("--jobs-topic %q: not a Kafka topic name (letters, digits, '.', '_', '-')", c.JobsTopic)
	}
	if c.StartBack < 0 {
		return bad("--jobs-scan %d: want 0 or more", c.StartBack)
	}
	if err := c.Retry.Validate(); err != nil {
		return err
	}
	if c.Limiter.Value == "redis" && c.RedisAddr == "" {
		return bad("--redis-addr is empty (needed by --limiter redis)")
	}
	switch c.Auth.Value {
	case "jwt":
		if (c.JWTSecret == "") == (c.JWTPublicKey == "") {
			return bad("--auth jwt needs exactly one of --jwt-secret (HS256) and --jwt-public-key (RS256/ES256)")
		}
	default:
		if c.JWTSecret != "" || c.JWTPublicKey != "" || c.JWTAudience != "" || c.JWTIssuer != "" {
			return bad("--jwt-secret, --jwt-public-key, --jwt-audience or --jwt-issuer is set but --auth is %s (want --auth jwt)", c.Auth.Value)
		}
	}
	return nil
}

// jobsWindow is how long a job stays listed after it was last seen, in the
// catalogue and in what this replica reads alike: --jobs-window, or the
// older --jobs-ttl when only that one was changed.
func (c *Config) jobsWindow() time.Duration {
	if c.JobsWindow == catalogue.DefaultWindow && c.JobsTTL != catalogue.DefaultWindow {
		return c.JobsTTL
	}
	return c.JobsWindow
}

// redisEndpoint is the Redis server for log lines, without a password.
func (c *Config) redisEndpoint() string {
	if c.RedisURL == "" {
		return c.RedisAddr
	}
	u, err := url.Parse(c.RedisURL)
	if err != nil {
		return "(--redis-url)"
	}
	return u.Redacted()
}

// serverTLS is the TLS of --listen; nil serves plain http. Validate has
// loaded the files once already; they are loaded again for each handshake,
// so that a renewed certificate is served without a restart.
func (c *Config) serverTLS() *tls.Config {
	if c.TLSCertFile == "" {
		return nil
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			cert, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
			return &cert, err
		},
	}
}

// warnings are the lines logged at start about secrets given on the
// command line, where other users can read them.
func warnings(args []string, c *Config) []string {
	w := append(kafkasec.Warnings(args), essec.Warnings(args)...)
	if kafkasec.OnCommandLine(args, "redis-url") {
		if u, err := url.Parse(c.RedisURL); err == nil {
			if _, has := u.User.Password(); has {
				w = append(w, "--redis-url with a password was given on the command line, where other users can read it; set LOGPIPE_REDIS_URL instead")
			}
		}
	}
	return w
}
