// Package backends starts logpipe's backends, for the devstack binary,
// the bench harnesses and (through package devstack/stack) the tests. By
// default (Options.Backends "embedded") they all run in-process: a real
// single-member etcd server (etcd's embed package), a Kafka-protocol
// broker (kfake) and esfake, the development stand-in for the Elasticsearch
// API. Everything is up and ready when Start returns, usually well under a
// second later.
//
// With Options.Backends "real", Kafka is Apache Kafka and the Elasticsearch
// API is OpenSearch behind an Elasticsearch-compatible proxy, each in a JVM
// child process (package devstack/real; Java and Maven needed); etcd stays
// embedded. Start then takes a quarter of a minute or so, and the first
// one on a machine longer, while Maven fetches the jars.
//
//	s, err := backends.Start(ctx, backends.Options{})
//	cli, _ := clientv3.New(clientv3.Config{Endpoints: s.EtcdEndpoints()})
//	cl, _ := kgo.NewClient(kgo.SeedBrokers(s.KafkaAddrs()...))
//
// Addresses with port 0 (the default) get a free loopback port below the
// kernel's ephemeral range. StopKafka and StopEtcd take a backend off the
// network (connections refused, open connections cut) while its socket
// keeps the port, so that nothing else can take it, and StartKafka and
// StartEtcd bring it back on the same address with the same data.
//
// The Kafka broker is a single node. Like Kafka by default, it creates a
// topic on first use (with Options.Partitions partitions); unlike Kafka's
// default of 6 s, it accepts consumer group session timeouts down to 100 ms,
// so that tests notice a dead member quickly. Both kinds of backends do.
// Like Kafka, the embedded broker also expires a member that died while
// its JoinGroup waited, one session timeout after the join completed, and
// keeps alive a member whose SyncGroup waits for the leader's assignment,
// which kfake alone does not (see memberReaper).
//
// With Options.Secure, on both kinds, every backend asks for TLS from a
// throwaway CA and a password (Kafka SASL_SSL with SCRAM-SHA-512, etcd with
// client certificates and auth, the Elasticsearch API with HTTPS and basic
// auth), and Start writes secure.env and kcat.conf, the settings of the
// binaries and the tools (secure.go).
package backends

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/twmb/franz-go/pkg/kfake"
	"golang.org/x/sync/errgroup"

	"github.com/logpipe/logpipe/devstack/esfake"
	"github.com/logpipe/logpipe/devstack/real"
)

// Backend names, for Options.Without.
const (
	Etcd  = "etcd"
	Kafka = "kafka"
	ES    = "es"
)

// Kinds of backends, for Options.Backends.
const (
	Embedded = "embedded" // etcd, kfake and esfake in this process
	Real     = "real"     // embedded etcd, Apache Kafka and OpenSearch in JVM child processes
)

// Defaults.
const (
	DefaultPartitions = 6
	// startLimit bounds Start when its context has no deadline;
	// realStartLimit with real backends, whose first start fetches jars.
	startLimit     = 30 * time.Second
	realStartLimit = 4 * time.Minute
	// realRestartLimit bounds StartKafka with real backends.
	realRestartLimit = 2 * time.Minute
)

// DefaultTopics are created when Options.Topics is empty.
var DefaultTopics = []string{"logs", "logs.dlq"}

var (
	// ErrOptions is returned by Start for invalid Options.
	ErrOptions = errors.New("backends: bad options")
	// ErrWithout is returned by Stop* and Start* for a backend that was not started.
	ErrWithout = errors.New("backends: backend not started")
)

// Options says which backends to start and where.
type Options struct {
	EtcdAddr  string // etcd client address; "" means 127.0.0.1:0 (a free port)
	KafkaAddr string // "" means 127.0.0.1:0
	ESAddr    string // "" means 127.0.0.1:0

	// DataDir keeps etcd's and Kafka's data under DataDir/etcd and
	// DataDir/kafka (and OpenSearch's under DataDir/opensearch with real
	// backends), where a later Start finds them again. "" keeps Kafka
	// in memory (real backends: in temporary directories) and etcd in a
	// temporary directory, removed by Close.
	DataDir string

	// Backends is Embedded (the default when "") or Real.
	Backends string

	// Secure serves Kafka over SASL_SSL (SCRAM-SHA-512, user KafkaUser),
	// etcd over TLS with client certificates required and auth enabled
	// (users root and EtcdUser), and the Elasticsearch API over HTTPS with
	// basic auth (ESUser), from a throwaway CA made at start; Start then
	// writes secure.env and kcat.conf (see Security). Without DataDir,
	// all of it lives in a temporary directory that Close removes.
	Secure bool

	// Private asks stack.New for real backends of the test's own instead
	// of the shared ones of the test run: for a test that stops Kafka.
	// Start always starts backends of its own.
	Private bool

	Partitions int      // partitions of each topic, seeded or created on first use; 0 means DefaultPartitions
	Topics     []string // created at start; empty means DefaultTopics
	Without    []string // backends not to start: Etcd, Kafka, ES

	Logger logrus.FieldLogger // optional; the backends' own logs go here
}

// SetDefaults fills in the defaults of the zero fields and checks the
// others; it returns an error wrapping ErrOptions for invalid ones.
func (o *Options) SetDefaults() error {
	if o.Partitions < 0 {
		return fmt.Errorf("%w: partitions %d is negative", ErrOptions, o.Partitions)
	}
	if o.Partitions == 0 {
		o.Partitions = DefaultPartitions
	}
	if len(o.Topics) == 0 {
		o.Topics = slices.Clone(DefaultTopics)
	}
	for _, t := range o.Topics {
		if t == "" {
			return fmt.Errorf("%w: empty topic name", ErrOptions)
		}
	}
	for _, w := range o.Without {
		if w != Etcd && w != Kafka && w != ES {
			return fmt.Errorf("%w: without %q: want %s, %s or %s", ErrOptions, w, Etcd, Kafka, ES)
		}
	}
	switch o.Backends {
	case "":
		o.Backends = Embedded
	case Embedded, Real:
	default:
		return fmt.Errorf("%w: backends %q: want %s or %s", ErrOptions, o.Backends, Embedded, Real)
	}
	if o.Logger == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		o.Logger = l
	}
	return nil
}

// With tells whether the backend (Etcd, Kafka or ES) is to be started.
func (o *Options) With(backend string) bool { return !slices.Contains(o.Without, backend) }

// Stack is a set of running backends.
type Stack struct {
	opts   Options
	tmpDir string // etcd's data when Options.DataDir is empty
	sec    *Security
	secTmp string // sec.Dir when Options.DataDir is empty

	etcd  *etcdServer
	kafka *kafkaBroker
	es    *esServer

	// With real backends.
	realKafka  *real.Kafka
	openSearch *real.OpenSearch

	closeOnce sync.Once
	closeErr  error
}

// Start starts the backends and returns when all of them serve. On error
// it stops whatever it had started.
func Start(ctx context.Context, opts Options) (*Stack, error) {
	if err := opts.SetDefaults(); err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		limit := startLimit
		if opts.Backends == Real {
			limit = realStartLimit
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, limit)
		defer cancel()
	}
	if err := checkSecureMix(opts.DataDir, opts.Secure); err != nil {
		return nil, err
	}
	s := &Stack{opts: opts}
	if opts.Secure {
		if err := s.secure(); err != nil {
			return nil, errors.Join(err, s.Close())
		}
	}
	start := s.start
	if opts.Backends == Real {
		start = s.startReal
	}
	if err := start(ctx); err != nil {
		return nil, errors.Join(err, s.Close())
	}
	if opts.Secure {
		if err := s.writeSecureFiles(); err != nil {
			return nil, errors.Join(err, s.Close())
		}
	}
	return s, nil
}

// secure makes the security settings, in the data directory or a
// temporary one.
func (s *Stack) secure() error {
	dir := s.opts.DataDir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "logpipe-devstack-secure-")
		if err != nil {
			return fmt.Errorf("backends: %w", err)
		}
		s.secTmp, dir = tmp, tmp
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("backends: %w", err)
	}
	sec, err := newSecurity(dir)
	s.sec = sec
	return err
}

func (s *Stack) start(ctx context.Context) error {
	o := &s.opts
	log := o.Logger
	if o.With(ES) {
		es, err := startES(o.ESAddr, s.sec)
		if err != nil {
			return fmt.Errorf("esfake: %w", err)
		}
		s.es = es
		log.WithField("url", es.URL()).Debug("esfake started")
	}
	if o.With(Kafka) {
		var dir string
		if o.DataDir != "" {
			dir = filepath.Join(o.DataDir, "kafka")
		}
		k, err := startKafka(ctx, o.KafkaAddr, dir, o.Partitions, o.Topics, s.sec, log)
		if err != nil {
			return fmt.Errorf("kafka: %w", err)
		}
		s.kafka = k
		log.WithField("addr", k.Addr()).Debug("kafka started")
	}
	if o.With(Etcd) {
		return s.startEtcd(ctx)
	}
	return nil
}

func (s *Stack) startEtcd(ctx context.Context) error {
	o := &s.opts
	dir := filepath.Join(o.DataDir, "etcd")
	if o.DataDir == "" {
		tmp, err := os.MkdirTemp("", "logpipe-devstack-etcd-")
		if err != nil {
			return fmt.Errorf("etcd: %w", err)
		}
		s.tmpDir, dir = tmp, tmp
	}
	e, err := startEtcd(ctx, o.EtcdAddr, dir, s.sec)
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	s.etcd = e
	if s.sec != nil {
		if err := s.sec.setupEtcdAuth(ctx, e.Endpoint()); err != nil {
			return err
		}
	}
	o.Logger.WithField("endpoint", e.Endpoint()).Debug("etcd started")
	return nil
}

// startReal starts etcd, Apache Kafka and OpenSearch at once: the JVMs
// take several seconds each.
func (s *Stack) startReal(ctx context.Context) error {
	o := &s.opts
	var dist real.Dist
	if o.With(Kafka) || o.With(ES) {
		var err error
		if dist, err = real.Prepare(ctx, o.Logger); err != nil {
			return err
		}
	}
	dataDir := func(name string) string {
		if o.DataDir == "" {
			return ""
		}
		return filepath.Join(o.DataDir, name)
	}
	// Each goroutine sets its own field; Close stops whatever started.
	var g errgroup.Group
	if o.With(Kafka) {
		g.Go(func() error {
			k, err := real.StartKafka(ctx, dist, real.KafkaOptions{
				Addr: o.KafkaAddr, DataDir: dataDir("kafka"),
				Partitions: o.Partitions, Topics: o.Topics, Log: o.Logger,
				Security: s.realKafkaSecurity(),
			})
			s.realKafka = k
			return err
		})
	}
	if o.With(ES) {
		g.Go(func() error {
			node, err := real.StartOpenSearch(ctx, dist, real.OpenSearchOptions{
				Addr: o.ESAddr, DataDir: dataDir("opensearch"), Log: o.Logger,
				Security: s.realESSecurity(),
			})
			s.openSearch = node
			return err
		})
	}
	if o.With(Etcd) {
		g.Go(func() error { return s.startEtcd(ctx) })
	}
	return g.Wait()
}

// Close stops every backend and waits for them. Kafka and etcd save their
// data when Options.DataDir is set. Close is safe to call more than once.
func (s *Stack) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		if s.es != nil {
			errs = append(errs, wrap("esfake", s.es.Close()))
		}
		// The JVMs take a moment each to stop: both at once.
		var jvms sync.WaitGroup
		var osErr, kafkaErr error
		if s.openSearch != nil {
			jvms.Go(func() { osErr = s.openSearch.Close() })
		}
		if s.realKafka != nil {
			jvms.Go(func() { kafkaErr = s.realKafka.Close() })
		}
		jvms.Wait()
		errs = append(errs, osErr, kafkaErr)
		if s.kafka != nil {
			errs = append(errs, wrap("kafka", s.kafka.Close()))
		}
		if s.etcd != nil {
			errs = append(errs, wrap("etcd", s.etcd.Close()))
		}
		if s.tmpDir != "" {
			errs = append(errs, os.RemoveAll(s.tmpDir))
		}
		if s.secTmp != "" {
			errs = append(errs, os.RemoveAll(s.secTmp))
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

func wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

// EtcdEndpoints are etcd's client URLs, such as ["http://127.0.0.1:2379"];
// nil without etcd.
func (s *Stack) EtcdEndpoints() []string {
	if s.etcd == nil {
		return nil
	}
	return []string{s.etcd.Endpoint()}
}

// KafkaAddrs are the Kafka bootstrap addresses, such as ["127.0.0.1:9092"];
// nil without Kafka.
func (s *Stack) KafkaAddrs() []string {
	switch {
	case s.kafka != nil:
		return []string{s.kafka.Addr()}
	case s.realKafka != nil:
		return []string{s.realKafka.Addr()}
	}
	return nil
}

// ESURL is the Elasticsearch API's base URL, such as
// "http://127.0.0.1:9200" (esfake's, or with real backends the proxy's in
// front of OpenSearch; https with Options.Secure); "" without it.
func (s *Stack) ESURL() string {
	addr := s.ESAddr()
	switch {
	case addr == "":
		return ""
	case s.sec != nil:
		return "https://" + addr
	}
	return "http://" + addr
}

// ESAddr is the Elasticsearch API's listen address, such as
// "127.0.0.1:9200"; "" without it.
func (s *Stack) ESAddr() string {
	switch {
	case s.es != nil:
		return s.es.Addr()
	case s.openSearch != nil:
		return s.openSearch.Addr()
	}
	return ""
}

// Backends is Embedded or Real.
func (s *Stack) Backends() string { return s.opts.Backends }

// RealKafka is the Apache Kafka node with real backends, for its version,
// data folder and process id; nil otherwise.
func (s *Stack) RealKafka() *real.Kafka { return s.realKafka }

// OpenSearch is the OpenSearch node with real backends, for its version,
// own URL and process id; nil otherwise.
func (s *Stack) OpenSearch() *real.OpenSearch { return s.openSearch }

// ES is the running esfake server, for fault injection and document checks;
// nil without it and with real backends.
func (s *Stack) ES() *esfake.Server {
	if s.es == nil {
		return nil
	}
	return s.es.fake
}

// Kafka is the kfake cluster, for tests that need its controls; nil
// without Kafka and with real backends.
func (s *Stack) Kafka() *kfake.Cluster {
	if s.kafka == nil {
		return nil
	}
	return s.kafka.c
}

// Partitions is the number of partitions of each created topic.
func (s *Stack) Partitions() int { return s.opts.Partitions }

// Topics are the topics created at start.
func (s *Stack) Topics() []string { return slices.Clone(s.opts.Topics) }

// StopKafka takes the broker off the network: its address refuses
// connections and every open connection is cut. Its data and consumer
// groups stay as they are. With real backends it stops the JVM, which
// keeps its data on disk.
func (s *Stack) StopKafka() error {
	switch {
	case s.kafka != nil:
		return s.kafka.g.Down()
	case s.realKafka != nil:
		return s.realKafka.Stop()
	}
	return fmt.Errorf("%w: kafka", ErrWithout)
}

// StartKafka puts the broker back on its address after StopKafka. With
// real backends it starts the JVM again and returns once the broker serves
// its topics, which takes several seconds.
func (s *Stack) StartKafka() error {
	switch {
	case s.kafka != nil:
		return s.kafka.g.Up()
	case s.realKafka != nil:
		ctx, cancel := context.WithTimeout(context.Background(), realRestartLimit)
		defer cancel()
		return s.realKafka.Start(ctx)
	}
	return fmt.Errorf("%w: kafka", ErrWithout)
}

// StopEtcd takes etcd off the network: its address refuses connections and
// every open connection (watches, lease keep-alives) is cut. Its data stay
// as they are; leases keep running out, as no keep-alive reaches them.
func (s *Stack) StopEtcd() error {
	if s.etcd == nil {
		return fmt.Errorf("%w: etcd", ErrWithout)
	}
	return s.etcd.g.Down()
}

// StartEtcd puts etcd back on its address after StopEtcd.
func (s *Stack) StartEtcd() error {
	if s.etcd == nil {
		return fmt.Errorf("%w: etcd", ErrWithout)
	}
	return s.etcd.g.Up()
}
