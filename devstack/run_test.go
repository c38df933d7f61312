package main

import (
	"bufio"
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

// TestRun runs devstack in this process on free ports and stops it.
func TestRun(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	cfg.EtcdAddr, cfg.KafkaAddr, cfg.ESAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Partitions = 3
	cfg.LogLevel.Value = "error"
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	r, w := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, cfg, w)
		w.Close()
	}()
	sc := bufio.NewScanner(r)
	var lines []string
	for sc.Scan() && sc.Text() != "ready" {
		lines = append(lines, sc.Text())
	}
	go io.Copy(io.Discard, r)
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "etcd      http://127.0.0.1:") ||
		!strings.HasSuffix(lines[1], "(topics logs, logs.dlq; 3 partitions)") ||
		!strings.HasPrefix(lines[2], "esfake (development stand-in for Elasticsearch, not Elasticsearch) listening on http://127.0.0.1:") {
		t.Errorf("stdout before ready: %q", lines)
	}
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("run did not return within a minute of cancel")
	}
}

func TestParseConfigPrecedence(t *testing.T) {
	t.Parallel()
	env := map[string]string{"LOGPIPE_PARTITIONS": "4", "LOGPIPE_KAFKA_ADDR": "127.0.0.1:19092"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	cfg, err := parseConfig([]string{"--partitions", "2"}, lookup)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Partitions != 2 || cfg.KafkaAddr != "127.0.0.1:19092" || cfg.EtcdAddr != "127.0.0.1:2379" {
		t.Errorf("got partitions %d, kafka %s, etcd %s; want 2 (flag), 127.0.0.1:19092 (env), 127.0.0.1:2379 (default)", cfg.Partitions, cfg.KafkaAddr, cfg.EtcdAddr)
	}
}
