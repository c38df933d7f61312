package backends

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esapi"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/logpipe/logpipe/devstack/internal/realtest"
	"github.com/logpipe/logpipe/devstack/proc"
)

// needReal is stack.SkipReal: these tests start JVMs of their own.
func needReal(tb testing.TB) {
	tb.Helper()
	realtest.Need(tb)
}

// gone reports whether the process pid has ended (and was reaped).
func gone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// TestRealBackends runs the clients that logpipe and its users use against
// Apache Kafka and OpenSearch started through Options.Backends.
func TestRealBackends(t *testing.T) {
	needReal(t)
	kcat := proc.Tool(t, "kcat", "kcat")
	curl := proc.Tool(t, "curl", "curl")
	dir := t.TempDir()
	ctx := testContext(t, 5*time.Minute)
	log, logged := logtest.NewNullLogger()
	s, err := Start(ctx, Options{Backends: Real, DataDir: dir, Topics: []string{"logs", "logs.dlq", "outage"}, Logger: log})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	defer s.Close()
	if s.Backends() != Real || s.ES() != nil || s.Kafka() != nil || s.RealKafka() == nil || s.OpenSearch() == nil {
		t.Fatalf("Backends %q, ES %v, Kafka %v, RealKafka %v, OpenSearch %v: want real ones only",
			s.Backends(), s.ES(), s.Kafka(), s.RealKafka(), s.OpenSearch())
	}
	if len(s.EtcdEndpoints()) != 1 {
		t.Errorf("etcd endpoints %v, want one", s.EtcdEndpoints())
	}
	addrs := s.KafkaAddrs()
	if s.ESURL() != s.OpenSearch().URL() {
		t.Errorf("ESURL %s, want the proxy's URL %s", s.ESURL(), s.OpenSearch().URL())
	}

	t.Run("franz-go", func(t *testing.T) { testFranz(t, addrs[0]) })
	var kept []*sarama.ProducerMessage
	t.Run("sarama", func(t *testing.T) {
		// As the agent produces: idempotent, acks=all, lz4, Kafka 3.0's
		// protocol versions.
		cfg := idempotentConfig()
		cfg.Version = sarama.V3_0_0_0
		p := syncProducer(t, addrs, cfg)
		kept = produce(t, p, "logs", "line", 50)
		readBack(t, addrs, kept)
		// As transfer consumes: a consumer group.
		m := startMember(t, addrs, "real-test", "a")
		if got, want := m.receive(t, len(kept)), values(kept); !sameSet(got, want) {
			t.Errorf("group member received %q, want %q", got, want)
		}
		waitCommitted(t, addrs, "real-test", DefaultPartitions, len(kept))
		m.stop()
	})
	t.Run("kcat", func(t *testing.T) { testRealKcat(t, kcat, addrs[0]) })
	t.Run("curl", func(t *testing.T) { testRealCurl(t, curl, s.ESURL()) })
	t.Run("go-elasticsearch", func(t *testing.T) { testElasticsearchClient(t, s.ESURL()) })
	t.Run("stop and start kafka", func(t *testing.T) {
		p := syncProducer(t, addrs, idempotentConfig())
		before := produce(t, p, "outage", "before", 30)
		pid := s.RealKafka().PID()
		if err := s.StopKafka(); err != nil {
			t.Fatalf("StopKafka: %v", err)
		}
		if !gone(pid) {
			t.Errorf("Kafka's JVM (pid %d) still runs after StopKafka", pid)
		}
		if c, err := net.DialTimeout("tcp", addrs[0], time.Second); err == nil {
			c.Close()
			t.Fatalf("dial %s while stopped: connected, want refused", addrs[0])
		}
		if err := s.StartKafka(); err != nil {
			t.Fatalf("StartKafka: %v", err)
		}
		if got := s.KafkaAddrs(); !slices.Equal(got, addrs) {
			t.Fatalf("address after restart: %v, want %v", got, addrs)
		}
		// The producer from before the outage reconnects and goes on.
		after := produce(t, p, "outage", "after", 30)
		readBack(t, addrs, append(before, after...))
	})

	kafkaPID, openSearchPID := s.RealKafka().PID(), s.OpenSearch().PID()
	t.Run("a JVM that dies is logged", func(t *testing.T) {
		if err := syscall.Kill(kafkaPID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			for _, e := range logged.AllEntries() {
				if e.Level == logrus.ErrorLevel && strings.Contains(e.Message, "kafka exited by itself") {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("no error logged 20 s after Kafka's JVM was killed")
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	for name, pid := range map[string]int{"Kafka": kafkaPID, "OpenSearch": openSearchPID} {
		if !gone(pid) {
			t.Errorf("%s's JVM (pid %d) still runs after Close", name, pid)
		}
	}
	for _, f := range []string{"kafka/kafka.log", "opensearch/opensearch.log", "etcd"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("data folder: %v", err)
		}
	}
	if t.Failed() || len(kept) == 0 {
		return
	}

	// The data folder keeps Kafka's records for the next start.
	s2 := startStack(t, Options{Backends: Real, DataDir: dir, Without: []string{Etcd, ES}})
	readBack(t, s2.KafkaAddrs(), kept)
}

func testFranz(t *testing.T, addr string) {
	ctx := testContext(t, time.Minute)
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics("logs.dlq"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var want []string
	for i := range 20 {
		v := "franz-" + strconv.Itoa(i)
		want = append(want, v)
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "logs.dlq", Key: []byte("k"), Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	var got []string
	for len(got) < len(want) {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %q, want %q: %v", got, want, err)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	if !slices.Equal(got, want) {
		t.Errorf("consumed %q, want %q (one key, one partition, in order)", got, want)
	}
}

func testRealKcat(t *testing.T, kcat, broker string) {
	lines := "first line\nsecond line\nthird line\n"
	tool(t, lines, kcat, "-b", broker, "-P", "-t", "kcat", "-p", "0")
	if got := tool(t, "", kcat, "-q", "-b", broker, "-C", "-t", "kcat", "-p", "0", "-o", "beginning", "-e"); got != lines {
		t.Fatalf("kcat consumed %q, want %q", got, lines)
	}
	meta := tool(t, "", kcat, "-b", broker, "-L", "-J")
	var md struct {
		Brokers []struct {
			Name string `json:"name"`
		} `json:"brokers"`
		Topics []struct {
			Topic      string `json:"topic"`
			Partitions []any  `json:"partitions"`
		} `json:"topics"`
	}
	if err := json.Unmarshal([]byte(meta), &md); err != nil {
		t.Fatalf("kcat -L: %q: %v", meta, err)
	}
	if len(md.Brokers) != 1 || md.Brokers[0].Name != broker {
		t.Errorf("kcat -L brokers %+v, want %s alone", md.Brokers, broker)
	}
	partitions := map[string]int{}
	for _, tp := range md.Topics {
		partitions[tp.Topic] = len(tp.Partitions)
	}
	for _, topic := range []string{"logs", "logs.dlq", "outage", "kcat"} {
		if partitions[topic] != DefaultPartitions {
			t.Errorf("kcat -L: topic %s has %d partitions, want %d (topics %v)", topic, partitions[topic], DefaultPartitions, partitions)
		}
	}
}

// tool runs a command to its end and returns its stdout.
func tool(tb testing.TB, stdin, name string, args ...string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return proc.Output(tb, exec.CommandContext(ctx, name, args...), stdin)
}

func testRealCurl(t *testing.T, curl, url string) {
	out := tool(t, "", curl, "-sS", "-i", url+"/")
	head, body, ok := strings.Cut(strings.ReplaceAll(out, "\r\n", "\n"), "\n\n")
	if !ok || !strings.HasPrefix(head, "HTTP/1.1 200") {
		t.Fatalf("curl -i %s/: %q", url, out)
	}
	if !slices.Contains(strings.Split(head, "\n"), "X-Elastic-Product: Elasticsearch") {
		t.Errorf("curl -i %s/: no X-Elastic-Product: Elasticsearch among the headers:\n%s", url, head)
	}
	var root struct {
		Version struct {
			Distribution string `json:"distribution"`
			Number       string `json:"number"`
		} `json:"version"`
	}
	if err := json.Unmarshal([]byte(body), &root); err != nil || root.Version.Distribution != "opensearch" || root.Version.Number != "2.19.6" {
		t.Errorf("curl %s/: %q (%v), want OpenSearch 2.19.6", url, body, err)
	}
}

// testElasticsearchClient: Elasticsearch's own Go client (v8), as transfer
// uses it, through the proxy: a data stream template, a bulk of creates,
// a count and a search.
func testElasticsearchClient(t *testing.T, url string) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	defer tr.CloseIdleConnections()
	es, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{url}, Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t, time.Minute)
	// check(what)(resp, err) is the body of a successful answer.
	check := func(what string) func(*esapi.Response, error) []byte {
		return func(resp *esapi.Response, err error) []byte {
			t.Helper()
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			defer resp.Body.Close()
			var b bytes.Buffer
			b.ReadFrom(resp.Body)
			if resp.IsError() {
				t.Fatalf("%s: %s %s", what, resp.Status(), b.String())
			}
			return b.Bytes()
		}
	}
	info := check("info")(es.Info(es.Info.WithContext(ctx)))
	if !bytes.Contains(info, []byte(`"number" : "2.19.6"`)) && !bytes.Contains(info, []byte(`"number":"2.19.6"`)) {
		t.Errorf("info: %s, want version 2.19.6", info)
	}
	template := `{"index_patterns":["logs-realtest-*"],"data_stream":{},"priority":500,
		"template":{"mappings":{"properties":{"@timestamp":{"type":"date"},"message":{"type":"text"},"job":{"type":"keyword"}}}}}`
	check("index template")(es.Indices.PutIndexTemplate("logs-realtest", strings.NewReader(template),
		es.Indices.PutIndexTemplate.WithContext(ctx)))
	var bulk strings.Builder
	for i, msg := range []string{"connection refused", "request served", "disk full"} {
		bulk.WriteString(`{"create":{"_id":"d` + strconv.Itoa(i) + `"}}` + "\n")
		bulk.WriteString(`{"@timestamp":"2026-01-02T03:04:0` + strconv.Itoa(i) + `Z","message":"` + msg + `","job":"web"}` + "\n")
	}
	index := "logs-realtest-default"
	body := check("bulk")(es.Bulk(strings.NewReader(bulk.String()), es.Bulk.WithIndex(index),
		es.Bulk.WithRefresh("true"), es.Bulk.WithContext(ctx)))
	var br struct {
		Errors bool `json:"errors"`
		Items  []map[string]struct {
			Status int `json:"status"`
		} `json:"items"`
	}
	if err := json.Unmarshal(body, &br); err != nil || br.Errors || len(br.Items) != 3 || br.Items[0]["create"].Status != 201 {
		t.Fatalf("bulk: %s (%v), want three creates", body, err)
	}
	// One node, no replicas: the data stream's index is green.
	body = check("health")(es.Cluster.Health(es.Cluster.Health.WithIndex(index), es.Cluster.Health.WithContext(ctx)))
	var hr struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(body, &hr); err != nil || hr.Status != "green" {
		t.Errorf("health of %s: %s (%v), want green", index, body, err)
	}
	body = check("count")(es.Count(es.Count.WithIndex(index), es.Count.WithContext(ctx)))
	var cr struct {
		Count int `json:"count"`
	}
	if err := json.Unmarshal(body, &cr); err != nil || cr.Count != 3 {
		t.Errorf("count: %s (%v), want 3", body, err)
	}
	body = check("search")(es.Search(es.Search.WithIndex(index), es.Search.WithContext(ctx),
		es.Search.WithBody(strings.NewReader(`{"query":{"match":{"message":"refused"}}}`))))
	var sr struct {
		Hits struct {
			Hits []struct {
				ID string `json:"_id"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := json.Unmarshal(body, &sr); err != nil || len(sr.Hits.Hits) != 1 || sr.Hits.Hits[0].ID != "d0" {
		t.Errorf("search: %s (%v), want document d0 alone", body, err)
	}
}
