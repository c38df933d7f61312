package backends

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// minSessionTimeout is the shortest consumer group session the broker
// accepts (Kafka's default is 6 s), so that tests can notice a dead member
// quickly.
const minSessionTimeout = 100 * time.Millisecond

// quietLimit bounds how long Close waits for the broker's connection
// goroutines to notice that their connections are closed.
const quietLimit = 5 * time.Second

// kafkaBroker is a one-broker kfake cluster serving through a gate, with
// a reaper that expires consumer group members as Kafka does (reaper.go).
type kafkaBroker struct {
	c      *kfake.Cluster
	g      *gate
	reaper *memberReaper
	// clientOpts are the security options of the broker's own clients.
	clientOpts []kgo.Opt
}

// startKafka starts the broker on addr with its data in dir ("" keeps it in
// memory) and makes sure that every topic in topics exists.
// With sec, it serves only SASL_SSL, with sec's certificate and the user
// KafkaUser.
func startKafka(ctx context.Context, addr, dir string, partitions int, topics []string, sec *Security, log logrus.FieldLogger) (*kafkaBroker, error) {
	g, err := newGate(addr)
	if err != nil {
		return nil, err
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.ListenFn(func(string, string) (net.Listener, error) { return g, nil }),
		kfake.ClusterID("logpipe-devstack"),
		kfake.AllowAutoTopicCreation(), // as Kafka's auto.create.topics.enable does by default
		kfake.DefaultNumPartitions(partitions),
		kfake.SeedTopics(int32(partitions), topics...),
		kfake.GroupMinSessionTimeout(minSessionTimeout),
		kfake.WithLogger(kafkaLogger{log}),
	}
	if dir != "" {
		opts = append(opts, kfake.DataDir(dir))
	}
	var clientOpts []kgo.Opt
	if sec != nil {
		opts = append(opts, kfake.TLS(sec.serverTLS(false)), kfake.EnableSASL(),
			kfake.Superuser(KafkaMechanism, KafkaUser, sec.KafkaPassword))
		clientOpts = sec.KafkaOpts()
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		g.Close()
		return nil, fmt.Errorf("starting kafka: %w", err)
	}
	k := &kafkaBroker{c: c, g: g, clientOpts: clientOpts}
	k.reaper = startReaper(c, k.Addr(), clientOpts, log)
	if sec != nil {
		if err := advertiseHandshakeV0(ctx, c, k.Addr(), clientOpts); err != nil {
			k.Close()
			return nil, err
		}
	}
	if dir != "" {
		// Seed topics are only created in a new data directory: make sure
		// that the ones asked for exist in a kept one too.
		if err := k.createTopics(ctx, partitions, topics); err != nil {
			k.Close()
			return nil, err
		}
	}
	return k, nil
}

// Addr is the broker's address, such as 127.0.0.1:9092.
func (k *kafkaBroker) Addr() string { return k.g.Addr().String() }

// createTopics creates the topics that do not exist yet.
func (k *kafkaBroker) createTopics(ctx context.Context, partitions int, topics []string) error {
	if len(topics) == 0 {
		return nil
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(k.Addr())}, k.clientOpts...)...)
	if err != nil {
		return fmt.Errorf("creating kafka topics: %w", err)
	}
	defer cl.Close()
	req := kmsg.NewPtrCreateTopicsRequest()
	for _, name := range topics {
		t := kmsg.NewCreateTopicsRequestTopic()
		t.Topic = name
		t.NumPartitions = int32(partitions)
		t.ReplicationFactor = -1
		req.Topics = append(req.Topics, t)
	}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("creating kafka topics: %w", err)
	}
	for _, t := range resp.Topics {
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil && err != kerr.TopicAlreadyExists {
			return fmt.Errorf("creating kafka topic %s: %w", t.Topic, err)
		}
	}
	return nil
}

// Close stops the broker (saving its state when it has a data directory)
// and waits until its connection goroutines have seen their connections
// closed.
func (k *kafkaBroker) Close() error {
	k.reaper.stop()
	k.c.Close() // closes the gate
	k.g.Close()
	if !k.g.Quiet(quietLimit) {
		return fmt.Errorf("stopping kafka: connections still busy after %v", quietLimit)
	}
	return nil
}

// kafkaLogger passes kfake's messages on one level lower: its "info" is
// every failed request, which is routine for a development broker.
type kafkaLogger struct{ log logrus.FieldLogger }

func (l kafkaLogger) Logf(level kfake.LogLevel, format string, args ...any) {
	log := l.log.WithField("backend", "kafka")
	switch level {
	case kfake.LogLevelError:
		log.Errorf(format, args...)
	case kfake.LogLevelWarn:
		log.Infof(format, args...)
	case kfake.LogLevelInfo:
		log.Debugf(format, args...)
	default:
		log.Tracef(format, args...)
	}
}
