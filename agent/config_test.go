package main

import (
	"os"
	"path/filepath"
	"strings"
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

// The etcd and Kafka passwords can come from files named by a flag, a
// variable or a config key; a bad file is one line naming the flag.
func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("secret-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(yaml, []byte("etcd-username: u\netcd-password-file: "+pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"LOGPIPE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "LOGPIPE_KAFKA_SASL_USERNAME": "u", "LOGPIPE_KAFKA_SASL_PASSWORD_FILE": pw}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	c, err := parseConfig([]string{"--config", yaml}, lookup)
	if err != nil || c.Etcd.Password != "secret-pw" || c.Kafka.SASLPassword != "secret-pw" {
		t.Fatalf("passwords %q %q, %v", c.Etcd.Password, c.Kafka.SASLPassword, err)
	}
	none := func(string) (string, bool) { return "", false }
	_, err = parseConfig([]string{"--etcd-username", "u", "--etcd-password-file", filepath.Join(dir, "none")}, none)
	if err == nil || !strings.Contains(err.Error(), "--etcd-password-file "+filepath.Join(dir, "none")) {
		t.Fatalf("error %v, want one naming the flag and the file", err)
	}
	c, err = parseConfig([]string{"--etcd-username", "u", "--etcd-password", "x"}, none)
	if err != nil || len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "LOGPIPE_ETCD_PASSWORD or --etcd-password-file") {
		t.Fatalf("warnings %q, %v", c.Warnings, err)
	}
}
