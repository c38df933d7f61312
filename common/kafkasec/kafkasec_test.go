package kafkasec

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/IBM/sarama"
)

func TestValidate(t *testing.T) {
	for name, tc := range map[string]struct {
		cfg  Config
		want string // "" for valid
	}{
		"plaintext":                {cfg: Config{}},
		"SCRAM without TLS":        {cfg: Config{SASLMechanism: SCRAMSHA512, SASLUsername: "u", SASLPassword: "p"}},
		"unknown mechanism":        {cfg: Config{SASLMechanism: "GSSAPI", SASLUsername: "u", SASLPassword: "p"}, want: `--kafka-sasl-mechanism "GSSAPI"`},
		"mechanism without user":   {cfg: Config{SASLMechanism: Plain, SASLPassword: "p"}, want: "needs --kafka-sasl-username"},
		"mechanism without secret": {cfg: Config{SASLMechanism: Plain, SASLUsername: "u"}, want: "needs a password (LOGPIPE_KAFKA_SASL_PASSWORD or --kafka-sasl-password-file)"},
		"missing password file":    {cfg: Config{SASLMechanism: Plain, SASLUsername: "u", SASLPasswordFile: "/nonexistent/pw"}, want: "--kafka-sasl-password-file /nonexistent/pw: no such file"},
		"password and its file":    {cfg: Config{SASLMechanism: Plain, SASLUsername: "u", SASLPassword: "p", SASLPasswordFile: "/nonexistent/pw"}, want: "are both set"},
		"user without mechanism":   {cfg: Config{SASLUsername: "u"}, want: "without --kafka-sasl-mechanism"},
		"cert without key":         {cfg: Config{CertFile: "c.pem"}, want: "go together"},
		"missing CA file":          {cfg: Config{CAFile: "/nonexistent/ca.pem"}, want: "CA file"},
	} {
		t.Run(name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an ErrConfig saying %q", err, tc.want)
			}
			if tc.cfg.SASLPassword != "" && strings.Contains(err.Error(), tc.cfg.SASLPassword+" ") {
				t.Fatalf("the error holds the password: %v", err)
			}
		})
	}
}

func TestPasswordFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(file, []byte("from-the-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := Config{SASLMechanism: SCRAMSHA512, SASLUsername: "u", SASLPasswordFile: file}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil { // again, as Apply may
		t.Fatal(err)
	}
	sc := sarama.NewConfig()
	if err := c.Apply(sc); err != nil {
		t.Fatal(err)
	}
	if sc.Net.SASL.Password != "from-the-file" {
		t.Fatalf("password %q, want the file's without its newline", sc.Net.SASL.Password)
	}
}

func TestApplyMechanisms(t *testing.T) {
	for mech, want := range map[string]sarama.SASLMechanism{
		Plain:       sarama.SASLTypePlaintext,
		SCRAMSHA256: sarama.SASLTypeSCRAMSHA256,
		SCRAMSHA512: sarama.SASLTypeSCRAMSHA512,
	} {
		c := Config{SASLMechanism: mech, SASLUsername: "u", SASLPassword: "p", TLS: true}
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		sc := sarama.NewConfig()
		if err := c.Apply(sc); err != nil {
			t.Fatal(err)
		}
		if !sc.Net.SASL.Enable || sc.Net.SASL.Mechanism != want || !sc.Net.TLS.Enable || sc.Net.TLS.Config == nil {
			t.Fatalf("%s: SASL %v %s, TLS %v", mech, sc.Net.SASL.Enable, sc.Net.SASL.Mechanism, sc.Net.TLS.Enable)
		}
		if err := sc.Validate(); err != nil {
			t.Fatalf("%s: sarama refuses the config: %v", mech, err)
		}
	}
}

func TestDescribeHoldsNoPassword(t *testing.T) {
	c := Config{CAFile: "ca.pem", SASLMechanism: SCRAMSHA512, SASLUsername: "logpipe", SASLPassword: "hunter2"}
	d := c.Describe()
	if want := `TLS (CA ca.pem), SASL SCRAM-SHA-512 as user "logpipe"`; d != want {
		t.Fatalf("got %q, want %q", d, want)
	}
	e := &Error{Broker: "b:9093", Tried: d, Problem: "authentication failed", Check: "the password"}
	if strings.Contains(e.Error(), "hunter2") || !errors.Is(e, ErrRefused) {
		t.Fatalf("%v", e)
	}
}

func TestPasswordOnCommandLine(t *testing.T) {
	for args, want := range map[string]bool{
		"--kafka-sasl-password=x":                 true,
		"-kafka-sasl-password x":                  true,
		"--kafka-sasl-username u":                 false,
		"--kafka-sasl-password-x y":               false,
		"-- --kafka-sasl-password=x":              false,
		"--log-level debug --kafka-sasl-password": true,
	} {
		if got := len(Warnings(strings.Fields(args))) > 0; got != want {
			t.Errorf("%q: warned %v, want %v", args, got, want)
		}
	}
}

// The help lists no password, even one set in the environment.
func TestHelpShowsNoPassword(t *testing.T) {
	c := Config{SASLPassword: "hunter2"}
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	c.Register(fs)
	if d := fs.Lookup(PasswordFlag).DefValue; d != "" {
		t.Fatalf("default %q", d)
	}
}

func TestRefused(t *testing.T) {
	c := Config{CAFile: "ca.pem", SASLMechanism: SCRAMSHA512, SASLUsername: "logpipe", SASLPassword: "pw-never-shown"}
	wrapped := fmt.Errorf("kafka: error while consuming logs/0: %w", sarama.ErrSASLAuthenticationFailed)
	e := c.Refused([]string{"b-1:9096", "b-2:9096"}, wrapped)
	if e == nil {
		t.Fatal("an authentication failure is not explained")
	}
	got := e.Error()
	for _, want := range []string{"kafka broker b-1:9096,b-2:9096", `SASL SCRAM-SHA-512 as user "logpipe"`, "authentication failed", "SASL Authentication failed", "check --kafka-sasl-username"} {
		if !strings.Contains(got, want) {
			t.Errorf("%q does not say %q", got, want)
		}
	}
	if strings.Contains(got, "pw-never-shown") {
		t.Fatalf("%q holds the password", got)
	}
	if c.Refused(nil, errors.New("dial tcp: connection refused")) != nil {
		t.Fatal("an unreachable broker is taken for a refused credential")
	}
	if (&Config{}).Refused(nil, wrapped) != nil {
		t.Fatal("a client without SASL is told its credential was refused")
	}
}
