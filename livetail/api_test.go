package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/logpipe/logpipe/devstack/stack"
)

// The jobs list, the viewer, health and readiness are on the --listen
// address, metrics and the process's own log only on --metrics-addr; a
// plain GET of the tail endpoint is told to use a WebSocket. On kfake and
// on Apache Kafka: the jobs listed are those read from it.
func TestHTTPEndpoints(t *testing.T) {
	stack.ForBackends(t, testHTTPEndpoints)
}

func testHTTPEndpoints(t *testing.T, kind string) {
	s := newKafkaOf(t, stack.Options{Backends: kind})
	cfg := testConfig(s)
	// The test waits for livetail to read lines no session watches yet.
	cfg.Consume.Value = "all"
	cfg.Jobs = []string{"configured-only"}
	ts := startServer(t, cfg)
	p := newProducer(t, s)
	p.produce(t, "web-1", 0, 3)
	p.produce(t, "db-1", 0, 1)
	base := "http://" + ts.Addr()

	var jobs []struct {
		Job       string    `json:"job"`
		Partition int32     `json:"partition"`
		LastSeen  time.Time `json:"last_seen"`
	}
	eventually(t, within, "jobs listed", func() bool {
		_, body := httpGet(t, base+"/api/v1/jobs")
		jobs = nil
		json.Unmarshal([]byte(body), &jobs)
		return len(jobs) == 3
	})
	if jobs[0].Job != "configured-only" || !jobs[0].LastSeen.IsZero() || jobs[1].Job != "db-1" || jobs[2].Job != "web-1" || jobs[2].LastSeen.IsZero() {
		t.Fatalf("jobs %+v", jobs)
	}
	if jobs[2].Partition != p.partition("web-1") {
		t.Fatalf("partition %d", jobs[2].Partition)
	}

	for path, want := range map[string]string{
		"/healthz": "ok", "/readyz": "ok", "/": "livetail",
	} {
		if code, body := httpGet(t, base+path); code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("%s: %d %q", path, code, body)
		}
	}
	if code, _ := httpGet(t, base+"/api/v1/tail?job=a"); code != http.StatusUpgradeRequired {
		t.Errorf("plain GET of the tail endpoint: %d", code)
	}
	for _, path := range []string{"/metrics", "/debug/logs"} {
		if code, _ := httpGet(t, base+path); code != http.StatusNotFound {
			t.Errorf("%s on the public listener: %d, want 404", path, code)
		}
	}
	diagBase := "http://" + ts.MetricsAddr()
	if code, _ := httpGet(t, diagBase+"/debug/logs"); code != http.StatusOK {
		t.Errorf("/debug/logs on --metrics-addr: %d", code)
	}
	_, metrics := httpGet(t, diagBase+"/metrics")
	for _, name := range []string{
		"livetail_connections ", "livetail_pending_messages ", "livetail_entries_sent_total ",
		"livetail_entries_dropped_total ", "livetail_resent_lines_skipped_total ", `livetail_connections_rejected_total{reason="user_limit"}`,
		"go_goroutines ", "process_resident_memory_bytes ", "livetail_partitions 3", "livetail_history_reads ",
		"livetail_frame_gap_seconds ",
	} {
		if !strings.Contains(metrics, name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	// A restarted livetail lists the jobs it reads back at start.
	ts.stop()
	ts2 := startServer(t, cfg)
	eventually(t, within, "jobs read back after a restart", func() bool {
		_, body := httpGet(t, "http://"+ts2.Addr()+"/api/v1/jobs")
		return strings.Contains(body, `"web-1"`)
	})
}
