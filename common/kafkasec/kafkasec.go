// Package kafkasec is how every Kafka client of logpipe reaches a secured
// cluster: the --kafka-tls*, --kafka-*-file and --kafka-sasl-* flags, their
// Config, Apply to a sarama.Config, and Check, which probes the brokers once
// at start and explains a failure that retrying cannot fix (a wrong
// password, an untrusted certificate, TLS against a plaintext port or the
// reverse) in one line.
package kafkasec

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/IBM/sarama"
	"github.com/xdg-go/scram"

	"github.com/logpipe/logpipe/common/conf"
)

// SASL mechanisms.
const (
	Plain       = "PLAIN"
	SCRAMSHA256 = "SCRAM-SHA-256"
	SCRAMSHA512 = "SCRAM-SHA-512"
)

// PasswordFlag is the flag of the SASL password; PasswordEnv its variable.
const (
	PasswordFlag     = "kafka-sasl-password"
	PasswordEnv      = "LOGPIPE_KAFKA_SASL_PASSWORD"
	PasswordFileFlag = PasswordFlag + conf.FileSuffix
)

var (
	// ErrConfig is returned by Validate.
	ErrConfig = errors.New("kafka security")
	// ErrRefused is the error of Check when a broker refused the connection
	// for a reason that retrying does not fix.
	ErrRefused = errors.New("kafka refused the connection")
)

// Config is the security of the connections to Kafka. The zero value is
// plaintext without authentication.
type Config struct {
	TLS        bool   `yaml:"kafka-tls"`
	CAFile     string `yaml:"kafka-ca-file"`
	CertFile   string `yaml:"kafka-cert-file"`
	KeyFile    string `yaml:"kafka-key-file"`
	ServerName string `yaml:"kafka-tls-server-name"`

	SASLMechanism string `yaml:"kafka-sasl-mechanism"`
	SASLUsername  string `yaml:"kafka-sasl-username"`
	SASLPassword  string `yaml:"kafka-sasl-password"`
	// SASLPasswordFile holds the password; Validate reads it.
	SASLPasswordFile string `yaml:"kafka-sasl-password-file"`

	tlsConfig *tls.Config // made by Validate
}

// Register adds the flags to fs, with c's values as defaults.
func (c *Config) Register(fs *flag.FlagSet) {
	fs.BoolVar(&c.TLS, "kafka-tls", c.TLS, "connect to Kafka over TLS (implied by --kafka-ca-file and --kafka-cert-file)")
	fs.StringVar(&c.CAFile, "kafka-ca-file", c.CAFile, "PEM file of the CAs that sign the brokers' certificates (empty: the system's)")
	fs.StringVar(&c.CertFile, "kafka-cert-file", c.CertFile, "PEM client certificate for mutual TLS (with --kafka-key-file)")
	fs.StringVar(&c.KeyFile, "kafka-key-file", c.KeyFile, "PEM private key of --kafka-cert-file")
	fs.StringVar(&c.ServerName, "kafka-tls-server-name", c.ServerName, "name the brokers' certificates must hold (empty: the broker's host)")
	fs.StringVar(&c.SASLMechanism, "kafka-sasl-mechanism", c.SASLMechanism, "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (empty: no SASL)")
	fs.StringVar(&c.SASLUsername, "kafka-sasl-username", c.SASLUsername, "SASL user")
	fs.StringVar(&c.SASLPassword, PasswordFlag, "", "SASL password; prefer the variable "+PasswordEnv+" or --"+PasswordFileFlag+" to the flag, which other users can read in the process list")
	fs.StringVar(&c.SASLPasswordFile, PasswordFileFlag, c.SASLPasswordFile, "file holding the SASL password (one trailing newline is trimmed), such as a mounted secret")
}

// Validate checks the values and reads the password and certificate files.
func (c *Config) Validate() error {
	if err := conf.ReadSecret(&c.SASLPassword, PasswordFlag, c.SASLPasswordFile); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	c.SASLPasswordFile = "" // read: a second Validate keeps the password
	switch c.SASLMechanism {
	case "":
		if c.SASLUsername != "" || c.SASLPassword != "" {
			return fmt.Errorf("%w: --kafka-sasl-username or --kafka-sasl-password without --kafka-sasl-mechanism", ErrConfig)
		}
	case Plain, SCRAMSHA256, SCRAMSHA512:
		if c.SASLUsername == "" {
			return fmt.Errorf("%w: --kafka-sasl-mechanism %s needs --kafka-sasl-username", ErrConfig, c.SASLMechanism)
		}
		if c.SASLPassword == "" {
			return fmt.Errorf("%w: --kafka-sasl-mechanism %s needs a password (%s or --%s)", ErrConfig, c.SASLMechanism, PasswordEnv, PasswordFileFlag)
		}
	default:
		return fmt.Errorf("%w: --kafka-sasl-mechanism %q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", ErrConfig, c.SASLMechanism)
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return fmt.Errorf("%w: --kafka-cert-file and --kafka-key-file go together", ErrConfig)
	}
	if c.CAFile != "" || c.CertFile != "" || c.ServerName != "" {
		c.TLS = true
	}
	c.tlsConfig = nil
	if !c.TLS {
		return nil
	}
	tc, err := TLSConfig(c.CAFile, c.CertFile, c.KeyFile, c.ServerName)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	c.tlsConfig = tc
	return nil
}

// TLSConfig makes a client TLS configuration: the CAs of caFile (the
// system's when empty), the client certificate of certFile and keyFile
// (none when empty), and serverName (the host dialled when empty).
func TLSConfig(caFile, certFile, keyFile, serverName string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s: no PEM certificate in it", caFile)
		}
		tc.RootCAs = pool
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate %s and key %s: %w", certFile, keyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// Warnings are the lines to log at start about how the configuration was
// given: a password on the command line, which other users can read.
func Warnings(args []string) []string {
	if w := conf.SecretWarning(args, PasswordFlag); w != "" {
		return []string{w}
	}
	return nil
}

// OnCommandLine reports whether flag name is among args.
func OnCommandLine(args []string, name string) bool { return conf.OnCommandLine(args, name) }

// Apply sets TLS and SASL on sc. Call Validate first.
func (c *Config) Apply(sc *sarama.Config) error {
	if c.TLS {
		if c.tlsConfig == nil {
			if err := c.Validate(); err != nil {
				return err
			}
		}
		sc.Net.TLS.Enable = true
		sc.Net.TLS.Config = c.tlsConfig.Clone()
	}
	if c.SASLMechanism == "" {
		return nil
	}
	sc.Net.SASL.Enable = true
	sc.Net.SASL.Handshake = true
	sc.Net.SASL.User = c.SASLUsername
	sc.Net.SASL.Password = c.SASLPassword
	switch c.SASLMechanism {
	case Plain:
		sc.Net.SASL.Mechanism = sarama.SASLTypePlaintext
	case SCRAMSHA256:
		sc.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA256
		sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.SHA256} }
	case SCRAMSHA512:
		sc.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA512
		sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.SHA512} }
	default:
		return fmt.Errorf("%w: --kafka-sasl-mechanism %q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", ErrConfig, c.SASLMechanism)
	}
	return nil
}

// Describe says what a connection tries, without the password:
// `TLS (CA ca.pem), SASL SCRAM-SHA-512 as user "logpipe"`.
func (c *Config) Describe() string {
	var parts []string
	if c.TLS || c.CAFile != "" || c.CertFile != "" || c.ServerName != "" {
		var with []string
		if c.CAFile != "" {
			with = append(with, "CA "+c.CAFile)
		} else {
			with = append(with, "system CAs")
		}
		if c.CertFile != "" {
			with = append(with, "client certificate "+c.CertFile)
		}
		if c.ServerName != "" {
			with = append(with, "server name "+c.ServerName)
		}
		parts = append(parts, "TLS ("+strings.Join(with, ", ")+")")
	} else {
		parts = append(parts, "plaintext (no TLS)")
	}
	if c.SASLMechanism != "" {
		parts = append(parts, "SASL "+c.SASLMechanism+" as user "+strconv.Quote(c.SASLUsername))
	} else {
		parts = append(parts, "no SASL")
	}
	return strings.Join(parts, ", ")
}

// scramClient is sarama's SCRAMClient over xdg-go/scram.
type scramClient struct {
	hash  scram.HashGeneratorFcn
	conv  *scram.ClientConversation
	steps int // Step calls: the second sends the proof
}

func (s *scramClient) Begin(user, password, authzID string) error {
	c, err := s.hash.NewClient(user, password, authzID)
	if err != nil {
		return err
	}
	s.conv = c.NewConversation()
	return nil
}

func (s *scramClient) Step(challenge string) (string, error) {
	s.steps++
	return s.conv.Step(challenge)
}

func (s *scramClient) Done() bool { return s.conv.Done() }

// hostOf is the host part of a broker address.
func hostOf(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return h
}
