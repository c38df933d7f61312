// Package pki makes a throwaway certificate authority and the certificates
// devstack's secured backends serve with: one server certificate for
// 127.0.0.1 and localhost, one client certificate, each in a PEM file. It
// is for development and tests only: the keys are unencrypted files and the
// certificates live a week.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// lifetime is how long the certificates are valid, from an hour ago (a
// clock a little behind still accepts them).
const lifetime = 7 * 24 * time.Hour

// ErrWrite is returned by New when a file cannot be written.
var ErrWrite = errors.New("pki: writing the certificates")

// PKI is a CA with a server and a client certificate, written to Dir:
// ca.pem, server.pem and server-key.pem, client.pem and client-key.pem,
// and server-bundle.pem (the server's key and certificate in one file,
// as Kafka's PEM keystore reads them). Keys are PKCS#8.
type PKI struct {
	Dir                   string
	CAFile                string
	ServerCert, ServerKey string
	ServerBundle          string
	ClientCert, ClientKey string

	ca             *x509.Certificate
	caKey          *ecdsa.PrivateKey
	server, client tls.Certificate
}

// New makes a CA named name and its certificates in dir (created if
// missing; files already there are replaced).
func New(dir, name string) (*PKI, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrWrite, err)
	}
	p := &PKI{Dir: dir}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(lifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	p.ca, _ = x509.ParseCertificate(der)
	p.caKey = key
	if p.CAFile, err = writePEM(dir, "ca.pem", pemBlock("CERTIFICATE", der)); err != nil {
		return nil, err
	}
	// The server certificate is also a client one: a server that dials
	// itself (Kafka's broker, etcd's gateway) presents it.
	var bundle []byte
	if p.server, p.ServerCert, p.ServerKey, bundle, err = p.issue("server", x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth); err != nil {
		return nil, err
	}
	if p.ServerBundle, err = writePEM(dir, "server-bundle.pem", bundle); err != nil {
		return nil, err
	}
	if p.client, p.ClientCert, p.ClientKey, _, err = p.issue("client", x509.ExtKeyUsageClientAuth); err != nil {
		return nil, err
	}
	return p, nil
}

// issue makes a certificate named cn signed by the CA and writes it and its
// key; bundle is the key and the certificate in one PEM text.
func (p *PKI) issue(cn string, usage ...x509.ExtKeyUsage) (cert tls.Certificate, certFile, keyFile string, bundle []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return cert, "", "", nil, err
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(lifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  usage,
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		return cert, "", "", nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return cert, "", "", nil, err
	}
	certPEM, keyPEM := pemBlock("CERTIFICATE", der), pemBlock("PRIVATE KEY", kder)
	if certFile, err = writePEM(p.Dir, cn+".pem", certPEM); err != nil {
		return cert, "", "", nil, err
	}
	if keyFile, err = writePEM(p.Dir, cn+"-key.pem", keyPEM); err != nil {
		return cert, "", "", nil, err
	}
	if cert, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return cert, "", "", nil, err
	}
	return cert, certFile, keyFile, append(keyPEM, certPEM...), nil
}

// Pool is a certificate pool holding the CA alone.
func (p *PKI) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.ca)
	return pool
}

// ServerTLS is the servers' TLS configuration; with requireClient, clients
// must present a certificate of this CA.
func (p *PKI) ServerTLS(requireClient bool) *tls.Config {
	tc := &tls.Config{Certificates: []tls.Certificate{p.server}, MinVersion: tls.VersionTLS12}
	if requireClient {
		tc.ClientCAs = p.Pool()
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc
}

// ClientTLS is a client's TLS configuration: it trusts the CA alone, and
// with cert presents the client certificate.
func (p *PKI) ClientTLS(cert bool) *tls.Config {
	tc := &tls.Config{RootCAs: p.Pool(), MinVersion: tls.VersionTLS12}
	if cert {
		tc.Certificates = []tls.Certificate{p.client}
	}
	return tc
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func writePEM(dir, name string, data []byte) (string, error) {
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return "", fmt.Errorf("%w: %v", ErrWrite, err)
	}
	return path, nil
}
