// Package essec is how every binary of logpipe reaches the search engine:
// the --es-* flags (addresses, index, basic auth or API key, their files,
// the CA, the timeout), their Config and its validation, and the
// go-elasticsearch client built from them. transfer writes the index with
// it and livetail reads it.
package essec

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"time"

	"github.com/elastic/go-elasticsearch/v8"

	"github.com/logpipe/logpipe/common/conf"
)

// The flags of the search engine's secrets.
const (
	PasswordFlag = "es-password"
	APIKeyFlag   = "es-api-key"
)

// DefaultIndex is the data stream transfer writes and livetail reads.
const DefaultIndex = "logs-logpipe-default"

// ErrConfig wraps every error of Validate and Client.
var ErrConfig = errors.New("search engine")

// indexRE is Elasticsearch's rule for index and data stream names, in short.
var indexRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._+-]{0,254}$`)

// Config says how to reach the search engine. The field names are those
// of the binaries' configs, which embed it.
type Config struct {
	ESAddresses conf.List `yaml:"es-addresses"`
	ESIndex     string    `yaml:"es-index"`
	ESUsername  string    `yaml:"es-username"`
	ESPassword  string    `yaml:"es-password"`
	ESAPIKey    string    `yaml:"es-api-key"`
	// ESPasswordFile and ESAPIKeyFile hold the secrets; Validate reads them.
	ESPasswordFile string        `yaml:"es-password-file"`
	ESAPIKeyFile   string        `yaml:"es-api-key-file"`
	ESCAFile       string        `yaml:"es-ca-file"`
	ESTimeout      time.Duration `yaml:"es-timeout"`
}

// Register adds the flags to fs, with c's values as defaults. addresses
// and index are the help texts of --es-addresses and --es-index, which
// say what the binary does with them.
func (c *Config) Register(fs *flag.FlagSet, addresses, index string) {
	fs.Var(&c.ESAddresses, "es-addresses", addresses)
	fs.StringVar(&c.ESIndex, "es-index", c.ESIndex, index)
	fs.StringVar(&c.ESUsername, "es-username", c.ESUsername, "Elasticsearch basic-auth user")
	fs.StringVar(&c.ESPassword, PasswordFlag, c.ESPassword, "Elasticsearch basic-auth password (prefer the variable "+conf.EnvName(PasswordFlag)+" or --"+PasswordFlag+conf.FileSuffix+")")
	fs.StringVar(&c.ESPasswordFile, PasswordFlag+conf.FileSuffix, c.ESPasswordFile, "file holding the Elasticsearch password (one trailing newline is trimmed), such as a mounted secret")
	fs.StringVar(&c.ESAPIKey, APIKeyFlag, c.ESAPIKey, "Elasticsearch API key, base64 (prefer the variable "+conf.EnvName(APIKeyFlag)+" or --"+APIKeyFlag+conf.FileSuffix+")")
	fs.StringVar(&c.ESAPIKeyFile, APIKeyFlag+conf.FileSuffix, c.ESAPIKeyFile, "file holding the Elasticsearch API key (one trailing newline is trimmed)")
	fs.StringVar(&c.ESCAFile, "es-ca-file", c.ESCAFile, "PEM file of the CAs that sign Elasticsearch's certificate")
	fs.DurationVar(&c.ESTimeout, "es-timeout", c.ESTimeout, "how long to wait for Elasticsearch's answer to one request")
}

// Warnings are the lines to log about secrets given on the command line.
func Warnings(args []string) []string {
	var w []string
	for _, name := range []string{PasswordFlag, APIKeyFlag} {
		if s := conf.SecretWarning(args, name); s != "" {
			w = append(w, s)
		}
	}
	return w
}

// Validate reads the secret files and checks every value; the error names
// the flag and the value (never a secret). No address is valid: the
// binary decides whether it needs one.
func (c *Config) Validate() error {
	bad := func(flag string, value any, why string) error {
		return fmt.Errorf("%w: --%s %v: %s", ErrConfig, flag, value, why)
	}
	if err := conf.ReadSecret(&c.ESPassword, PasswordFlag, c.ESPasswordFile); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if err := conf.ReadSecret(&c.ESAPIKey, APIKeyFlag, c.ESAPIKeyFile); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	c.ESPasswordFile, c.ESAPIKeyFile = "", ""
	for _, a := range c.ESAddresses {
		u, err := url.Parse(a)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return bad("es-addresses", a, "want http://host:port or https://host:port")
		}
	}
	switch {
	case !indexRE.MatchString(c.ESIndex) || c.ESIndex == "." || c.ESIndex == "..":
		return bad("es-index", c.ESIndex, "not a data stream name (lowercase letters, digits, '.', '_', '+', '-')")
	case c.ESTimeout < 0:
		return bad("es-timeout", c.ESTimeout, "negative")
	case c.ESAPIKey != "" && (c.ESUsername != "" || c.ESPassword != ""):
		return bad("es-api-key", "(set)", "given together with --es-username or --es-password: use one")
	case c.ESPassword != "" && c.ESUsername == "":
		return bad("es-password", "(set)", "given without --es-username")
	}
	if c.ESCAFile != "" {
		if _, err := LoadCA(c.ESCAFile); err != nil {
			return bad("es-ca-file", c.ESCAFile, err.Error())
		}
	}
	return nil
}

// ErrCAFile is returned by LoadCA.
var ErrCAFile = errors.New("CA file")

// LoadCA reads a PEM file of CA certificates.
func LoadCA(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCAFile, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%w %s holds no PEM certificate", ErrCAFile, path)
	}
	return pool, nil
}

// Client makes a go-elasticsearch client of c, without retries (the
// caller has its own policy), and its transport, whose idle connections
// the caller closes when done. It does not contact the cluster.
func (c *Config) Client() (*elasticsearch.Client, *http.Transport, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 32
	tr.ResponseHeaderTimeout = c.ESTimeout
	tr.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	if c.ESCAFile != "" {
		pool, err := LoadCA(c.ESCAFile)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: --es-ca-file: %w", ErrConfig, err)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	es, err := elasticsearch.NewClient(elasticsearch.Config{
		Addresses:    c.ESAddresses,
		Username:     c.ESUsername,
		Password:     c.ESPassword,
		APIKey:       c.ESAPIKey,
		Transport:    tr,
		DisableRetry: true,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return es, tr, nil
}
