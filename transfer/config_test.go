package main

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/logpipe/logpipe/common/conf"
)

func TestParseConfig(t *testing.T) {
	dir := t.TempDir()
	yamlFile := filepath.Join(dir, "transfer.yaml")
	if err := os.WriteFile(yamlFile, []byte("group: from-file\nbatch-docs: 250\nes-addresses: [http://a:9200, http://b:9200]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		args    []string
		env     map[string]string
		check   func(t *testing.T, c Config)
		wantErr string // substring of the one-line error; "" means success
	}{
		"defaults": {
			check: func(t *testing.T, c Config) {
				d := DefaultConfig()
				if !reflect.DeepEqual(c, d) {
					t.Fatalf("config %+v, want the defaults %+v", c, d)
				}
				if c.Common.MetricsAddr != "127.0.0.1:9102" || c.Group != "logpipe-transfer" || c.ESIndex != "logs-logpipe-default" ||
					c.DLQTopic != "logs.dlq" || !c.ParseJSON || c.Topics[0] != "logs" || c.ESAddresses[0] != "http://127.0.0.1:9200" {
					t.Fatalf("defaults differ from DESIGN.md: %+v", c)
				}
			},
		},
		"flags": {
			args: []string{"--kafka-topics", "a,b", "--group", "g", "--batch-bytes", "1MiB", "--batch-wait", "2s", "--parse-json=false", "--es-api-key", "k"},
			check: func(t *testing.T, c Config) {
				if !reflect.DeepEqual([]string(c.Topics), []string{"a", "b"}) || c.Group != "g" || c.BatchBytes != 1<<20 ||
					c.BatchWait != 2*time.Second || c.ParseJSON || c.ESAPIKey != "k" {
					t.Fatalf("config %+v", c)
				}
			},
		},
		"env, and flag over env": {
			args: []string{"--group", "flag"},
			env:  map[string]string{"LOGPIPE_GROUP": "env", "LOGPIPE_ES_USERNAME": "elastic", "LOGPIPE_ES_PASSWORD": "pw"},
			check: func(t *testing.T, c Config) {
				if c.Group != "flag" || c.ESUsername != "elastic" || c.ESPassword != "pw" {
					t.Fatalf("config %+v", c)
				}
			},
		},
		"file under env": {
			args: []string{"--config", yamlFile},
			env:  map[string]string{"LOGPIPE_BATCH_DOCS": "9"},
			check: func(t *testing.T, c Config) {
				if c.Group != "from-file" || c.BatchDocs != 9 || len(c.ESAddresses) != 2 {
					t.Fatalf("config %+v", c)
				}
			},
		},
		"kafka-topic is the fallback for kafka-topics": {
			args: []string{"--kafka-topic", "web_log"},
			check: func(t *testing.T, c Config) {
				if !reflect.DeepEqual([]string(c.Topics), []string{"web_log"}) {
					t.Fatalf("topics %v", c.Topics)
				}
			},
		},
		"kafka-topics wins over kafka-topic": {
			args: []string{"--kafka-topic", "web_log", "--kafka-topics", "x"},
			check: func(t *testing.T, c Config) {
				if !reflect.DeepEqual([]string(c.Topics), []string{"x"}) {
					t.Fatalf("topics %v", c.Topics)
				}
			},
		},
		"bad batch docs":       {args: []string{"--batch-docs", "0"}, wantErr: "--batch-docs 0"},
		"bad batch bytes":      {args: []string{"--batch-bytes", "lots"}, wantErr: "lots"},
		"bad duration":         {args: []string{"--batch-wait", "soon"}, wantErr: "soon"},
		"backoff max below":    {args: []string{"--backoff-min", "1s", "--backoff-max", "10ms"}, wantErr: "--backoff-max 10ms"},
		"bad es address":       {args: []string{"--es-addresses", "es:9200"}, wantErr: "es:9200"},
		"bad index":            {args: []string{"--es-index", "Logs"}, wantErr: "--es-index Logs"},
		"bad topic":            {args: []string{"--kafka-topics", "a b"}, wantErr: "a b"},
		"dlq among topics":     {args: []string{"--kafka-topics", "logs,logs.dlq"}, wantErr: "--dlq-topic logs.dlq"},
		"key and basic auth":   {args: []string{"--es-api-key", "k", "--es-username", "u"}, wantErr: "--es-api-key"},
		"password, no user":    {env: map[string]string{"LOGPIPE_ES_PASSWORD": "secret"}, wantErr: "--es-password"},
		"bad log level in env": {env: map[string]string{"LOGPIPE_LOG_LEVEL": "loud"}, wantErr: "loud"},
		"unknown flag":         {args: []string{"--nope"}, wantErr: "nope"},
		"jobs topic is a log":  {args: []string{"--jobs-topic", "logs"}, wantErr: "--jobs-topic logs"},
		"bad jobs topic":       {args: []string{"--jobs-topic", "logs:jobs"}, wantErr: "--jobs-topic logs:jobs"},
		"short jobs interval":  {args: []string{"--jobs-interval", "10ms"}, wantErr: "--jobs-interval 10ms"},
		"missing CA file":      {args: []string{"--es-ca-file", filepath.Join(dir, "none.pem")}, wantErr: "none.pem"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			env := func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }
			c, err := parseConfig(tt.args, env)
			if tt.wantErr != "" {
				if err == nil || !errors.Is(err, conf.ErrValue) && !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseConfig = %v, want an error naming %q", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("error %q: want one line naming %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "secret") {
					t.Fatalf("error %q shows a secret", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

func TestNewServiceBadMetricsAddr(t *testing.T) {
	c := DefaultConfig()
	c.Common.MetricsAddr = "256.0.0.1:99999"
	if _, err := newService(c, nil); err == nil || !strings.Contains(err.Error(), "256.0.0.1:99999") {
		t.Fatalf("newService = %v, want an error naming the address", err)
	}
}

// Each secret of the search engine can come from a file named by a flag,
// a variable or a config key; the file's value is used without its
// trailing newline, and a bad file is one line naming the flag and file.
func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pw, key, empty := write("pw", "secret-pw\n"), write("key", "secret-key\n"), write("empty", "")
	yaml := write("t.yaml", "es-api-key-file: "+key+"\n")
	none := func(string) (string, bool) { return "", false }
	env := func(m map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
	}
	c, err := parseConfig([]string{"--es-username", "elastic", "--es-password-file", pw}, none)
	if err != nil || c.ESPassword != "secret-pw" {
		t.Fatalf("flag: password %q, %v", c.ESPassword, err)
	}
	c, err = parseConfig(nil, env(map[string]string{"LOGPIPE_ES_USERNAME": "elastic", "LOGPIPE_ES_PASSWORD_FILE": pw}))
	if err != nil || c.ESPassword != "secret-pw" {
		t.Fatalf("variable: password %q, %v", c.ESPassword, err)
	}
	c, err = parseConfig([]string{"--config", yaml}, none)
	if err != nil || c.ESAPIKey != "secret-key" {
		t.Fatalf("config key: API key %q, %v", c.ESAPIKey, err)
	}
	c, err = parseConfig(nil, env(map[string]string{"LOGPIPE_KAFKA_SASL_MECHANISM": "PLAIN", "LOGPIPE_KAFKA_SASL_USERNAME": "u", "LOGPIPE_KAFKA_SASL_PASSWORD_FILE": pw}))
	if err != nil || c.Kafka.SASLPassword != "secret-pw" {
		t.Fatalf("kafka: password %q, %v", c.Kafka.SASLPassword, err)
	}
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"empty":    {[]string{"--es-username", "u", "--es-password-file", empty}, "--es-password-file " + empty + ": the file is empty"},
		"missing":  {[]string{"--es-api-key-file", filepath.Join(dir, "none")}, "--es-api-key-file " + filepath.Join(dir, "none") + ": no such file"},
		"and flag": {[]string{"--es-username", "u", "--es-password", "x", "--es-password-file", pw}, "--es-password-file and --es-password"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := parseConfig(tc.args, none)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "secret-pw") {
				t.Fatalf("error %v, want one naming %q", err, tc.want)
			}
		})
	}
	c, err = parseConfig([]string{"--es-username", "u", "--es-password", "x"}, none)
	if err != nil || len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "LOGPIPE_ES_PASSWORD or --es-password-file") {
		t.Fatalf("warnings %q, %v; want one naming the variable and the file flag", c.Warnings, err)
	}
}
