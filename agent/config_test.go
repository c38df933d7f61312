package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestParseConfig(t *testing.T) {
	env := map[string]string{"LOGPIPE_STATE_DIR": "/from/env", "LOGPIPE_NAME": "env-name"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	yaml := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(yaml, []byte("max-line-bytes: 64KiB\nname: file-name\npoll-interval: 100ms\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := parseConfig([]string{"--config", yaml, "--name", "flag-name", "--etcd-endpoints", "a:1,b:2"}, lookup)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "flag-name" || c.ConfigKey != "/logpipe/agents/flag-name" || c.StateDir != "/from/env" ||
		c.MaxLineBytes != 64<<10 || c.PollInterval != 100*time.Millisecond || len(c.EtcdEndpoints) != 2 {
		t.Fatalf("config %+v", c)
	}
	if c.MetricsAddr != "127.0.0.1:9101" || c.KafkaCompression.Value != "lz4" || c.compression().String() != "lz4" {
		t.Fatalf("defaults %+v", c)
	}
	c, err = parseConfig([]string{"--config-key", "/custom/key"}, func(string) (string, bool) { return "", false })
	if err != nil || c.ConfigKey != "/custom/key" {
		t.Fatalf("config key %q %v", c.ConfigKey, err)
	}
}
