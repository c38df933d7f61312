package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"path"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// ErrKey is returned for a verification key that cannot be used.
var ErrKey = errors.New("auth: bad JWT key")

// Leeway is the clock skew tolerated on exp and nbf.
const Leeway = 5 * time.Second

// Claims are the registered claims a token must carry besides sub and exp:
// when set, aud must include Audience and iss must equal Issuer.
type Claims struct {
	Audience string
	Issuer   string
}

// JWT authenticates bearer tokens signed with one pinned algorithm.
type JWT struct {
	alg    string
	key    any
	parser *jwt.Parser
}

// claims are the claims livetail reads: sub is the user, jobs the optional
// glob patterns of the jobs the user may tail.
type claims struct {
	jwt.RegisteredClaims
	Jobs *[]string `json:"jobs,omitempty"`
}

// NewHS256 returns an authenticator for HS256 tokens signed with secret.
func NewHS256(secret []byte, want Claims) (*JWT, error) {
	if len(secret) == 0 {
		return nil, fmt.Errorf("%w: the HS256 secret is empty", ErrKey)
	}
	return newJWT("HS256", secret, want, nil), nil
}

// NewPublicKey returns an authenticator for tokens signed with the private
// key of the PEM-encoded public key: RS256 for an RSA key, ES256 for a P-256
// ECDSA key. The algorithm follows from the key and no other is accepted.
func NewPublicKey(pemData []byte, want Claims) (*JWT, error) {
	block, _ := pem.Decode(pemData)
	if block == nil {
		return nil, fmt.Errorf("%w: no PEM block found", ErrKey)
	}
	var pub any
	var err error
	switch block.Type {
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			pub = cert.PublicKey
		}
	default:
		return nil, fmt.Errorf("%w: PEM block %q is not a public key", ErrKey, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKey, err)
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("%w: RSA key of %d bits, want at least 2048", ErrKey, k.N.BitLen())
		}
		return newJWT("RS256", k, want, nil), nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("%w: ECDSA key on %s, want P-256 (ES256)", ErrKey, k.Curve.Params().Name)
		}
		return newJWT("ES256", k, want, nil), nil
	}
	return nil, fmt.Errorf("%w: %T keys are not supported (want RSA or P-256 ECDSA)", ErrKey, pub)
}

func newJWT(alg string, key any, want Claims, now func() time.Time) *JWT {
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{alg}),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(Leeway),
	}
	if want.Audience != "" {
		opts = append(opts, jwt.WithAudience(want.Audience))
	}
	if want.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(want.Issuer))
	}
	if now != nil {
		opts = append(opts, jwt.WithTimeFunc(now))
	}
	return &JWT{alg: alg, key: key, parser: jwt.NewParser(opts...)}
}

// Algorithm returns the pinned signing algorithm.
func (j *JWT) Algorithm() string { return j.alg }

// Authenticate implements Authenticator.
func (j *JWT) Authenticate(r *http.Request) (Identity, error) {
	tok := Token(r)
	if tok == "" {
		return Identity{}, fmt.Errorf("%w: token missing (Authorization: Bearer header or token parameter)", ErrUnauthenticated)
	}
	var c claims
	_, err := j.parser.ParseWithClaims(tok, &c, func(*jwt.Token) (any, error) { return j.key, nil })
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %w", ErrUnauthenticated, err)
	}
	if c.Subject == "" {
		return Identity{}, fmt.Errorf("%w: token has no sub claim", ErrUnauthenticated)
	}
	id := Identity{User: c.Subject, Expires: c.ExpiresAt.Add(Leeway)}
	if c.Jobs != nil {
		id.Jobs = make([]string, 0, len(*c.Jobs))
		for _, pat := range *c.Jobs {
			if _, err := path.Match(pat, ""); err != nil {
				return Identity{}, fmt.Errorf("%w: jobs claim: bad pattern %q", ErrUnauthenticated, pat)
			}
			id.Jobs = append(id.Jobs, pat)
		}
	}
	return id, nil
}
