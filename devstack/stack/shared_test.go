package stack

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/IBM/sarama"
	"github.com/elastic/go-elasticsearch/v8"
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

		p := syncProducer(t, a.KafkaAddrs(), idempotentConfig())
		part, off, err := p.SendMessage(&sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder("job"), Value: sarama.StringEncoder("hello")})
		if err != nil {
			t.Fatalf("producing to %s: %v", topic, err)
		}
		cl := saramaClient(t, a.KafkaAddrs(), saramaConfig())
		if hw, err := cl.GetOffset(topic, part, sarama.OffsetNewest); err != nil || hw != off+1 {
			t.Fatalf("high watermark of %s/%d = %d, %v; want %d", topic, part, hw, err, off+1)
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
		admin, err := sarama.NewClusterAdmin(b.KafkaAddrs(), saramaConfig())
		if err != nil {
			t.Fatal(err)
		}
		defer admin.Close()
		topics, err := admin.ListTopics()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := topics[topic]; ok {
			t.Fatalf("topic %s still exists after Close", topic)
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
