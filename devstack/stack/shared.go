package stack

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/logpipe/logpipe/devstack/backends"
	"github.com/logpipe/logpipe/devstack/internal/realtest"
	"github.com/logpipe/logpipe/devstack/real"
)

// Shared real backends.
//
// Starting Apache Kafka and OpenSearch takes a quarter of a minute and half
// a GiB of memory each, too much for every test of every package. So make
// test starts one `devstack --backends real` for the whole run (see
// scripts/with-real-backends) and names the file where devstack prints its
// endpoint lines in EnvBackendsFile. A test that asks New for real backends
// then gets that Kafka and that OpenSearch, with topics and data streams of
// its own (Stack.Topic, Stack.Index), so that tests running in parallel never
// see each other's records, and an embedded etcd of its own as always.
//
// A test that stops Kafka (StopKafka) or keeps data (DataDir) needs backends
// of its own: Options.Private starts its own JVMs, as Start does.
//
// Without EnvBackendsFile, a test asking for real backends is skipped with
// a message saying how to run it, unless EnvRequireReal is "1" (make test
// sets it, so that in CI such a test runs or fails, never skips).
//
// A test that starts JVMs of its own calls SkipReal first (New does, for
// Options.Private and Options.DataDir): EnvSkipReal=1 skips it, unless
// EnvRequireReal is "1", which wins.
const (
	EnvBackendsFile = "LOGPIPE_TEST_BACKENDS_FILE"
	EnvRequireReal  = realtest.EnvRequire
	EnvSkipReal     = realtest.EnvSkip
)

// SkipReal is called by a test before it starts Apache Kafka or OpenSearch
// in JVMs of its own. It skips the test under EnvSkipReal=1, unless
// EnvRequireReal=1 (make test) asks for the real backends, and fails it
// when java, javac or mvn is missing. Every test of the repository that
// starts JVMs goes through it (devstack/real's own tests, which this
// package imports, through package devstack/internal/realtest, which
// holds the rule).
func SkipReal(tb testing.TB) {
	tb.Helper()
	realtest.Need(tb)
}

// sharedWait bounds how long New waits for the shared backends to be ready:
// make test starts them while the test binaries compile.
const sharedWait = 6 * time.Minute

// ErrShared is returned by StopKafka and StartKafka on shared backends.
var ErrShared = errors.New("stack: shared real backends cannot be stopped; ask for Options.Private")

// Backends lists the kinds of backends a cross-binary test runs on.
var Backends = []string{Embedded, Real}

// ForBackends runs f as one subtest per kind of backends ("embedded",
// "real"), in that order. f starts its stack with New(t, Options{Backends: kind}).
func ForBackends(t *testing.T, f func(t *testing.T, kind string)) {
	t.Helper()
	for _, kind := range Backends {
		t.Run(kind, func(t *testing.T) { f(t, kind) })
	}
}

// shared is the endpoints read from EnvBackendsFile.
type shared struct {
	kafka string // bootstrap address
	es    string // URL of the Elasticsearch API
}

// sharedBackends waits until the file named by EnvBackendsFile says ready
// and returns its endpoints. ok is false without the variable.
func sharedBackends(ctx context.Context) (sh shared, ok bool, err error) {
	path := os.Getenv(EnvBackendsFile)
	if path == "" {
		return sh, false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, sharedWait)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		sh, ready, err := readEndpoints(path)
		if err != nil || ready {
			return sh, true, err
		}
		select {
		case <-ctx.Done():
			return sh, true, fmt.Errorf("shared real backends: %s not ready after %v", path, sharedWait)
		case <-tick.C:
		}
	}
}

// readEndpoints parses devstack's endpoint lines:
//
//	kafka      127.0.0.1:20412 (Apache Kafka ...)
//	opensearch http://127.0.0.1:24109 (OpenSearch ...)
//	ready
//
// A line "failed: REASON" (written by whoever started devstack, when it
// exited) is returned as an error.
func readEndpoints(path string) (sh shared, ready bool, err error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return sh, false, nil
	}
	if err != nil {
		return sh, false, fmt.Errorf("shared real backends: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if reason, ok := strings.CutPrefix(line, "failed:"); ok {
			return sh, false, fmt.Errorf("shared real backends: devstack --backends real failed: %s", strings.TrimSpace(reason))
		}
		fields := strings.Fields(line)
		switch {
		case len(fields) == 1 && fields[0] == "ready":
			ready = true
		case len(fields) >= 2 && fields[0] == "kafka":
			sh.kafka = fields[1]
		case len(fields) >= 2 && fields[0] == "opensearch":
			sh.es = fields[1]
		}
	}
	if ready && (sh.kafka == "" || sh.es == "") {
		return sh, false, fmt.Errorf("shared real backends: %s says ready but names no kafka or opensearch endpoint", path)
	}
	return sh, ready, sc.Err()
}

// wantsShared tells whether New should use the shared backends for opts.
func wantsShared(o Options) bool {
	return o.Backends == Real && !o.Private && !o.Secure && o.DataDir == "" &&
		o.KafkaAddr == "" && o.ESAddr == ""
}

// startShared makes s a stack on the shared real backends for one test,
// with an embedded etcd of its own.
func (s *Stack) startShared(tb testing.TB, sh shared) error {
	s.suffix = uniqueSuffix(tb.Name())
	own := Options{
		EtcdAddr: s.opts.EtcdAddr,
		Without:  []string{Kafka, ES},
		Logger:   s.opts.Logger,
	}
	if !s.opts.With(Etcd) {
		own.Without = append(own.Without, Etcd)
	}
	var err error
	if s.Stack, err = backends.Start(tb.Context(), own); err != nil {
		return err
	}
	if s.opts.With(Kafka) {
		s.sharedKafka = sh.kafka
		if err := s.createSharedTopics(tb.Context()); err != nil {
			return errors.Join(err, s.Stack.Close())
		}
	}
	if s.opts.With(ES) {
		s.sharedES = sh.es
	}
	return nil
}

// uniqueSuffix is a lower-case name for one test's topics and data streams:
// the test's name, cut short, and random hex.
func uniqueSuffix(testName string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(testName) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	name := strings.Trim(b.String(), "-")
	if len(name) > 40 {
		name = name[:40]
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	return strings.Trim(name, "-") + "-" + hex.EncodeToString(rnd[:])
}

// Topic is the name that the topic asked for as name (one of
// Options.Topics, or of DefaultTopics) has on this stack: name itself,
// except on shared real backends, where each test has topics of its own.
func (s *Stack) Topic(name string) string {
	if s.suffix == "" {
		return name
	}
	return name + "-" + s.suffix
}

// Index is the name that the data stream or index asked for as name has on
// this stack: name itself, except on shared real backends, where each test
// writes to data streams of its own. The name keeps its prefix, so
// logs-logpipe-default stays under transfer's template (logs-logpipe-*).
func (s *Stack) Index(name string) string {
	if s.suffix == "" {
		return name
	}
	return name + "-" + s.suffix
}

// Shared tells whether the stack's Kafka and OpenSearch are the shared
// real backends of the test run.
func (s *Stack) Shared() bool { return s.suffix != "" }

// createSharedTopics creates this test's topics on the shared broker.
func (s *Stack) createSharedTopics(ctx context.Context) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.sharedKafka))
	if err != nil {
		return fmt.Errorf("shared kafka: %w", err)
	}
	defer cl.Close()
	req := kmsg.NewPtrCreateTopicsRequest()
	for _, name := range s.opts.Topics {
		t := kmsg.NewCreateTopicsRequestTopic()
		t.Topic = s.Topic(name)
		t.NumPartitions = int32(s.opts.Partitions)
		t.ReplicationFactor = 1
		req.Topics = append(req.Topics, t)
	}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("shared kafka %s: creating topics: %w", s.sharedKafka, err)
	}
	for _, t := range resp.Topics {
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("shared kafka %s: creating topic %s: %w", s.sharedKafka, t.Topic, err)
		}
	}
	return s.waitTopicsServe(ctx, cl)
}

// topicsServeLimit bounds how long New waits for new topics to serve.
const topicsServeLimit = time.Minute

// waitTopicsServe returns once every partition of the stack's topics has a
// leader that answers ListOffsets. Kafka answers CreateTopics before that,
// and a producer that starts at once gets "not the leader" for a moment,
// which a client with few retries takes for a failure.
func (s *Stack) waitTopicsServe(ctx context.Context, cl *kgo.Client) error {
	ctx, cancel := context.WithTimeout(ctx, topicsServeLimit)
	defer cancel()
	var last error
	for {
		if last = s.topicsServe(ctx, cl); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("shared kafka %s: new topics not serving after %v: %w", s.sharedKafka, topicsServeLimit, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *Stack) topicsServe(ctx context.Context, cl *kgo.Client) error {
	meta := kmsg.NewPtrMetadataRequest()
	for _, name := range s.opts.Topics {
		t := kmsg.NewMetadataRequestTopic()
		t.Topic = kmsg.StringPtr(s.Topic(name))
		meta.Topics = append(meta.Topics, t)
	}
	resp, err := meta.RequestWith(ctx, cl)
	if err != nil {
		return err
	}
	for _, t := range resp.Topics {
		name := ""
		if t.Topic != nil {
			name = *t.Topic
		}
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			return fmt.Errorf("topic %s: %w", name, err)
		}
		if len(t.Partitions) != s.opts.Partitions {
			return fmt.Errorf("topic %s has %d of %d partitions", name, len(t.Partitions), s.opts.Partitions)
		}
	}
	return real.PartitionsServe(ctx, cl, resp.Topics)
}

// closeShared deletes this test's topics and data streams, so that a long
// test run does not fill the shared backends.
func (s *Stack) closeShared() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errs []error
	if s.sharedKafka != "" {
		errs = append(errs, s.deleteSharedTopics(ctx))
	}
	if s.sharedES != "" {
		// Data streams and plain indices both: a test may have made either.
		for _, path := range []string{"/_data_stream/*-" + s.suffix, "/*-" + s.suffix + "?expand_wildcards=all"} {
			req, err := http.NewRequestWithContext(ctx, http.MethodDelete, s.sharedES+path, nil)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				errs = append(errs, fmt.Errorf("shared opensearch: DELETE %s: %w", path, err))
				continue
			}
			res.Body.Close()
			if res.StatusCode >= 300 && res.StatusCode != http.StatusNotFound {
				errs = append(errs, fmt.Errorf("shared opensearch: DELETE %s: %s", path, res.Status))
			}
		}
	}
	return errors.Join(errs...)
}

func (s *Stack) deleteSharedTopics(ctx context.Context) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.sharedKafka))
	if err != nil {
		return fmt.Errorf("shared kafka: %w", err)
	}
	defer cl.Close()
	req := kmsg.NewPtrDeleteTopicsRequest()
	req.TimeoutMillis = 20000
	for _, name := range s.opts.Topics {
		t := kmsg.NewDeleteTopicsRequestTopic()
		topic := s.Topic(name)
		t.Topic = &topic
		req.Topics = append(req.Topics, t)
		req.TopicNames = append(req.TopicNames, topic)
	}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("shared kafka %s: deleting topics: %w", s.sharedKafka, err)
	}
	for _, t := range resp.Topics {
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil && !errors.Is(err, kerr.UnknownTopicOrPartition) {
			return fmt.Errorf("shared kafka %s: deleting topic %v: %w", s.sharedKafka, t.Topic, err)
		}
	}
	return nil
}
