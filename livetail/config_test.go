package main

import (
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/logpipe/logpipe/common/conf"
)

func parse(t *testing.T, args []string, env map[string]string) (Config, error) {
	t.Helper()
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("livetail", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg.Register(fs)
	err := conf.Parse(fs, args, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err == nil {
		err = cfg.Validate()
	}
	return cfg, err
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := parse(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:8080" || cfg.MaxConnsPerUser != 10 || cfg.MaxConns != 10000 ||
		cfg.MaxSession != 24*time.Hour || cfg.PingInterval != 5*time.Second ||
		cfg.Retry.Tries != 5 || cfg.Retry.Min != 5*time.Second || cfg.Retry.Max != 10*time.Second ||
		cfg.Limiter.Value != "memory" || cfg.Auth.Value != "none" || cfg.Common.KafkaTopic != "logs" {
		t.Fatalf("defaults %+v", cfg)
	}
}

func TestConfigSources(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "livetail.yaml")
	os.WriteFile(file, []byte("max-conns: 7\nping-interval: 2s\nallowed-origins: [a.example.com, b.example.com]\n"), 0o600)
	cfg, err := parse(t, []string{"--config", file, "--max-conns", "9", "--auth", "jwt"}, map[string]string{
		"LOGPIPE_JWT_SECRET": "s3cret", "LOGPIPE_PING_INTERVAL": "3s",
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxConns != 9 || cfg.PingInterval != 3*time.Second || cfg.JWTSecret != "s3cret" ||
		strings.Join(cfg.AllowedOrigins, ",") != "a.example.com,b.example.com" {
		t.Fatalf("%+v", cfg)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := map[string]struct {
		args []string
		want string
	}{
		"limiter":         {[]string{"--limiter", "etcd"}, "limiter"},
		"auth":            {[]string{"--auth", "basic"}, "auth"},
		"jwt without key": {[]string{"--auth", "jwt"}, "--jwt-secret"},
		"jwt with both":   {[]string{"--auth", "jwt", "--jwt-secret", "x", "--jwt-public-key", "k.pem"}, "exactly one"},
		"secret, no auth": {[]string{"--jwt-secret", "x"}, "--auth"},
		"per user":        {[]string{"--max-conns-per-user", "0"}, "--max-conns-per-user 0"},
		"redis CA":        {[]string{"--redis-ca-file", "/nonexistent/ca.pem"}, "--redis-ca-file /nonexistent/ca.pem"},
		"client buffer":   {[]string{"--client-buffer", "-1"}, "--client-buffer"},
		"ping":            {[]string{"--ping-interval", "0s"}, "--ping-interval"},
		"session":         {[]string{"--max-session", "-1m"}, "--max-session"},
		"retries":         {[]string{"--upstream-retries", "0"}, "--upstream-retries 0"},
		"backoff":         {[]string{"--upstream-backoff-min", "10s", "--upstream-backoff-max", "1s"}, "--upstream-backoff-max"},
		"listen":          {[]string{"--listen", "8080"}, "--listen"},
		"not a duration":  {[]string{"--max-session", "forever"}, "max-session"},
		"redis, no addr":  {[]string{"--limiter", "redis", "--redis-addr", ""}, "--redis-addr"},
		"unknown flag":    {[]string{"--max-tails", "3"}, "max-tails"},
		"jobs topic":      {[]string{"--jobs-topic", "logs:jobs"}, "--jobs-topic"},
		"jobs window":     {[]string{"--jobs-window", "0s"}, "--jobs-window"},
		"es address":      {[]string{"--es-addresses", "es:9200"}, "--es-addresses es:9200"},
		"es index":        {[]string{"--es-addresses", "http://es:9200", "--es-index", "Logs"}, "--es-index Logs"},
		"es key and user": {[]string{"--es-api-key", "k", "--es-username", "u"}, "--es-api-key"},
		"es password":     {[]string{"--es-password", "p"}, "--es-password"},
		"es CA":           {[]string{"--es-ca-file", "/nonexistent/ca.pem"}, "--es-ca-file /nonexistent/ca.pem"},
		"es secret file":  {[]string{"--es-username", "u", "--es-password-file", "/nonexistent/pw"}, "--es-password-file /nonexistent/pw"},
		"kibana":          {[]string{"--kibana-url", "kibana:5601"}, "--kibana-url"},
		"kibana password": {[]string{"--kibana-url", "https://u:p@kibana"}, "--kibana-url"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := parse(t, tt.args, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %v, want one line naming %q", err, tt.want)
			}
			if !errors.Is(err, conf.ErrValue) && !errors.Is(err, ErrConfig) && !strings.Contains(err.Error(), "upstream") {
				t.Fatalf("error %v is not a bad value", err)
			}
		})
	}
}

// TestArchiveFlags: the search engine's flags are transfer's, from flags,
// the environment or a file; without --es-addresses there is no archive.
func TestArchiveFlags(t *testing.T) {
	cfg, err := parse(t, nil, nil)
	if err != nil || len(cfg.ESAddresses) != 0 || cfg.ESIndex != "logs-logpipe-default" || cfg.KibanaURL != "" {
		t.Fatalf("defaults: %+v, %v", cfg.Config, err)
	}
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("s3cret\n"), 0o600)
	cfg, err = parse(t, []string{"--es-addresses", "https://a:9200,https://b:9200", "--kibana-url", "https://kibana.example.com/base"},
		map[string]string{"LOGPIPE_ES_USERNAME": "reader", "LOGPIPE_ES_PASSWORD_FILE": pw, "LOGPIPE_ES_INDEX": "logs-other"})
	if err != nil || len(cfg.ESAddresses) != 2 || cfg.ESUsername != "reader" || cfg.ESPassword != "s3cret" ||
		cfg.ESIndex != "logs-other" || cfg.KibanaURL != "https://kibana.example.com/base" {
		t.Fatalf("%+v, %v", cfg.Config, err)
	}
	if w := warnings([]string{"--es-password", "x"}, &cfg); len(w) != 1 || !strings.Contains(w[0], "LOGPIPE_ES_PASSWORD") {
		t.Fatalf("warnings %q", w)
	}
}

// TestJobsWindow: one window lists jobs of the catalogue and of this
// replica alike; --jobs-ttl, its older name, still sets it.
func TestJobsWindow(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		want time.Duration
	}{
		"default":        {nil, 24 * time.Hour},
		"jobs-window":    {[]string{"--jobs-window", "2h"}, 2 * time.Hour},
		"jobs-ttl alone": {[]string{"--jobs-ttl", "3h"}, 3 * time.Hour},
		"both":           {[]string{"--jobs-ttl", "3h", "--jobs-window", "2h"}, 2 * time.Hour},
	} {
		t.Run(name, func(t *testing.T) {
			cfg, err := parse(t, tc.args, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.jobsWindow(); got != tc.want {
				t.Errorf("jobs window %s, want %s", got, tc.want)
			}
		})
	}
}
