package conf_test

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/logpipe/logpipe/common/conf"
)

type testConfig struct {
	conf.Common
	Name     string
	Conns    int
	Session  time.Duration
	MaxLine  conf.Bytes
	Parse    bool
	fs       *flag.FlagSet
	usageOut *bytes.Buffer
}

func newTestConfig() *testConfig {
	c := &testConfig{Common: conf.DefaultCommon("127.0.0.1:9101"), MaxLine: 1 << 20, Parse: true}
	c.fs = flag.NewFlagSet("agent", flag.ContinueOnError)
	c.usageOut = &bytes.Buffer{}
	c.fs.SetOutput(c.usageOut)
	c.Register(c.fs, true)
	c.fs.StringVar(&c.Name, "name", "host-a", "agent name")
	c.fs.IntVar(&c.Conns, "max-conns", 10, "connection limit")
	c.fs.DurationVar(&c.Session, "max-session", 24*time.Hour, "session limit")
	c.fs.Var(&c.MaxLine, "max-line-bytes", "longest line")
	c.fs.BoolVar(&c.Parse, "parse-json", true, "parse JSON messages")
	return c
}

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func writeFile(t testing.TB, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPrecedence(t *testing.T) {
	file := writeFile(t, "name: from-file\nmax-conns: 30\nkafka-brokers: [a:1, b:2]\nmax-session: 1h\nlog-level: debug\n")
	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
		want string // name value
		conn int
	}{
		"default":                {nil, nil, "host-a", 10},
		"file over default":      {[]string{"--config", file}, nil, "from-file", 30},
		"env over file":          {[]string{"--config", file}, map[string]string{"LOGPIPE_NAME": "from-env"}, "from-env", 30},
		"flag over env":          {[]string{"--config", file, "--name=from-flag"}, map[string]string{"LOGPIPE_NAME": "from-env"}, "from-flag", 30},
		"config file from env":   {nil, map[string]string{"LOGPIPE_CONFIG": file}, "from-file", 30},
		"env int over file":      {[]string{"--config", file}, map[string]string{"LOGPIPE_MAX_CONNS": "40"}, "from-file", 40},
		"single dash also works": {[]string{"-name", "x"}, nil, "x", 10},
		"flag equal to default":  {[]string{"--config", file, "--max-conns=10"}, nil, "from-file", 10},
	} {
		t.Run(name, func(t *testing.T) {
			c := newTestConfig()
			if err := conf.Parse(c.fs, tc.args, envOf(tc.env)); err != nil {
				t.Fatal(err)
			}
			if c.Name != tc.want || c.Conns != tc.conn {
				t.Fatalf("name %q conns %d, want %q %d", c.Name, c.Conns, tc.want, tc.conn)
			}
		})
	}
}

func TestFileValuesOfEveryType(t *testing.T) {
	c := newTestConfig()
	file := writeFile(t, "kafka-brokers: [a:1, b:2]\nmax-session: 1h\nlog-level: debug\nmax-line-bytes: 64KiB\nparse-json: false\n")
	if err := conf.Parse(c.fs, []string{"--config", file}, envOf(nil)); err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.KafkaBrokers, ",") != "a:1,b:2" || c.Session != time.Hour || c.LogLevel.Value != "debug" ||
		c.MaxLine != 64<<10 || c.Parse {
		t.Fatalf("got %+v", c)
	}
}

func TestListReplacesDefault(t *testing.T) {
	c := newTestConfig()
	if err := conf.Parse(c.fs, nil, envOf(map[string]string{"LOGPIPE_KAFKA_BROKERS": "x:1, y:2"})); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.KafkaBrokers, ","); got != "x:1,y:2" {
		t.Fatalf("brokers %q", got)
	}
}

func TestBadValues(t *testing.T) {
	badFile := writeFile(t, "name: [a: b\n")
	unknownKey := writeFile(t, "nmae: x\n")
	nested := writeFile(t, "name: {a: b}\n")
	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
		want string
	}{
		"unknown flag":     {[]string{"--nope"}, nil, "--nope"},
		"bad int":          {[]string{"--max-conns", "ten"}, nil, `"ten"`},
		"bad duration":     {[]string{"--max-session=forever"}, nil, `"forever"`},
		"bad level":        {[]string{"--log-level=loud"}, nil, `"loud"`},
		"bad format":       {[]string{"--log-format=xml"}, nil, `"xml"`},
		"bad size":         {[]string{"--max-line-bytes=huge"}, nil, `"huge"`},
		"empty list":       {[]string{"--kafka-brokers=,"}, nil, "kafka-brokers"},
		"bad env":          {nil, map[string]string{"LOGPIPE_MAX_CONNS": "x"}, `LOGPIPE_MAX_CONNS="x"`},
		"missing file":     {[]string{"--config=/nonexistent.yaml"}, nil, "/nonexistent.yaml"},
		"bad yaml":         {[]string{"--config", badFile}, nil, badFile},
		"unknown file key": {[]string{"--config", unknownKey}, nil, `unknown key "nmae"`},
		"nested file key":  {[]string{"--config", nested}, nil, `key "name"`},
		"bad file value":   {[]string{"--config", writeFile(t, "max-conns: lots\n")}, nil, `"lots"`},
		"stray argument":   {[]string{"extra"}, nil, `"extra"`},
	} {
		t.Run(name, func(t *testing.T) {
			c := newTestConfig()
			err := conf.Parse(c.fs, tc.args, envOf(tc.env))
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			if !errors.Is(err, conf.ErrValue) && !errors.Is(err, conf.ErrFile) {
				t.Errorf("%v wraps neither ErrValue nor ErrFile", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not name %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
			if c.usageOut.Len() != 0 {
				t.Errorf("usage printed on error: %q", c.usageOut)
			}
		})
	}
}

func TestHelpListsEveryFlagWithDefault(t *testing.T) {
	c := newTestConfig()
	err := conf.Parse(c.fs, []string{"--help"}, envOf(nil))
	if !errors.Is(err, conf.ErrHelp) {
		t.Fatalf("err %v, want ErrHelp", err)
	}
	out := c.usageOut.String()
	for _, want := range []string{
		"--name", `(default "host-a"; env LOGPIPE_NAME)`,
		"--max-conns", `(default "10"`, "--max-session", `(default "24h0m0s"`,
		"--max-line-bytes", `(default "1MiB"`, "--kafka-brokers", `(default "127.0.0.1:9092"`,
		"--log-level", `(default "info"`, "--log-format", "--kafka-topic", `(default "logs"`,
		"--metrics-addr", `(default "127.0.0.1:9101"`, "--config", "LOGPIPE_CONFIG",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("--help lacks %q:\n%s", want, out)
		}
	}
}

func TestEnvName(t *testing.T) {
	if got := conf.EnvName("max-conns-per-user"); got != "LOGPIPE_MAX_CONNS_PER_USER" {
		t.Fatal(got)
	}
}

func TestBytes(t *testing.T) {
	for in, want := range map[string]int64{"512": 512, "64KiB": 64 << 10, "1MiB": 1 << 20, "2 GiB": 2 << 30, "3MB": 3 << 20, "10K": 10 << 10} {
		var b conf.Bytes
		if err := b.Set(in); err != nil || int64(b) != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, b, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1.5MiB", "lots"} {
		var b conf.Bytes
		if err := b.Set(in); err == nil {
			t.Errorf("Set(%q) succeeded", in)
		}
	}
}

func TestCommonValidate(t *testing.T) {
	c := conf.DefaultCommon("")
	c.KafkaTopic = ""
	if err := c.Validate(); !errors.Is(err, conf.ErrValue) {
		t.Fatalf("empty topic: %v", err)
	}
}
