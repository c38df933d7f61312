package real

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/logpipe/logpipe/devstack/internal/listener"
)

// Kafka settings that differ from Kafka's defaults, for a development node.
const (
	// MinSessionTimeout is the shortest consumer group session timeout the
	// broker accepts (group.min.session.timeout.ms; Kafka's default is
	// 6 s), so that tests can notice a dead member quickly. The embedded
	// broker (kfake) accepts the same.
	MinSessionTimeout = 100 * time.Millisecond

	// DefaultPartitions is KafkaOptions.Partitions when it is 0.
	DefaultPartitions = 6

	kafkaHeap  = "-Xmx512m"
	startTries = 5 // starts on fresh random ports when one was taken
)

// ErrClosed is returned by Start after Close.
var ErrClosed = errors.New("real backends: closed")

// KafkaOptions says how to run the Kafka node.
type KafkaOptions struct {
	// Addr is the broker's listen address, such as 127.0.0.1:9092. ""
	// means 127.0.0.1:0; port 0 means a random free port below 32768,
	// kept for Stop and Start.
	Addr string

	// DataDir holds the node's log (kafka.log), configuration and data
	// (logs/), kept after Close for a later start. "" means a temporary
	// folder removed by Close.
	DataDir string

	Partitions int      // partitions of new topics (num.partitions); 0 means DefaultPartitions
	Topics     []string // created at start if missing, with Partitions partitions

	// Security, when set, makes the broker serve SASL_SSL alone.
	Security *KafkaSecurity

	Log logrus.FieldLogger // optional
}

// KafkaSecurity makes the broker's one listener SASL_SSL, with SCRAM-SHA-512
// and one user, created when the node's storage is formatted (a kept data
// folder keeps the user it was formatted with), and PLAIN for the same user
// and password (see listenerProperties). The controller's listener
// stays plaintext on loopback: only the node itself uses it.
type KafkaSecurity struct {
	KeystoreFile string      // PEM: the broker's private key (PKCS#8) and certificate
	CAFile       string      // PEM: the CA the broker trusts
	ClientTLS    *tls.Config // devstack's own client: trusts the CA
	User         string
	Password     string
}

// scramMechanism is the SASL mechanism of a secured node.
const scramMechanism = "SCRAM-SHA-512"

// Kafka is a running Apache Kafka node: broker and KRaft controller in one
// JVM, with auto.create.topics.enable on, replication factor 1 for its
// internal topics, no initial rebalance delay and MinSessionTimeout.
type Kafka struct {
	dist      Dist
	opts      KafkaOptions
	log       logrus.FieldLogger
	dir       string
	tmp       bool // dir is removed by Close
	clusterID string
	host      string
	port      int // the broker's port, kept for Start
	fixedPort bool
	ctrlPort  int // the controller's port; changes only when taken

	mu     sync.Mutex
	j      *jvm // nil while stopped
	closed bool
}

// StartKafka starts the node and returns once its broker answers and every
// topic in opts.Topics exists with a leader, or ctx ends (a cold JVM takes
// several seconds).
func StartKafka(ctx context.Context, dist Dist, opts KafkaOptions) (*Kafka, error) {
	if opts.Partitions < 0 {
		return nil, fmt.Errorf("kafka: partitions %d is negative", opts.Partitions)
	}
	if opts.Partitions == 0 {
		opts.Partitions = DefaultPartitions
	}
	opts.Topics = slices.Clone(opts.Topics)
	if opts.Log == nil {
		opts.Log = discard()
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	host, portStr, err := net.SplitHostPort(opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("kafka: address %q: %w", opts.Addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("kafka: address %q: bad port", opts.Addr)
	}
	k := &Kafka{dist: dist, opts: opts, log: opts.Log.WithField("backend", "kafka"),
		dir: opts.DataDir, host: host, port: port, fixedPort: port != 0}
	if k.dir == "" {
		if k.dir, err = os.MkdirTemp("", "logpipe-kafka-"); err != nil {
			return nil, fmt.Errorf("kafka: %w", err)
		}
		k.tmp = true
	} else if err := os.MkdirAll(k.dir, 0o755); err != nil {
		return nil, fmt.Errorf("kafka: data folder: %w", err)
	}
	if k.clusterID, err = clusterID(filepath.Join(k.dir, "cluster-id")); err != nil {
		k.removeTmp()
		return nil, fmt.Errorf("kafka: %w", err)
	}
	if err := k.start(ctx, !k.fixedPort); err != nil {
		k.removeTmp()
		return nil, err
	}
	return k, nil
}

// Addr is the broker's address, such as 127.0.0.1:9092.
func (k *Kafka) Addr() string { return net.JoinHostPort(k.host, strconv.Itoa(k.port)) }

// Version is Apache Kafka's version, such as 4.1.1.
func (k *Kafka) Version() string { return k.dist.KafkaVersion }

// DataDir is the node's folder, holding kafka.log.
func (k *Kafka) DataDir() string { return k.dir }

// PID is the JVM's process id; 0 while stopped.
func (k *Kafka) PID() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.j == nil {
		return 0
	}
	return k.j.PID()
}

// Stop stops the JVM (SIGTERM, then SIGKILL after StopGrace), keeping its
// data: the address refuses connections until Start.
func (k *Kafka) Stop() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return ErrClosed
	}
	k.stopLocked()
	return nil
}

// Start starts the JVM again after Stop, on the same address with the same
// data, and returns once the broker serves its topics. It does nothing if
// the node is running.
func (k *Kafka) Start(ctx context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return ErrClosed
	}
	if k.j != nil {
		return nil
	}
	return k.startLocked(ctx, false)
}

// Close stops the node and removes its folder if it was temporary. It is
// safe to call more than once.
func (k *Kafka) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return nil
	}
	k.closed = true
	k.stopLocked()
	return k.removeTmp()
}

func (k *Kafka) stopLocked() {
	if k.j == nil {
		return
	}
	start := time.Now()
	k.j.stop(StopGrace, k.log)
	k.log.WithField("took", time.Since(start).Round(time.Millisecond)).Debug("kafka stopped")
	k.j = nil
}

func (k *Kafka) removeTmp() error {
	if !k.tmp {
		return nil
	}
	return os.RemoveAll(k.dir)
}

func (k *Kafka) start(ctx context.Context, newPort bool) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.startLocked(ctx, newPort)
}

// startLocked starts the JVM and waits until it is ready. A port found
// taken is replaced by another random one and the start tried again: the
// controller's always, the broker's when newPort says so.
func (k *Kafka) startLocked(ctx context.Context, newPort bool) error {
	begin := time.Now()
	for try := 1; ; try++ {
		if newPort {
			k.port = listener.RandomPort()
		}
		for k.ctrlPort == 0 || k.ctrlPort == k.port {
			k.ctrlPort = listener.RandomPort()
		}
		props := filepath.Join(k.dir, "server.properties")
		// 0600: a secured node's holds its user's password.
		if err := os.WriteFile(props, []byte(k.properties()), 0o600); err != nil {
			return fmt.Errorf("kafka: %w", err)
		}
		args := []string{
			"-Xms512m", kafkaHeap, "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
			"-Dlog4j2.configurationFile=" + k.dist.kafkaLog4j(),
			"-cp", k.dist.kafkaClassPath(), "io.logpipe.devstack.kafka.Main", props, k.clusterID,
		}
		if sec := k.opts.Security; sec != nil {
			// The user to create when formatting, in a file rather than
			// on the command line, which every user of the machine sees.
			scram := filepath.Join(k.dir, "scram-user")
			spec := scramMechanism + "=[name=" + sec.User + ",password=" + sec.Password + "]"
			if err := os.WriteFile(scram, []byte(spec+"\n"), 0o600); err != nil {
				return fmt.Errorf("kafka: %w", err)
			}
			args = append(args, scram)
		}
		j, err := startJVM("kafka", k.dist.Java, args, filepath.Join(k.dir, "kafka.log"), k.log, nil)
		if err != nil {
			return fmt.Errorf("kafka: %w", err)
		}
		err = k.waitReady(ctx, j)
		if err == nil {
			j.ready.Store(true)
			k.j = j
			k.log.WithFields(logrus.Fields{"addr": k.Addr(), "pid": j.PID(), "took": time.Since(begin).Round(time.Millisecond)}).
				Info("kafka ready")
			return nil
		}
		j.stop(StopGrace, k.log)
		inUse := j.out.InUse()
		brokerTaken := slices.ContainsFunc(inUse, func(l string) bool { return strings.Contains(l, k.Addr()+":") })
		if len(inUse) == 0 || try == startTries || (brokerTaken && !newPort) || ctx.Err() != nil {
			return fmt.Errorf("kafka: %w", err)
		}
		k.log.WithField("try", try).Debug("kafka: a port was taken; trying other ports")
		k.ctrlPort = 0
	}
}

// properties is server.properties for the node.
func (k *Kafka) properties() string {
	ctrl := net.JoinHostPort(k.host, strconv.Itoa(k.ctrlPort))
	lines := []string{
		"# Written by devstack at each start.",
		"process.roles=broker,controller",
		"node.id=1",
		"controller.quorum.voters=1@" + ctrl,
		"controller.listener.names=CONTROLLER",
		"log.dirs=" + filepath.Join(k.dir, "logs"),
		"num.partitions=" + strconv.Itoa(k.opts.Partitions),
		"auto.create.topics.enable=true",
		"offsets.topic.replication.factor=1",
		"offsets.topic.num.partitions=" + strconv.Itoa(k.opts.Partitions),
		"transaction.state.log.replication.factor=1",
		"transaction.state.log.min.isr=1",
		"share.coordinator.state.topic.replication.factor=1",
		"share.coordinator.state.topic.min.isr=1",
		"group.initial.rebalance.delay.ms=0",
		// Retention is checked every second instead of every 5 minutes, so
		// that a test topic with a short retention.ms really loses its old
		// segments while the test runs (topics keep the default 7 days).
		"log.retention.check.interval.ms=1000",
		"group.min.session.timeout.ms=" + strconv.FormatInt(MinSessionTimeout.Milliseconds(), 10),
	}
	lines = append(lines, k.listenerProperties(ctrl)...)
	return strings.Join(lines, "\n") + "\n"
}

// listenerProperties are the listeners' settings: PLAINTEXT on the broker's
// address, or SASL_SSL alone when secured; the controller's on ctrl.
func (k *Kafka) listenerProperties(ctrl string) []string {
	sec := k.opts.Security
	if sec == nil {
		return []string{
			"listeners=PLAINTEXT://" + k.Addr() + ",CONTROLLER://" + ctrl,
			"advertised.listeners=PLAINTEXT://" + k.Addr(),
			"inter.broker.listener.name=PLAINTEXT",
			"listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
		}
	}
	jaas := `org.apache.kafka.common.security.scram.ScramLoginModule required username="` +
		sec.User + `" password="` + sec.Password + `";`
	// PLAIN too, for the same user and password: librdkafka before 2.6.1
	// (kcat on Debian 12 links 2.0.2) fails SCRAM against Kafka 4, and
	// over TLS PLAIN is as safe for a development stack.
	plainJaas := `org.apache.kafka.common.security.plain.PlainLoginModule required user_` + sec.User + `="` + sec.Password + `";`
	return []string{
		"listeners=SASL_SSL://" + k.Addr() + ",CONTROLLER://" + ctrl,
		"advertised.listeners=SASL_SSL://" + k.Addr(),
		"inter.broker.listener.name=SASL_SSL",
		"listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
		"sasl.enabled.mechanisms=" + scramMechanism + ",PLAIN",
		"sasl.mechanism.inter.broker.protocol=" + scramMechanism,
		"listener.name.sasl_ssl." + strings.ToLower(scramMechanism) + ".sasl.jaas.config=" + jaas,
		"listener.name.sasl_ssl.plain.sasl.jaas.config=" + plainJaas,
		"ssl.keystore.type=PEM",
		"ssl.keystore.location=" + sec.KeystoreFile,
		"ssl.truststore.type=PEM",
		"ssl.truststore.location=" + sec.CAFile,
		"ssl.client.auth=none",
	}
}

// clientOpts are the security options of devstack's own client.
func (k *Kafka) clientOpts() []kgo.Opt {
	sec := k.opts.Security
	if sec == nil {
		return nil
	}
	return []kgo.Opt{
		kgo.DialTLSConfig(sec.ClientTLS.Clone()),
		kgo.SASL(scram.Auth{User: sec.User, Pass: sec.Password}.AsSha512Mechanism()),
	}
}

// waitReady polls the broker until it serves every topic (creating the
// missing ones), the JVM exits, or ctx ends.
func (k *Kafka) waitReady(ctx context.Context, j *jvm) error {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(k.Addr()), kgo.DialTimeout(time.Second),
		kgo.WithLogger(kgo.BasicLogger(io.Discard, kgo.LogLevelNone, nil))}, k.clientOpts()...)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	last := errors.New("no answer yet")
	for {
		select {
		case <-j.exited:
			return j.failed(fmt.Sprintf("exited while starting (%v)", j.err))
		case <-ctx.Done():
			return j.failed(fmt.Sprintf("not ready: %v (last: %v)", context.Cause(ctx), last))
		case <-tick.C:
		}
		if last = k.check(ctx, cl); last == nil {
			return nil
		}
	}
}

// check asks for the topics' metadata and creates the missing ones; nil
// means that this node (not another one on the same port) serves them all.
func (k *Kafka) check(ctx context.Context, cl *kgo.Client) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req := kmsg.NewPtrMetadataRequest()
	for _, name := range k.opts.Topics {
		t := kmsg.NewMetadataRequestTopic()
		t.Topic = kmsg.StringPtr(name)
		req.Topics = append(req.Topics, t)
	}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return err
	}
	if resp.ClusterID == nil || *resp.ClusterID != k.clusterID {
		return fmt.Errorf("another Kafka cluster answers on %s", k.Addr())
	}
	var missing []string
	var found []kmsg.MetadataResponseTopic
	for _, t := range resp.Topics {
		name := kmsg.StringPtr("")
		if t.Topic != nil {
			name = t.Topic
		}
		switch err := kerr.ErrorForCode(t.ErrorCode); {
		case errors.Is(err, kerr.UnknownTopicOrPartition):
			missing = append(missing, *name)
			continue
		case err != nil:
			return fmt.Errorf("topic %s: %w", *name, err)
		}
		if len(t.Partitions) == 0 {
			return fmt.Errorf("topic %s has no partitions yet", *name)
		}
		found = append(found, t)
	}
	if len(missing) > 0 {
		return k.createTopics(ctx, cl, missing)
	}
	return PartitionsServe(ctx, cl, found)
}

// PartitionsServe returns nil once every partition of topics (as a
// metadata response names them) has a leader that answers ListOffsets.
// The metadata can name a leader before it serves the partition: after a
// restart, or just after the topic was created.
func PartitionsServe(ctx context.Context, cl *kgo.Client, topics []kmsg.MetadataResponseTopic) error {
	offsets := kmsg.NewPtrListOffsetsRequest()
	offsets.ReplicaID = -1
	for _, t := range topics {
		name := ""
		if t.Topic != nil {
			name = *t.Topic
		}
		ot := kmsg.NewListOffsetsRequestTopic()
		ot.Topic = name
		for _, p := range t.Partitions {
			if p.Leader < 0 || p.ErrorCode != 0 {
				return fmt.Errorf("topic %s partition %d has no leader yet", name, p.Partition)
			}
			op := kmsg.NewListOffsetsRequestTopicPartition()
			op.Partition = p.Partition
			op.Timestamp = -1 // the end
			ot.Partitions = append(ot.Partitions, op)
		}
		offsets.Topics = append(offsets.Topics, ot)
	}
	if len(offsets.Topics) == 0 {
		return nil
	}
	oresp, err := offsets.RequestWith(ctx, cl)
	if err != nil {
		return err
	}
	for _, t := range oresp.Topics {
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return fmt.Errorf("topic %s partition %d: %w", t.Topic, p.Partition, err)
			}
		}
	}
	return nil
}

// createTopics creates topics and returns an error to check again: they
// have no leader yet.
func (k *Kafka) createTopics(ctx context.Context, cl *kgo.Client, topics []string) error {
	req := kmsg.NewPtrCreateTopicsRequest()
	for _, name := range topics {
		t := kmsg.NewCreateTopicsRequestTopic()
		t.Topic = name
		t.NumPartitions = int32(k.opts.Partitions)
		t.ReplicationFactor = 1
		req.Topics = append(req.Topics, t)
	}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("creating topics %s: %w", strings.Join(topics, ", "), err)
	}
	for _, t := range resp.Topics {
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("creating topic %s: %w", t.Topic, err)
		}
	}
	return fmt.Errorf("created topics %s", strings.Join(topics, ", "))
}

// clusterID reads the node's cluster id from path, or makes one and writes
// it there: a random one, so that a start can tell its own broker from
// another one that holds the port.
func clusterID(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		if id := strings.TrimSpace(string(b)); id != "" {
			return id, nil
		}
	}
	var id string
	for id == "" || id[0] == '-' { // Kafka's tools would read a leading '-' as an option
		var b [16]byte
		_, _ = rand.Read(b[:])
		id = base64.RawURLEncoding.EncodeToString(b[:])
	}
	if err := os.WriteFile(path, []byte(id+"\n"), 0o644); err != nil {
		return "", err
	}
	return id, nil
}
