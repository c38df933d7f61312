// Package stack gives a test logpipe's backends in one call: New starts
// them (package devstack/backends) and stops them when the test ends, and
// ForBackends runs a test on both kinds, embedded and real. With real
// backends a test gets the shared Apache Kafka and OpenSearch of the test
// run, with topics and data streams of its own (see EnvBackendsFile).
// Only tests import it: the binaries use devstack/backends.
//
//	s := stack.New(t, stack.Options{})
//	cli, _ := clientv3.New(clientv3.Config{Endpoints: s.EtcdEndpoints()})
//	cl, _ := kgo.NewClient(kgo.SeedBrokers(s.KafkaAddrs()...))
package stack

import (
	"errors"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/logpipe/logpipe/devstack/backends"
)

// Backend names, for Options.Without.
const (
	Etcd  = backends.Etcd
	Kafka = backends.Kafka
	ES    = backends.ES
)

// Kinds of backends, for Options.Backends.
const (
	Embedded = backends.Embedded
	Real     = backends.Real
)

// DefaultPartitions is the number of partitions when Options.Partitions is 0.
const DefaultPartitions = backends.DefaultPartitions

// Options says which backends to start and where.
type Options = backends.Options

// Stack is a set of running backends for one test: its own, or the shared
// real ones of the test run (Shared).
type Stack struct {
	*backends.Stack // on shared backends, etcd alone

	opts Options
	// On the shared real backends of a test run (shared.go): their
	// addresses, and the suffix of this stack's topics and data streams.
	sharedKafka string
	sharedES    string
	suffix      string

	closeOnce sync.Once
	closeErr  error
}

// New starts a stack for a test and stops it when the test ends. It fails
// the test if the stack does not start.
//
// With Options.Backends Real, the test gets the shared real backends of the
// test run when there are some (see EnvBackendsFile), and is skipped when
// there are none, unless EnvRequireReal is "1"; with Options.Private,
// Options.Secure or Options.DataDir, it gets backends of its own, and
// SkipReal decides first whether it runs.
func New(tb testing.TB, opts Options) *Stack {
	tb.Helper()
	if err := opts.SetDefaults(); err != nil {
		tb.Fatal(err)
	}
	s := &Stack{opts: opts}
	var err error
	if wantsShared(opts) {
		sh, ok, serr := sharedBackends(tb.Context())
		switch {
		case serr != nil:
			tb.Fatal(serr)
		case !ok && os.Getenv(EnvRequireReal) == "1":
			tb.Fatalf("real backends: %s is not set; run the tests with make test, which starts them", EnvBackendsFile)
		case !ok:
			tb.Skipf("real backends: run with make test, or set %s to the output file of a running `devstack --backends real` (see README, Tests)", EnvBackendsFile)
		}
		err = s.startShared(tb, sh)
	} else {
		if opts.Backends == Real {
			SkipReal(tb) // JVMs of the test's own
		}
		s.Stack, err = backends.Start(tb.Context(), opts)
	}
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

// Close stops the backends, and on shared ones deletes this test's topics
// and data streams. It is safe to call more than once.
func (s *Stack) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		if s.suffix != "" {
			errs = append(errs, s.closeShared())
		}
		errs = append(errs, s.Stack.Close())
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// KafkaAddrs are the Kafka bootstrap addresses; nil without Kafka.
func (s *Stack) KafkaAddrs() []string {
	if s.sharedKafka != "" {
		return []string{s.sharedKafka}
	}
	return s.Stack.KafkaAddrs()
}

// ESURL is the Elasticsearch API's base URL; "" without it.
func (s *Stack) ESURL() string {
	if addr := s.ESAddr(); addr != "" {
		return "http://" + addr
	}
	return ""
}

// ESAddr is the Elasticsearch API's listen address; "" without it.
func (s *Stack) ESAddr() string {
	if s.sharedES != "" {
		return strings.TrimPrefix(s.sharedES, "http://")
	}
	return s.Stack.ESAddr()
}

// Backends is Embedded or Real.
func (s *Stack) Backends() string { return s.opts.Backends }

// Partitions is the number of partitions of each created topic.
func (s *Stack) Partitions() int { return s.opts.Partitions }

// Topics are the topics created at start, by the names they have on this
// stack (Topic).
func (s *Stack) Topics() []string {
	names := make([]string, len(s.opts.Topics))
	for i, t := range s.opts.Topics {
		names[i] = s.Topic(t)
	}
	return names
}

// StopKafka takes the broker off the network (see backends.Stack.StopKafka);
// ErrShared on shared backends.
func (s *Stack) StopKafka() error {
	if s.sharedKafka != "" {
		return ErrShared
	}
	return s.Stack.StopKafka()
}

// StartKafka puts the broker back after StopKafka; ErrShared on shared
// backends.
func (s *Stack) StartKafka() error {
	if s.sharedKafka != "" {
		return ErrShared
	}
	return s.Stack.StartKafka()
}
