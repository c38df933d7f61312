// Package stack starts logpipe's backends in-process, for tests and for the
// devstack binary: a real single-member etcd server (etcd's embed package), a
// Kafka-protocol broker (kfake) and esfake, the development stand-in for the
// Elasticsearch API. Everything is up and ready when Start returns, usually
// well under a second later.
//
//	s := stack.New(t, stack.Options{})
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
// so that tests notice a dead member quickly.
package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/logpipe/logpipe/devstack/esfake"
)

// Backend names, for Options.Without.
const (
	Etcd  = "etcd"
	Kafka = "kafka"
	ES    = "es"
)

// Defaults.
const (
	DefaultPartitions = 6
	// startLimit bounds Start when its context has no deadline.
	startLimit = 30 * time.Second
)

// DefaultTopics are created when Options.Topics is empty.
var DefaultTopics = []string{"logs", "logs.dlq"}

var (
	// ErrOptions is returned by Start for invalid Options.
	ErrOptions = errors.New("stack: bad options")
	// ErrWithout is returned by Stop* and Start* for a backend that was not started.
	ErrWithout = errors.New("stack: backend not started")
)

// Options says which backends to start and where.
type Options struct {
	EtcdAddr  string // etcd client address; "" means 127.0.0.1:0 (a free port)
	KafkaAddr string // "" means 127.0.0.1:0
	ESAddr    string // "" means 127.0.0.1:0

	// DataDir keeps etcd's and Kafka's data under DataDir/etcd and
	// DataDir/kafka, where a later Start finds them again. "" keeps Kafka
	// in memory and etcd in a temporary directory removed by Close.
	DataDir string

	Partitions int      // partitions of each topic, seeded or created on first use; 0 means DefaultPartitions
	Topics     []string // created at start; empty means DefaultTopics
	Without    []string // backends not to start: Etcd, Kafka, ES

	Logger logrus.FieldLogger // optional; the backends' own logs go here
}

func (o *Options) setDefaults() error {
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
	if o.Logger == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		o.Logger = l
	}
	return nil
}

func (o *Options) with(backend string) bool { return !slices.Contains(o.Without, backend) }

// Stack is a set of running backends.
type Stack struct {
	opts   Options
	tmpDir string // etcd's data when Options.DataDir is empty

	etcd  *etcdServer
	kafka *kafkaBroker
	es    *esServer

	closeOnce sync.Once
	closeErr  error
}

// Start starts the backends and returns when all of them serve. On error
// it stops whatever it had started.
func Start(ctx context.Context, opts Options) (*Stack, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, startLimit)
		defer cancel()
	}
	s := &Stack{opts: opts}
	if err := s.start(ctx); err != nil {
		return nil, errors.Join(err, s.Close())
	}
	return s, nil
}

func (s *Stack) start(ctx context.Context) error {
	o := &s.opts
	log := o.Logger
	if o.with(ES) {
		es, err := startES(o.ESAddr)
		if err != nil {
			return fmt.Errorf("esfake: %w", err)
		}
		s.es = es
		log.WithField("url", es.URL()).Debug("esfake started")
	}
	if o.with(Kafka) {
		var dir string
		if o.DataDir != "" {
			dir = filepath.Join(o.DataDir, "kafka")
		}
		k, err := startKafka(ctx, o.KafkaAddr, dir, o.Partitions, o.Topics, log)
		if err != nil {
			return fmt.Errorf("kafka: %w", err)
		}
		s.kafka = k
		log.WithField("addr", k.Addr()).Debug("kafka started")
	}
	if o.with(Etcd) {
		dir := filepath.Join(o.DataDir, "etcd")
		if o.DataDir == "" {
			tmp, err := os.MkdirTemp("", "logpipe-devstack-etcd-")
			if err != nil {
				return fmt.Errorf("etcd: %w", err)
			}
			s.tmpDir, dir = tmp, tmp
		}
		e, err := startEtcd(ctx, o.EtcdAddr, dir)
		if err != nil {
			return fmt.Errorf("etcd: %w", err)
		}
		s.etcd = e
		log.WithField("endpoint", e.Endpoint()).Debug("etcd started")
	}
	return nil
}

// New starts a stack for a test and stops it when the test ends. It fails
// the test if the stack does not start.
func New(tb testing.TB, opts Options) *Stack {
	tb.Helper()
	s, err := Start(tb.Context(), opts)
	if err != nil {
		tb.Fatalf("starting the backends: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("stopping the backends: %v", err)
		}
	})
	return s
}

// Close stops every backend and waits for them. Kafka and etcd save their
// data when Options.DataDir is set. Close is safe to call more than once.
func (s *Stack) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		if s.es != nil {
			errs = append(errs, wrap("esfake", s.es.Close()))
		}
		if s.kafka != nil {
			errs = append(errs, wrap("kafka", s.kafka.Close()))
		}
		if s.etcd != nil {
			errs = append(errs, wrap("etcd", s.etcd.Close()))
		}
		if s.tmpDir != "" {
			errs = append(errs, os.RemoveAll(s.tmpDir))
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
	if s.kafka == nil {
		return nil
	}
	return []string{s.kafka.Addr()}
}

// ESURL is esfake's base URL, such as "http://127.0.0.1:9200"; "" without it.
func (s *Stack) ESURL() string {
	if s.es == nil {
		return ""
	}
	return s.es.URL()
}

// ESAddr is esfake's listen address, such as "127.0.0.1:9200"; "" without it.
func (s *Stack) ESAddr() string {
	if s.es == nil {
		return ""
	}
	return s.es.Addr()
}

// ES is the running esfake server, for fault injection and document checks;
// nil without it.
func (s *Stack) ES() *esfake.Server {
	if s.es == nil {
		return nil
	}
	return s.es.fake
}

// Kafka is the kfake cluster, for tests that need its controls; nil
// without Kafka.
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
// groups stay as they are.
func (s *Stack) StopKafka() error {
	if s.kafka == nil {
		return fmt.Errorf("%w: kafka", ErrWithout)
	}
	return s.kafka.g.Down()
}

// StartKafka puts the broker back on its address after StopKafka.
func (s *Stack) StartKafka() error {
	if s.kafka == nil {
		return fmt.Errorf("%w: kafka", ErrWithout)
	}
	return s.kafka.g.Up()
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
