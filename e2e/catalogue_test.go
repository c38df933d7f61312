package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/logpipe/logpipe/common/keys"
	"github.com/logpipe/logpipe/devstack/proc"
	"github.com/logpipe/logpipe/devstack/stack"
)

// catalogueJob is one job of GET /api/v1/jobs.
type catalogueJob struct {
	Job         string    `json:"job"`
	Partitions  []int32   `json:"partitions"`
	LastSeen    time.Time `json:"last_seen"`
	LinesPerMin *float64  `json:"lines_per_min"`
}

// catalogueWrites is transfer's count of catalogue records written.
const catalogueWrites = `transfer_jobs_catalogue_writes_total{result="ok"}`

// TestCatalogue runs agent, transfer and livetail against devstack's
// backends, embedded and real. Lines of three agent jobs and keyless lines
// of a foreign producer (kcat, the job only in the JSON value) go through
// transfer; a livetail with no client lists every job, on the partitions
// the index says its lines are on, with a non-zero rate. The catalogue
// topic is compacted. The catalogue goes on through a transfer restart and
// a rebalance between two transfers, after which each partition's entries
// come from one writer, its owner. With transfer stopped, a livetail
// started afresh, reading nothing back from the log topic, lists every job
// from the catalogue with the last_seen of its newest line.
func TestCatalogue(t *testing.T) {
	stack.ForBackends(t, testCatalogue)
}

func testCatalogue(t *testing.T, kind string) {
	if _, err := exec.LookPath("kcat"); err != nil {
		t.Fatalf("kcat is not installed (make test installs it): %v", err)
	}
	st := stack.New(t, stack.Options{Backends: kind})
	etcd := strings.Join(st.EtcdEndpoints(), ",")
	kafka := strings.Join(st.KafkaAddrs(), ",")
	topic, jobsTopic, esIndex := st.Topic("logs"), st.Topic("logs.jobs"), st.Index(index)
	group := st.Topic("logpipe-transfer")
	cl := catalogueClient(t, st, jobsTopic)

	dir := t.TempDir()
	agentJobs := []string{"cat-web", "cat-db", "cat-cron"}
	const foreign = "cat-foreign"
	var entries []string
	for _, job := range agentJobs {
		path := filepath.Join(dir, job+".log")
		appendLines(t, path, nil)
		entries = append(entries, fmt.Sprintf(`{"path":%q,"job":%q,"from":"beginning"}`, path, job))
	}
	const agentName = "e2e-catalogue"
	etcdctl(t, etcd, "put", keys.AgentConfig(agentName), "["+strings.Join(entries, ",")+"]")
	agent := proc.Start(t, binary(t, "agent"), "--name", agentName, "--etcd-endpoints", etcd, "--kafka-brokers", kafka,
		"--kafka-topic", topic, "--state-dir", filepath.Join(dir, "state"), "--metrics-addr", "127.0.0.1:0")
	transferArgs := []string{"--kafka-brokers", kafka, "--kafka-topics", topic, "--dlq-topic", st.Topic("logs.dlq"),
		"--group", group, "--es-addresses", st.ESURL(), "--es-index", esIndex, "--metrics-addr", "127.0.0.1:0",
		"--jobs-topic", jobsTopic, "--jobs-interval", "1s"}
	// --jobs-scan 0: livetail reads nothing back from the log topic at
	// start, so what it lists of the past comes from the catalogue.
	livetailArgs := []string{"--kafka-brokers", kafka, "--kafka-topic", topic, "--jobs-topic", jobsTopic,
		"--jobs-scan", "0", "--listen", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0"}
	transferA := proc.Start(t, binary(t, "transfer"), transferArgs...)
	lt := proc.Start(t, binary(t, "livetail"), livetailArgs...)
	waitReady(t, "agent", agent.Addr(t, "metrics"))
	waitReady(t, "transfer", transferA.Addr(t, "metrics"))
	waitReady(t, "livetail", lt.Addr(t, "http"))

	w := &jobsWriter{dir: dir, jobs: agentJobs, foreign: foreign, brokers: kafka, topic: topic, every: 200 * time.Millisecond}
	all := append(slices.Clone(agentJobs), foreign)
	slices.Sort(all)

	// 1. While lines flow, the replica without a client lists every job
	// with a rate; once they stop, on the partitions the index has them on.
	start := time.Now()
	w.start(t)
	eventually(t, "every job listed with a rate", func() error {
		got, err := listJobs(lt.Addr(t, "http"))
		if err != nil {
			return err
		}
		for _, job := range all {
			if j, ok := got[job]; !ok || j.LinesPerMin == nil || *j.LinesPerMin <= 0 {
				return fmt.Errorf("%s: %+v", job, got[job])
			}
		}
		return nil
	})
	t.Logf("every job listed with a rate %v after its first line", time.Since(start).Round(100*time.Millisecond))
	n := w.stop(t)
	truth := waitIndexed(t, st.ESURL(), esIndex, all, n)
	eventually(t, "partitions as in the index", func() error {
		got, err := listJobs(lt.Addr(t, "http"))
		if err != nil {
			return err
		}
		for _, job := range all {
			if !slices.Equal(got[job].Partitions, truth[job].partitions) {
				return fmt.Errorf("%s: partitions %v, the index has %v", job, got[job].Partitions, truth[job].partitions)
			}
		}
		return nil
	})
	t.Logf("keyless lines of %s on partitions %v; %d lines in all", foreign, truth[foreign].partitions, n)

	// 2. The topic transfer created is compacted, and deletes past a week.
	configs := stack.TopicConfigs(t, cl, jobsTopic)
	if configs["cleanup.policy"] != "compact,delete" || configs["retention.ms"] != "604800000" {
		t.Fatalf("%s: cleanup.policy=%q retention.ms=%q, want compact,delete and 604800000", jobsTopic,
			configs["cleanup.policy"], configs["retention.ms"])
	}
	t.Logf("%s: cleanup.policy=%s retention.ms=%s", jobsTopic, configs["cleanup.policy"], configs["retention.ms"])

	// 3. transfer restarts, then a second one joins its group: after the
	// rebalance, each partition's entries come from one writer, and both
	// write.
	if code := transferA.Stop(t); code != 0 {
		t.Fatalf("transfer exited %d after SIGTERM", code)
	}
	transferA = proc.Start(t, binary(t, "transfer"), transferArgs...)
	waitReady(t, "transfer", transferA.Addr(t, "metrics"))
	w.start(t)
	eventually(t, "the restarted transfer writes the catalogue", func() error {
		if v := proc.Metrics(transferA.Addr(t, "metrics"), catalogueWrites)[catalogueWrites]; v == 0 {
			return fmt.Errorf("%s = 0", catalogueWrites)
		}
		return nil
	})
	before := endOffset(t, cl, jobsTopic)
	transferB := proc.Start(t, binary(t, "transfer"), transferArgs...)
	waitReady(t, "second transfer", transferB.Addr(t, "metrics"))
	eventually(t, "the second transfer writes the catalogue (it owns partitions)", func() error {
		if v := proc.Metrics(transferB.Addr(t, "metrics"), catalogueWrites)[catalogueWrites]; v == 0 {
			return fmt.Errorf("%s = 0", catalogueWrites)
		}
		return nil
	})
	time.Sleep(3 * time.Second) // a few intervals: the rebalance is over
	mark := endOffset(t, cl, jobsTopic)
	time.Sleep(5 * time.Second) // both write, each its own partitions
	n = w.stop(t)
	end := endOffset(t, cl, jobsTopic)
	// From the second transfer's start on, a partition's entries may pass
	// from one writer to the other, never back: the old owner writes
	// nothing of a partition it gave up.
	across := writerSequences(t, cl, jobsTopic, before, end)
	t.Logf("across the rebalance: log partition -> writers in turn %v", across)
	for p, seq := range across {
		if len(seq) > 2 {
			t.Errorf("log partition %d: entries by writers %v in turn across the rebalance, want the old owner then the new one", p, seq)
		}
	}
	// Once the rebalance is over, each partition has one writer, and both
	// transfers write.
	ids := map[int64]bool{}
	settled := writerSequences(t, cl, jobsTopic, mark, end)
	for p, seq := range settled {
		if len(seq) != 1 {
			t.Errorf("log partition %d: entries by writers %v after the rebalance, want its owner alone", p, seq)
		}
		for _, id := range seq {
			ids[id] = true
		}
	}
	if len(ids) != 2 {
		t.Errorf("entries after the rebalance by %d writers, want the two transfers: %v", len(ids), settled)
	}
	t.Logf("after the rebalance: log partition -> writer (producer id) %v", settled)

	// 4. Every line indexed, and the catalogue has each job's newest line:
	// then transfer stops, and a livetail started afresh lists every job
	// from the catalogue alone.
	truth = waitIndexed(t, st.ESURL(), esIndex, all, n)
	eventually(t, "the catalogue has every job's newest line", func() error {
		got := catalogueLastSeen(t, cl, jobsTopic)
		for _, job := range all {
			if !got[job].Equal(truth[job].newest) {
				return fmt.Errorf("%s last seen %v in the catalogue, newest line %v", job, got[job], truth[job].newest)
			}
		}
		return nil
	})
	for _, p := range []*proc.Process{transferA, transferB, lt} {
		if code := p.Stop(t); code != 0 {
			t.Errorf("%s exited %d after SIGTERM", p.Name(), code)
		}
	}
	lt2 := proc.Start(t, binary(t, "livetail"), livetailArgs...)
	waitReady(t, "livetail", lt2.Addr(t, "http"))
	eventually(t, "a fresh livetail lists the jobs from the catalogue", func() error {
		got, err := listJobs(lt2.Addr(t, "http"))
		if err != nil {
			return err
		}
		for _, job := range all {
			j, ok := got[job]
			switch {
			case !ok:
				return fmt.Errorf("%s not listed: %v", job, got)
			case !j.LastSeen.Equal(truth[job].newest):
				return fmt.Errorf("%s last seen %v, want its newest line's @timestamp %v", job, j.LastSeen, truth[job].newest)
			case !slices.Equal(j.Partitions, truth[job].partitions):
				return fmt.Errorf("%s on partitions %v, the index has %v", job, j.Partitions, truth[job].partitions)
			}
		}
		return nil
	})
	for _, p := range []*proc.Process{agent, lt2} {
		if code := p.Stop(t); code != 0 {
			t.Errorf("%s exited %d after SIGTERM", p.Name(), code)
		}
	}
}

// jobTruth is what the index says of a job.
type jobTruth struct {
	partitions []int32
	newest     time.Time // the newest @timestamp
	count      int
}

// waitIndexed waits until the index holds n documents of jobs and returns
// what it says of each.
func waitIndexed(t *testing.T, esURL, esIndex string, jobs []string, n int) map[string]jobTruth {
	t.Helper()
	var truth map[string]jobTruth
	eventually(t, "every line indexed", func() error {
		if err := esRefresh(esURL, esIndex); err != nil {
			return err
		}
		truth = map[string]jobTruth{}
		total := 0
		for _, job := range jobs {
			jt, err := indexTruth(esURL, esIndex, job)
			if err != nil {
				return err
			}
			truth[job] = jt
			total += jt.count
		}
		if total < n {
			return fmt.Errorf("%d of %d lines indexed", total, n)
		}
		return nil
	})
	return truth
}

// indexTruth reads every document of job.
func indexTruth(esURL, esIndex, job string) (jobTruth, error) {
	q := `{"query":{"term":{"job":"` + job + `"}},"size":10000}`
	var body struct {
		Hits struct {
			Hits []struct {
				Source struct {
					Timestamp time.Time `json:"@timestamp"`
					Kafka     struct {
						Partition int32 `json:"partition"`
					} `json:"kafka"`
				} `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := esPost(esURL+"/"+esIndex+"/_search", q, &body); err != nil {
		return jobTruth{}, err
	}
	var jt jobTruth
	for _, h := range body.Hits.Hits {
		jt.count++
		if !slices.Contains(jt.partitions, h.Source.Kafka.Partition) {
			jt.partitions = append(jt.partitions, h.Source.Kafka.Partition)
		}
		if h.Source.Timestamp.After(jt.newest) {
			jt.newest = h.Source.Timestamp
		}
	}
	slices.Sort(jt.partitions)
	return jt, nil
}

// listJobs is GET /api/v1/jobs, by job.
func listJobs(addr string) (map[string]catalogueJob, error) {
	resp, err := http.Get("http://" + addr + "/api/v1/jobs")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var jobs []catalogueJob
	if err := json.NewDecoder(resp.Body).Decode(&jobs); err != nil {
		return nil, err
	}
	out := make(map[string]catalogueJob, len(jobs))
	for _, j := range jobs {
		out[j.Job] = j
	}
	return out, nil
}

// catalogueClient is a Kafka client for the test's looks at the catalogue
// topic; on the shared real backends it deletes the topic at the end (the
// stack deletes only the topics it made).
func catalogueClient(t *testing.T, st *stack.Stack, topic string) *kgo.Client {
	cl, err := kgo.NewClient(kgo.SeedBrokers(st.KafkaAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if st.Shared() {
			req := kmsg.NewPtrDeleteTopicsRequest()
			req.TopicNames = []string{topic}
			_, _ = req.RequestWith(context.Background(), cl)
		}
		cl.Close()
	})
	return cl
}

// endOffset is the end of the catalogue topic's partition 0.
func endOffset(t *testing.T, cl *kgo.Client, topic string) int64 {
	t.Helper()
	req := kmsg.NewPtrListOffsetsRequest()
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Partition, rp.Timestamp = 0, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(context.Background(), cl)
	if err != nil {
		t.Fatal(err)
	}
	p := resp.Topics[0].Partitions[0]
	if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
		t.Fatalf("end of %s: %v", topic, err)
	}
	return p.Offset
}

// writerSequences reads the catalogue records in [from, to) and returns,
// for each log partition, the producer ids that wrote its entries in turn
// (a run of records by one writer counted once): each transfer's
// idempotent producer has its own id.
func writerSequences(t *testing.T, cl *kgo.Client, topic string, from, to int64) map[int32][]int64 {
	t.Helper()
	if to <= from {
		t.Fatalf("no catalogue record written in the window (offsets %d to %d)", from, to)
	}
	out := map[int32][]int64{}
	readCatalogue(t, cl, topic, from, to, func(r *kgo.Record, e catalogueEntry) {
		if seq := out[e.Partition]; len(seq) == 0 || seq[len(seq)-1] != r.ProducerID {
			out[e.Partition] = append(seq, r.ProducerID)
		}
	})
	return out
}

// catalogueLastSeen reads the whole catalogue topic and returns each job's
// newest last_seen over the latest entry of each of its keys.
func catalogueLastSeen(t *testing.T, cl *kgo.Client, topic string) map[string]time.Time {
	t.Helper()
	latest := map[string]catalogueEntry{}
	readCatalogue(t, cl, topic, 0, endOffset(t, cl, topic), func(r *kgo.Record, e catalogueEntry) {
		latest[string(r.Key)] = e
	})
	out := map[string]time.Time{}
	for _, e := range latest {
		if e.LastSeen.After(out[e.Job]) {
			out[e.Job] = e.LastSeen
		}
	}
	return out
}

// catalogueEntry is a catalogue record's value.
type catalogueEntry struct {
	Job       string    `json:"job"`
	Partition int32     `json:"partition"`
	LastSeen  time.Time `json:"last_seen"`
}

// readCatalogue calls fn with each record of the catalogue topic in
// [from, to).
func readCatalogue(t *testing.T, cl *kgo.Client, topic string, from, to int64, fn func(*kgo.Record, catalogueEntry)) {
	t.Helper()
	rd, err := kgo.NewClient(kgo.SeedBrokers(cl.OptValue(kgo.SeedBrokers).([]string)...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(from)}}))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for next := from; next < to; {
		fs := rd.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading %s from %d: at %d of %d", topic, from, next, to)
		}
		fs.EachRecord(func(r *kgo.Record) {
			next = r.Offset + 1
			if r.Offset >= to {
				return
			}
			var e catalogueEntry
			if err := json.Unmarshal(r.Value, &e); err != nil {
				t.Errorf("catalogue record %q: %v", r.Value, err)
				return
			}
			fn(r, e)
		})
	}
}

// appendFile appends lines to path in one write.
func appendFile(path string, lines []string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(strings.Join(lines, "\n") + "\n"); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
