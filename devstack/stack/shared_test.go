package stack

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestBackendsServeTheirNames: on both kinds of backends, a record produced
// to Topic("logs") is read back from it, and a document bulk-created in
// Index(...) through the Go Elasticsearch client is counted there. On the
// shared real backends, two stacks of one test see none of each other's
// records, and closing a stack removes its topics and data streams.
func TestBackendsServeTheirNames(t *testing.T) {
	ForBackends(t, func(t *testing.T, kind string) {
		a := New(t, Options{Backends: kind, Without: []string{Etcd}, Partitions: 2})
		topic := a.Topic("logs")
		if kind == Real && topic == "logs" {
			t.Fatalf("a test on shared real backends got the plain topic name %q", topic)
		}
		if got := a.Topics(); len(got) != 2 || got[0] != topic || got[1] != a.Topic("logs.dlq") {
			t.Fatalf("Topics() = %v, want [%s %s]", got, topic, a.Topic("logs.dlq"))
		}

		cl, err := kgo.NewClient(kgo.SeedBrokers(a.KafkaAddrs()...), kgo.ConsumeTopics(topic))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		sent := &kgo.Record{Topic: topic, Key: []byte("job"), Value: []byte("hello")}
		if err := cl.ProduceSync(t.Context(), sent).FirstErr(); err != nil {
			t.Fatalf("producing to %s: %v", topic, err)
		}
		got := cl.PollRecords(t.Context(), 1)
		if err := got.Err(); err != nil || got.NumRecords() != 1 {
			t.Fatalf("reading %s back: %d records, %v", topic, got.NumRecords(), err)
		}
		if r := got.Records()[0]; r.Partition != sent.Partition || r.Offset != sent.Offset || string(r.Value) != "hello" {
			t.Fatalf("read back %s/%d@%d %q, want %s/%d@%d hello", r.Topic, r.Partition, r.Offset, r.Value, topic, sent.Partition, sent.Offset)
		}

		es, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{a.ESURL()}})
		if err != nil {
			t.Fatal(err)
		}
		index := a.Index("logs-logpipe-default")
		body := fmt.Sprintf("{\"create\":{\"_index\":%q,\"_id\":\"1\"}}\n{\"@timestamp\":\"2026-11-30T10:00:00Z\",\"message\":\"hello\"}\n", index)
		res, err := es.Bulk(strings.NewReader(body), es.Bulk.WithRefresh("true"))
		if err != nil || res.IsError() {
			t.Fatalf("bulk into %s: %v %v", index, err, res)
		}
		res.Body.Close()
		if n := count(t, a.ESURL(), index); n != 1 {
			t.Fatalf("%s holds %d documents, want 1", index, n)
		}

		if kind != Real {
			return
		}
		// A second stack of the same test: names of its own, empty.
		b := New(t, Options{Backends: kind, Without: []string{Etcd}, Partitions: 2})
		if b.Topic("logs") == topic || b.Index("logs-logpipe-default") == index {
			t.Fatalf("two stacks share names: %s, %s", topic, index)
		}
		if n := count(t, b.ESURL(), b.Index("logs-logpipe-default")); n > 0 {
			t.Fatalf("a new stack's data stream holds %d documents, want 0", n)
		}
		if err := a.StopKafka(); err != ErrShared {
			t.Fatalf("StopKafka on shared backends = %v, want ErrShared", err)
		}
		if err := a.Close(); err != nil {
			t.Fatalf("closing: %v", err)
		}
		meta := kmsg.NewPtrMetadataRequest()
		mt := kmsg.NewMetadataRequestTopic()
		mt.Topic = kmsg.StringPtr(topic)
		meta.Topics = append(meta.Topics, mt)
		resp, err := meta.RequestWith(t.Context(), cl)
		if err != nil {
			t.Fatal(err)
		}
		if code := resp.Topics[0].ErrorCode; code != kerr.UnknownTopicOrPartition.Code {
			t.Fatalf("topic %s after Close: metadata error %v, want UNKNOWN_TOPIC_OR_PARTITION", topic, kerr.ErrorForCode(code))
		}
		if n := count(t, b.ESURL(), index); n != -1 {
			t.Fatalf("data stream %s still holds %d documents after Close", index, n)
		}
	})
}

// count is the number of documents in index, or -1 when it does not exist.
func count(t *testing.T, url, index string) int {
	t.Helper()
	res, err := http.Get(url + "/" + index + "/_count")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusNotFound {
		return -1
	}
	var body struct{ Count int }
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		t.Fatalf("counting %s: %v", index, err)
	}
	return body.Count
}

// TestSharedEndpointsFile: the endpoints file is read as devstack writes
// it, and a failure written into it is reported, with its reason.
func TestSharedEndpointsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "endpoints")
	t.Setenv(EnvBackendsFile, path)
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("etcd      http://127.0.0.1:2\nkafka     127.0.0.1:3 (Apache Kafka 4.1.1; topics logs; 6 partitions)\n")
	if _, ready, err := readEndpoints(path); ready || err != nil {
		t.Fatalf("before ready: ready=%v err=%v", ready, err)
	}
	write("kafka     127.0.0.1:3 (Apache Kafka)\nopensearch http://127.0.0.1:4 (OpenSearch)\nready\n")
	sh, ok, err := sharedBackends(t.Context())
	if !ok || err != nil || sh.kafka != "127.0.0.1:3" || sh.es != "http://127.0.0.1:4" {
		t.Fatalf("ready file: %+v ok=%v err=%v", sh, ok, err)
	}
	write("failed: devstack exited: java not found\n")
	if _, _, err := sharedBackends(t.Context()); err == nil || !strings.Contains(err.Error(), "java not found") {
		t.Fatalf("failed file: err=%v, want the reason", err)
	}
}
