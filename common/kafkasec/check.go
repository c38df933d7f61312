package kafkasec

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/IBM/sarama"
)

// probeTimeout bounds each step of a probe of one broker.
const probeTimeout = 5 * time.Second

// Error is a connection to a broker that was refused for a reason retrying
// does not fix. Its message is one line: the broker, what was tried, what
// went wrong and what to check. It never holds the password.
type Error struct {
	Broker  string // host:port
	Tried   string // Config.Describe
	Problem string
	Check   string
}

func (e *Error) Error() string {
	return fmt.Sprintf("kafka broker %s: tried %s: %s; check %s", e.Broker, e.Tried, e.Problem, e.Check)
}

// Unwrap makes errors.Is(err, ErrRefused) true.
func (e *Error) Unwrap() error { return ErrRefused }

// Check connects to each broker once as c says. It returns an *Error for
// the first broker that refuses the connection for a reason retrying does
// not fix: authentication failed, the certificate is not trusted (or ours is
// refused), TLS against a plaintext port, or plaintext against a TLS port.
// A broker that cannot be reached at all is no such reason: Check returns
// nil and the clients retry as they always do.
func Check(ctx context.Context, brokers []string, c *Config) error {
	for _, addr := range brokers {
		if err := c.probe(ctx, addr); err != nil {
			return err
		}
	}
	return nil
}

func (c *Config) probe(ctx context.Context, addr string) error {
	refused := func(problem, check string) error {
		return &Error{Broker: addr, Tried: c.Describe(), Problem: problem, Check: check}
	}
	d := net.Dialer{Timeout: probeTimeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil // unreachable: retried
	}
	conn.Close()

	if c.TLS {
		if err := c.handshake(ctx, addr); err != nil {
			var unknown x509.UnknownAuthorityError
			var host x509.HostnameError
			var invalid x509.CertificateInvalidError
			var header tls.RecordHeaderError
			switch {
			case errors.As(err, &unknown):
				return refused("the broker's certificate is signed by an unknown authority ("+oneLine(err)+")",
					"that --kafka-ca-file holds the CA that signed the broker's certificate")
			case errors.As(err, &host):
				return refused("the broker's certificate is not valid for the name dialled ("+oneLine(err)+")",
					"--kafka-tls-server-name or the broker address")
			case errors.As(err, &invalid):
				return refused("the broker's certificate is invalid ("+oneLine(err)+")", "the broker's certificate and the clock")
			case errors.As(err, &header) || speaksPlaintext(ctx, addr):
				return refused("the port answers plaintext Kafka, not TLS",
					"the broker's TLS listener port, or drop --kafka-tls and --kafka-ca-file if this listener is meant to be plaintext")
			case strings.Contains(err.Error(), "remote error: tls:"):
				return refused("the broker refused the TLS handshake ("+oneLine(err)+")",
					"--kafka-cert-file and --kafka-key-file: the broker may require a client certificate signed by a CA it trusts")
			}
			return nil // a broker that is going away: retried
		}
	}

	sc := sarama.NewConfig()
	sc.ClientID = "logpipe-check"
	sc.Net.DialTimeout = probeTimeout
	sc.Net.ReadTimeout = probeTimeout
	sc.Net.WriteTimeout = probeTimeout
	if err := c.Apply(sc); err != nil {
		return err
	}
	// A broker may close the connection on a rejected proof rather than
	// answer SASL_AUTHENTICATION_FAILED (kfake does): the SCRAM client
	// knows whether its proof was sent.
	var scramc *scramClient
	if gen := sc.Net.SASL.SCRAMClientGeneratorFunc; gen != nil {
		sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient {
			scramc, _ = gen().(*scramClient)
			return scramc
		}
	}
	b := sarama.NewBroker(addr)
	if err := b.Open(sc); err != nil {
		return nil
	}
	_, err = b.Connected()
	_ = b.Close()
	proofRejected := scramc != nil && scramc.steps == 2 && !scramc.conv.Done()
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sarama.ErrSASLAuthenticationFailed) || proofRejected || c.closedDuringSASL(ctx, addr, err):
		return refused("authentication failed",
			"--kafka-sasl-username, the password ("+PasswordEnv+") and that the user exists for "+c.SASLMechanism+" on the cluster")
	case errors.Is(err, sarama.ErrUnsupportedSASLMechanism):
		return refused("the broker does not enable SASL mechanism "+c.SASLMechanism,
			"--kafka-sasl-mechanism against the listener's enabled mechanisms")
	case errors.Is(err, sarama.ErrIllegalSASLState):
		return refused("the listener does not take SASL", "the broker's SASL listener port, or drop --kafka-sasl-mechanism")
	case !c.TLS && speaksTLS(ctx, addr):
		return refused("the port expects TLS", "--kafka-ca-file (or --kafka-tls) for this listener, or the broker's plaintext port")
	}
	return nil
}

// closedDuringSASL reports whether the broker closed the connection
// during the SASL exchange rather than answer it: a broker may do that for
// a user unknown to the mechanism, or a wrong PLAIN password (kfake does).
// It is told from a broker going away by asking the broker again, with the
// same TLS and without SASL, for its API versions.
func (c *Config) closedDuringSASL(ctx context.Context, addr string, err error) bool {
	if c.SASLMechanism == "" || !errors.Is(err, io.EOF) || ctx.Err() != nil {
		return false
	}
	sc := sarama.NewConfig()
	sc.Net.DialTimeout = probeTimeout
	sc.Net.ReadTimeout = probeTimeout
	sc.Net.WriteTimeout = probeTimeout
	if c.TLS {
		sc.Net.TLS.Enable = true
		sc.Net.TLS.Config = c.tlsConfig.Clone()
	}
	b := sarama.NewBroker(addr)
	if err := b.Open(sc); err != nil {
		return false
	}
	defer b.Close()
	_, err = b.ApiVersions(&sarama.ApiVersionsRequest{})
	return err == nil
}

// handshake does a TLS handshake with addr as the clients will.
func (c *Config) handshake(ctx context.Context, addr string) error {
	tc := c.tlsConfig.Clone()
	if tc.ServerName == "" {
		tc.ServerName = hostOf(addr)
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: probeTimeout}, Config: tc}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return conn.Close()
}

// speaksTLS reports whether addr completes a TLS handshake, trusting any
// certificate: only to explain a failure.
func speaksTLS(ctx context.Context, addr string) bool {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: probeTimeout}, Config: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // a probe that sends nothing
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// speaksPlaintext reports whether addr answers a plaintext Kafka
// ApiVersions request.
func speaksPlaintext(ctx context.Context, addr string) bool {
	if ctx.Err() != nil {
		return false
	}
	sc := sarama.NewConfig()
	sc.Net.DialTimeout = probeTimeout
	sc.Net.ReadTimeout = probeTimeout
	sc.Net.WriteTimeout = probeTimeout
	b := sarama.NewBroker(addr)
	if err := b.Open(sc); err != nil {
		return false
	}
	defer b.Close()
	_, err := b.ApiVersions(&sarama.ApiVersionsRequest{})
	return err == nil
}

func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }

// Refused explains err, an error of a Kafka client while running, when it
// is the brokers refusing the credential: the same one line as Check's
// (brokers, what was tried, what to check), for /readyz and the agent's
// status key. It returns nil for any other error, which the clients retry
// as a broker going away.
func (c *Config) Refused(brokers []string, err error) *Error {
	if err == nil || c.SASLMechanism == "" {
		return nil
	}
	if !errors.Is(err, sarama.ErrSASLAuthenticationFailed) && !strings.Contains(err.Error(), sarama.ErrSASLAuthenticationFailed.Error()) {
		return nil
	}
	return &Error{
		Broker:  strings.Join(brokers, ","),
		Tried:   c.Describe(),
		Problem: "authentication failed (" + oneLine(err) + "); retrying",
		Check:   "--kafka-sasl-username, the password (" + PasswordEnv + " or --" + PasswordFileFlag + ") and that the user exists for " + c.SASLMechanism + " on the cluster",
	}
}
