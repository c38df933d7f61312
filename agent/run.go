package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/logpipe/logpipe/agent/internal/harvest"
	"github.com/logpipe/logpipe/agent/internal/producer"
	"github.com/logpipe/logpipe/agent/internal/registry"
	"github.com/logpipe/logpipe/agent/internal/status"
	"github.com/logpipe/logpipe/agent/internal/watch"
	"github.com/logpipe/logpipe/common/collect"
	"github.com/logpipe/logpipe/common/conf"
	"github.com/logpipe/logpipe/common/diag"
	"github.com/logpipe/logpipe/common/kafkasec"
	"github.com/logpipe/logpipe/common/keys"
	"github.com/logpipe/logpipe/common/logging"
	"github.com/logpipe/logpipe/common/memlog"
)

// run wires the agent: the diagnostics server, the offset registry and its
// periodic saves, the Kafka producer (connected with retries), the file
// readers, the config watch and the status key. On ctx's end it stops
// reading, waits for Kafka to acknowledge what is in flight (up to
// --shutdown-timeout), saves the offsets and removes its status.
func run(ctx context.Context, cfg Config) error {
	ring := memlog.New(0)
	log, err := logging.New(cfg.LogLevel.Value, cfg.LogFormat.Value, os.Stderr, ring)
	if err != nil {
		return err
	}
	if log.IsLevelEnabled(logrus.TraceLevel) {
		w := log.WithField("component", "sarama").WriterLevel(logrus.TraceLevel)
		defer w.Close()
		sarama.Logger = stdlog.New(w, "", 0)
	}
	for _, w := range cfg.Warnings {
		log.Warn(w)
	}
	// A wrong password or certificate is not retried at start: it is
	// reported in one line and the agent exits 1.
	if err := kafkasec.Check(ctx, cfg.KafkaBrokers, &cfg.Kafka); err != nil {
		return err
	}
	hostName, err := os.Hostname()
	if err != nil {
		hostName = cfg.Name
	}

	promReg := diag.NewRegistry()
	metrics := harvest.NewMetrics(promReg)
	var prod atomic.Pointer[producer.Producer]
	stat := func(f func(producer.Stats) float64) func() float64 {
		return func() float64 {
			if p := prod.Load(); p != nil {
				return f(p.Stats())
			}
			return 0
		}
	}
	ap := &applier{log: log, sendErr: func() error { return kafkaSendError(prod.Load(), cfg) }}
	promReg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "agent_lines_acked_total", Help: "Records acknowledged by Kafka (acks=all)."},
			stat(func(s producer.Stats) float64 { return float64(s.Acked) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "agent_send_errors_total", Help: "Records Kafka failed after the producer's retries; they are sent again."},
			stat(func(s producer.Stats) float64 { return float64(s.Failed) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "agent_inflight_records", Help: "Records sent and not yet acknowledged."},
			stat(func(s producer.Stats) float64 { return float64(s.Inflight) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "agent_inflight_bytes", Help: "Bytes of records sent and not yet acknowledged."},
			stat(func(s producer.Stats) float64 { return float64(s.InflightBytes) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "agent_config_revision", Help: "etcd mod revision of the collect config applied."},
			func() float64 { return float64(ap.revision()) }),
	)
	var etcdErr atomic.Pointer[status.Publisher]
	ready := func() error {
		if pub := etcdErr.Load(); pub != nil {
			var refused *etcdRefusal
			if err := pub.Err(); errors.As(err, &refused) {
				return refused
			}
		}
		if prod.Load() == nil {
			if err := ap.kafkaError(); err != nil {
				return fmt.Errorf("%w: %w", errNoProducer, err)
			}
			return errNoProducer
		}
		if err := ap.sendErr(); err != nil {
			return err
		}
		return ap.ready()
	}
	srv := diag.New(diag.Options{Addr: cfg.MetricsAddr, Registry: promReg, Logs: ring, Ready: ready, Log: log})
	if cfg.Pprof {
		srv.Handle("/debug/pprof/", http.HandlerFunc(pprof.Index))
		srv.Handle("/debug/pprof/profile", http.HandlerFunc(pprof.Profile))
		srv.Handle("/debug/pprof/symbol", http.HandlerFunc(pprof.Symbol))
		srv.Handle("/debug/pprof/trace", http.HandlerFunc(pprof.Trace))
	}
	if err := srv.Listen(); err != nil {
		return fmt.Errorf("--metrics-addr %s: %w", cfg.MetricsAddr, err)
	}

	reg, err := registry.Open(cfg.StateDir)
	if reg == nil {
		return err
	}
	if err != nil {
		log.WithError(err).Error("offset registry")
	}

	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            cfg.EtcdEndpoints,
		DialTimeout:          5 * time.Second,
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		TLS:                  cfg.Etcd.tls,
		Username:             cfg.Etcd.Username,
		Password:             cfg.Etcd.Password,
		Logger:               zap.NewNop(),
	})
	if err != nil {
		if etcdSecurityError(err) {
			return etcdRefused(cfg, err)
		}
		if herr := etcdHandshake(ctx, cfg); herr != nil {
			return etcdRefused(cfg, herr)
		}
		return fmt.Errorf("--etcd-endpoints %v: %w", cfg.EtcdEndpoints, err)
	}
	defer cli.Close()
	if err := checkEtcd(ctx, cli, cfg); err != nil {
		return err
	}

	log.WithFields(logrus.Fields{"name": cfg.Name, "config_key": cfg.ConfigKey, "state_dir": cfg.StateDir,
		"kafka": cfg.KafkaBrokers, "metrics": srv.Addr()}).Info("agent starting")

	pcfg := producer.DefaultConfig()
	pcfg.Brokers = cfg.KafkaBrokers
	pcfg.ClientID = "logpipe-agent-" + cfg.Name
	pcfg.Compression = cfg.compression()
	pcfg.MaxMessageBytes = int(cfg.KafkaMaxMessage)
	pcfg.MaxInflight = cfg.MaxInflightRecords
	pcfg.MaxInflightSize = int64(cfg.MaxInflightBytes)
	pcfg.Linger = cfg.KafkaLinger
	pcfg.Security = &cfg.Kafka

	hopts := harvest.DefaultOptions()
	hopts.AgentName = cfg.Name
	hopts.HostName = hostName
	hopts.DefaultTopic = cfg.KafkaTopic
	hopts.MaxLineBytes = int(cfg.MaxLineBytes)
	hopts.MaxRecordBytes = int(cfg.KafkaMaxMessage)
	hopts.ScanInterval = cfg.ScanInterval
	hopts.PollMax = cfg.PollInterval
	hopts.PollMin = min(hopts.PollMin, cfg.PollInterval)
	hopts.ReadGap = min(hopts.ReadGap, cfg.PollInterval)
	hopts.RotatedIdle = cfg.RotatedIdle
	hopts.MultilineFlush = cfg.MultilineFlush
	hopts.StopTimeout = cfg.ShutdownTimeout / 2
	hopts.Log = log
	hopts.Metrics = metrics

	pub := status.New(cli, status.Options{Key: keys.AgentStatus(cfg.Name), Interval: cfg.StatusInterval, Log: log, Explain: func(err error) error {
		if etcdSecurityError(err) {
			return etcdRefused(cfg, err)
		}
		return err
	}}, ap.status)
	etcdErr.Store(pub)
	ap.kick = pub.Kick

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Serve(gctx) })
	g.Go(func() error { return saveLoop(gctx, reg, cfg.SaveDelay, cfg.SaveInterval, log) })
	g.Go(func() error { return pub.Run(gctx) })
	g.Go(func() error { logSends(gctx, ap.sendErr, log); return nil })
	g.Go(func() error {
		p := connect(gctx, pcfg, log, ap)
		if p == nil {
			return nil
		}
		prod.Store(p)
		mgr := harvest.New(gctx, hopts, p, reg)
		ap.setManager(mgr)
		var wg sync.WaitGroup
		wg.Go(func() {
			_ = watch.Run(gctx, cli, watch.Options{Key: cfg.ConfigKey, Log: log}, ap.apply)
		})
		wg.Wait()
		mgr.Wait()
		if err := p.Close(cfg.ShutdownTimeout); err != nil {
			log.WithError(err).Warn("Kafka did not acknowledge everything before shutdown; those lines are sent again at the next start")
		}
		return nil
	})
	err = g.Wait()
	if serr := reg.Save(); serr != nil {
		log.WithError(serr).Error("saving the offset registry")
		err = errors.Join(err, serr)
	}
	log.Info("agent stopped")
	return err
}

// connect creates the producer, retrying until Kafka answers or ctx ends.
func connect(ctx context.Context, cfg producer.Config, log logrus.FieldLogger, ap *applier) *producer.Producer {
	var backoff time.Duration
	for {
		p, err := producer.New(cfg)
		if err == nil {
			ap.setKafkaErr(nil)
			log.WithField("brokers", cfg.Brokers).Info("connected to Kafka")
			return p
		}
		if backoff == 0 {
			log.WithError(err).Warn("cannot connect to Kafka; retrying")
		}
		ap.setKafkaErr(err)
		backoff = min(max(2*backoff, 200*time.Millisecond), 5*time.Second)
		t := time.NewTimer(backoff/2 + rand.N(backoff/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// kafkaSendError is why p's records do not get through, in the start-up
// line's words when the brokers refuse the credential; nil while they do.
func kafkaSendError(p *producer.Producer, cfg Config) error {
	if p == nil {
		return nil
	}
	err := p.Err()
	if err == nil {
		return nil
	}
	if refused := cfg.Kafka.Refused(cfg.KafkaBrokers, err); refused != nil {
		return refused
	}
	return fmt.Errorf("kafka: sends failing, retrying: %w", err)
}

// sendCheckInterval is how often logSends looks at the producer's health.
const sendCheckInterval = time.Second

// logSends logs when records stop getting through to Kafka (with why, as
// sendErr says), again when the brokers turn out to refuse the credential,
// and once when records get through again, until ctx ends: at most three
// lines an outage, however long.
func logSends(ctx context.Context, sendErr func() error, log logrus.FieldLogger) {
	t := time.NewTicker(sendCheckInterval)
	defer t.Stop()
	const (
		ok = iota
		failing
		refused
	)
	state := ok
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := sendErr()
		var refusal *kafkasec.Error
		switch {
		case err == nil && state != ok:
			log.Info("records get through to Kafka again")
			state = ok
		case errors.As(err, &refusal) && state != refused:
			log.Warn(err.Error())
			state = refused
		case err != nil && state == ok:
			log.Warn(err.Error())
			state = failing
		}
	}
}

// saveLoop writes the offset registry delay after Kafka acknowledged
// records (the acknowledgements meanwhile share the write), and every
// interval for the other changes. Saving right after the acknowledgements,
// rather than on a fixed tick, keeps short what a killed agent sends again.
func saveLoop(ctx context.Context, reg *registry.Registry, delay, interval time.Duration, log logrus.FieldLogger) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-reg.Acked():
			if delay > 0 {
				d := time.NewTimer(delay)
				select {
				case <-ctx.Done():
					d.Stop()
					return nil
				case <-d.C:
				}
			}
		}
		err := reg.Save()
		switch {
		case err != nil && !failing:
			log.WithError(err).Error("saving the offset registry; retrying")
			failing = true
		case err == nil && failing:
			log.Info("offset registry saved again")
			failing = false
		}
	}
}

// applier applies the collect config from etcd and remembers what the
// status key reports.
type applier struct {
	log     logrus.FieldLogger
	kick    func()
	sendErr func() error // why records do not get through to Kafka; nil while they do

	mu        sync.Mutex
	mgr       *harvest.Manager
	applied   bool
	rev       int64
	appliedAt time.Time
	cfgErr    string
	kafkaErr  string
}

func (a *applier) setManager(m *harvest.Manager) {
	a.mu.Lock()
	a.mgr = m
	a.mu.Unlock()
}

func (a *applier) setKafkaErr(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.kafkaErr = ""
	if err != nil {
		a.kafkaErr = err.Error()
	}
}

func (a *applier) kafkaError() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.kafkaErr == "" {
		return nil
	}
	return errors.New(a.kafkaErr)
}

func (a *applier) revision() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.rev
}

func (a *applier) ready() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.applied {
		return errors.New("no collect config read from etcd yet")
	}
	return nil
}

// apply is called by the watch with each value of the config key.
func (a *applier) apply(v watch.Value) {
	a.mu.Lock()
	mgr := a.mgr
	same := a.applied && v.Revision == a.rev
	a.mu.Unlock()
	if same {
		return
	}
	cfg := collect.Config{}
	if v.Exists {
		c, err := collect.Parse(v.Data)
		if err != nil {
			a.mu.Lock()
			a.cfgErr = fmt.Sprintf("config revision %d: %v; still running revision %d", v.Revision, err, a.rev)
			msg := a.cfgErr
			a.mu.Unlock()
			a.log.WithField("revision", v.Revision).Error(msg)
			a.kick()
			return
		}
		cfg = c
	}
	mgr.Apply(cfg)
	a.mu.Lock()
	a.applied, a.rev, a.appliedAt, a.cfgErr = true, v.Revision, time.Now().UTC(), ""
	a.mu.Unlock()
	a.log.WithFields(logrus.Fields{"revision": v.Revision, "entries": len(cfg)}).Info("collect config applied")
	a.kick()
}

// status is the value of the status key.
func (a *applier) status() status.Status {
	a.mu.Lock()
	st := status.Status{ConfigRevision: a.rev, AppliedAt: a.appliedAt, Errors: []string{}}
	if a.cfgErr != "" {
		st.Errors = append(st.Errors, a.cfgErr)
	}
	if a.kafkaErr != "" {
		st.Errors = append(st.Errors, "kafka: "+a.kafkaErr)
	}
	mgr := a.mgr
	a.mu.Unlock()
	if err := a.sendErr(); err != nil {
		st.Errors = append(st.Errors, err.Error())
	}
	files := []harvest.FileStatus{}
	if mgr != nil {
		files = mgr.Files()
		st.Errors = append(st.Errors, mgr.Errors()...)
	}
	st.Files = files
	return st
}

// checkEtcd reads the config key once. A refused user, password or
// certificate ends the start with one line; an etcd that does not answer
// yet does not: the watch retries.
func checkEtcd(ctx context.Context, cli *clientv3.Client, cfg Config) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := cli.Get(ctx, cfg.ConfigKey)
	switch {
	case err == nil:
		return nil
	case etcdSecurityError(err):
		return etcdRefused(cfg, err)
	}
	if herr := etcdHandshake(ctx, cfg); herr != nil {
		return etcdRefused(cfg, herr)
	}
	return nil
}

// etcdHandshake explains an etcd that does not answer: it returns the
// error of a TLS handshake with each endpoint as the client does it (none
// for an endpoint that cannot be reached), or, for a plaintext client, an
// error when the endpoint expects TLS. gRPC only says that its deadline
// passed.
func etcdHandshake(ctx context.Context, cfg Config) error {
	for _, ep := range cfg.EtcdEndpoints {
		host := ep
		if u, err := url.Parse(ep); err == nil && u.Host != "" {
			host = u.Host
		}
		conn, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", host)
		if err != nil {
			continue
		}
		tc := &tls.Config{InsecureSkipVerify: true} //nolint:gosec // only asks whether the port speaks TLS
		if cfg.Etcd.tls != nil {
			tc = cfg.Etcd.tls.Clone()
			tc.ServerName, _, _ = net.SplitHostPort(host)
		}
		tconn := tls.Client(conn, tc)
		hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = tconn.HandshakeContext(hctx)
		if err == nil && cfg.Etcd.tls != nil {
			// A server that requires a client certificate refuses it only
			// after the handshake (TLS 1.3): read its answer.
			_ = tconn.SetReadDeadline(time.Now().Add(time.Second))
			_, err = tconn.Read(make([]byte, 1))
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				err = nil
			}
			if errors.Is(err, io.EOF) {
				err = nil
			}
		}
		cancel()
		tconn.Close()
		switch {
		case cfg.Etcd.tls == nil && err == nil:
			return errors.New("the endpoint serves TLS and the agent spoke plaintext")
		case cfg.Etcd.tls != nil && err != nil:
			return fmt.Errorf("TLS handshake: %w", err)
		}
	}
	return nil
}

// etcdSecurityError reports whether err is etcd refusing the user, the
// password, a permission or a certificate, rather than being unreachable.
func etcdSecurityError(err error) bool {
	switch {
	case errors.Is(err, rpctypes.ErrAuthFailed), errors.Is(err, rpctypes.ErrPermissionDenied),
		errors.Is(err, rpctypes.ErrUserEmpty), errors.Is(err, rpctypes.ErrUserNotFound),
		errors.Is(err, rpctypes.ErrAuthNotEnabled), errors.Is(err, rpctypes.ErrInvalidAuthToken):
		return true
	}
	s := err.Error()
	return strings.Contains(s, "x509:") || strings.Contains(s, "tls:") || strings.Contains(s, "authentication handshake failed")
}

// etcdRefused is the one line for an etcd that refused the agent.
func etcdRefused(cfg Config, err error) *etcdRefusal {
	check := "--etcd-username and the password (" + conf.EnvName(etcdPasswordFlag) + "), and that the user's role may read " + cfg.ConfigKey + " and write " + keys.AgentStatus(cfg.Name)
	msg := strings.Join(strings.Fields(err.Error()), " ")
	if strings.Contains(msg, "x509:") || strings.Contains(msg, "tls:") || strings.Contains(msg, "handshake") {
		check = "--etcd-ca-file (the CA that signed etcd's certificate), --etcd-cert-file and --etcd-key-file, and that the endpoints are https when etcd serves TLS"
	}
	if cfg.Etcd.Password != "" {
		msg = strings.ReplaceAll(msg, cfg.Etcd.Password, "****")
	}
	return &etcdRefusal{line: fmt.Sprintf("etcd %s: tried %s: %s; check %s", strings.Join(cfg.EtcdEndpoints, ","), cfg.Etcd.describe(), msg, check)}
}

// etcdRefusal is etcd refusing the agent's user, password or certificate,
// in one line that never holds the password.
type etcdRefusal struct{ line string }

func (e *etcdRefusal) Error() string { return e.line }
