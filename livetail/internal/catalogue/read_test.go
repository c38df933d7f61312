package catalogue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/logpipe/logpipe/devstack/stack"
)

// TestRead runs a Catalogue against Kafka, embedded and real. The topic is
// missing at first (not an error, and not created by the lookup); once it
// exists, what is in it is listed, from its start and as it comes. On the
// embedded broker, which a test can take off the network, what was read
// stays listed through an outage and reading resumes after it.
func TestRead(t *testing.T) {
	stack.ForBackends(t, func(t *testing.T, kind string) {
		s := stack.New(t, stack.Options{Backends: kind, Without: []string{stack.Etcd, stack.ES}})
		topic := s.Topic("logs.jobs")
		cl, err := kgo.NewClient(kgo.SeedBrokers(s.KafkaAddrs()...), kgo.DefaultProduceTopic(topic),
			kgo.RecordPartitioner(kgo.ManualPartitioner()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if s.Shared() {
				req := kmsg.NewPtrDeleteTopicsRequest()
				req.TopicNames = []string{topic}
				_, _ = req.RequestWith(context.Background(), cl)
			}
			cl.Close()
		})

		records, bytes := prometheus.NewCounter(prometheus.CounterOpts{Name: "r"}), prometheus.NewCounter(prometheus.CounterOpts{Name: "b"})
		c := New(Options{Brokers: s.KafkaAddrs(), Topic: topic, LogTopic: "logs", Recheck: 100 * time.Millisecond,
			BackoffMin: 50 * time.Millisecond, BackoffMax: 500 * time.Millisecond, Records: records, Bytes: bytes})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- c.Run(ctx) }()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		}()

		// Missing: nothing listed, and the lookups did not create it.
		time.Sleep(500 * time.Millisecond) // several lookups
		if exists(t, cl, topic) {
			t.Fatalf("looking %s up created it", topic)
		}
		if jobs := c.Jobs(); len(jobs) != 0 {
			t.Fatalf("jobs without a topic: %+v", jobs)
		}

		create(t, cl, topic)
		put := producer(t, cl)
		now := time.Now()
		put(record("logs", 1, "web", now, 12))
		put(record("logs", 4, "web", now.Add(-time.Minute), 3))
		put(record("logs", 0, "cron", now, 1))
		waitJobs(t, c, "the topic once created", map[string][]int32{"web": {1, 4}, "cron": {0}})
		if n := testutil.ToFloat64(records); n != 3 {
			t.Fatalf("records read = %v, want 3", n)
		}
		if testutil.ToFloat64(bytes) == 0 {
			t.Fatal("no bytes counted")
		}

		if kind != stack.Embedded {
			return
		}
		if err := s.StopKafka(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second) // reads fail and are retried meanwhile
		waitJobs(t, c, "during the outage", map[string][]int32{"web": {1, 4}, "cron": {0}})
		if err := s.StartKafka(); err != nil {
			t.Fatal(err)
		}
		put(record("logs", 2, "api", time.Now(), 5))
		waitJobs(t, c, "after the outage", map[string][]int32{"web": {1, 4}, "cron": {0}, "api": {2}})
	})
}

// waitJobs waits until c lists exactly the jobs of want, on their partitions.
func waitJobs(t *testing.T, c *Catalogue, when string, want map[string][]int32) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		got := map[string][]int32{}
		for _, j := range c.Jobs() {
			got[j.Job] = j.Partitions
		}
		if fmt.Sprint(got) == fmt.Sprint(want) {
			for job, p := range want {
				if !slices.Equal(c.Partitions(job), p) {
					t.Fatalf("%s: Partitions(%s) = %v, want %v", when, job, c.Partitions(job), p)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: jobs %v, want %v", when, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func create(t *testing.T, cl *kgo.Client, topic string) {
	t.Helper()
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, 1, 1
	policy := "compact,delete"
	cfg := kmsg.NewCreateTopicsRequestTopicConfig()
	cfg.Name, cfg.Value = "cleanup.policy", &policy
	rt.Configs = append(rt.Configs, cfg)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(context.Background(), cl)
	if err != nil {
		t.Fatal(err)
	}
	if err := kerr.ErrorForCode(resp.Topics[0].ErrorCode); err != nil {
		t.Fatalf("creating %s: %v", topic, err)
	}
}

func exists(t *testing.T, cl *kgo.Client, topic string) bool {
	t.Helper()
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(context.Background(), cl)
	if err != nil {
		t.Fatal(err)
	}
	return !errors.Is(kerr.ErrorForCode(resp.Topics[0].ErrorCode), kerr.UnknownTopicOrPartition)
}

// producer returns a function that writes one record to partition 0.
func producer(t *testing.T, cl *kgo.Client) func(key, value []byte) {
	return func(key, value []byte) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := cl.ProduceSync(ctx, &kgo.Record{Key: key, Value: value, Partition: 0}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}
