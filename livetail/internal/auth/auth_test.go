package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const secret = "0123456789abcdef0123456789abcdef"

type testRequest struct{ r *http.Request }

func req(query, authorization string) testRequest {
	r := httptest.NewRequest("GET", "/api/v1/tail?"+query, nil)
	r.RemoteAddr = "192.0.2.7:51234"
	if authorization != "" {
		r.Header.Set("Authorization", authorization)
	}
	return testRequest{r}
}

func TestNone(t *testing.T) {
	id, err := None{}.Authenticate(req("job=a", "").r)
	if err != nil || id.User != "192.0.2.7" || !id.Allows("anything") {
		t.Fatalf("%+v %v", id, err)
	}
}

func sign(t *testing.T, m jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestHS256(t *testing.T) {
	a, err := NewHS256([]byte(secret), Claims{})
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour).Unix()
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	tests := map[string]struct {
		query, header string
		user          string
		jobs          []string
		fail          string // substring of the error; "" for success
	}{
		"query":          {query: "token=" + sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"sub": "alice", "exp": exp}), user: "alice"},
		"header":         {header: "Bearer " + sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"sub": "bob", "exp": exp, "jobs": []string{"web-*", "db"}}), user: "bob", jobs: []string{"web-*", "db"}},
		"header wins":    {query: "token=garbage", header: "bearer " + sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"sub": "carol", "exp": exp}), user: "carol"},
		"empty jobs":     {query: "token=" + sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"sub": "d", "exp": exp, "jobs": []string{}}), user: "d", jobs: []string{}},
		"missing":        {fail: "token missing"},
		"expired":        {query: "token=" + sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"sub": "a", "exp": time.Now().Add(-time.Minute).Unix()}), fail: "expired"},
		"no exp":         {query: "token=" + sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"sub": "a"}), fail: "exp"},
		"no sub":         {query: "token=" + sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"exp": exp}), fail: "sub"},
		"not yet valid":  {query: "token=" + sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"sub": "a", "exp": exp, "nbf": time.Now().Add(time.Hour).Unix()}), fail: "not valid yet"},
		"wrong secret":   {query: "token=" + sign(t, jwt.SigningMethodHS256, []byte("other"), jwt.MapClaims{"sub": "a", "exp": exp}), fail: "signature"},
		"RS256":          {query: "token=" + sign(t, jwt.SigningMethodRS256, rsaKey, jwt.MapClaims{"sub": "a", "exp": exp}), fail: "signing method"},
		"bad pattern":    {query: "token=" + sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"sub": "a", "exp": exp, "jobs": []string{"[web"}}), fail: "pattern"},
		"jobs not array": {query: "token=" + sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"sub": "a", "exp": exp, "jobs": "web"}), fail: "jobs"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			id, err := a.Authenticate(req(tt.query, tt.header).r)
			if tt.fail != "" {
				if !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), tt.fail) {
					t.Fatalf("error %v, want ErrUnauthenticated mentioning %q", err, tt.fail)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if id.User != tt.user || !slices.Equal(id.Jobs, tt.jobs) || (tt.jobs != nil && id.Jobs == nil) {
				t.Fatalf("identity %+v", id)
			}
		})
	}
}

// With an audience and an issuer configured, a token must name both; the
// identity expires when the token does (plus the leeway).
func TestAudienceIssuer(t *testing.T) {
	a, err := NewHS256([]byte(secret), Claims{Audience: "livetail", Issuer: "https://idp.example"})
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	tok := func(claims jwt.MapClaims) string {
		claims["sub"], claims["exp"] = "alice", exp.Unix()
		return "token=" + sign(t, jwt.SigningMethodHS256, []byte(secret), claims)
	}
	tests := map[string]struct {
		query string
		fail  string
	}{
		"both":           {query: tok(jwt.MapClaims{"aud": "livetail", "iss": "https://idp.example"})},
		"aud in a list":  {query: tok(jwt.MapClaims{"aud": []string{"grafana", "livetail"}, "iss": "https://idp.example"})},
		"other audience": {query: tok(jwt.MapClaims{"aud": "grafana", "iss": "https://idp.example"}), fail: "audience"},
		"no audience":    {query: tok(jwt.MapClaims{"iss": "https://idp.example"}), fail: "aud"},
		"other issuer":   {query: tok(jwt.MapClaims{"aud": "livetail", "iss": "https://evil.example"}), fail: "issuer"},
		"no issuer":      {query: tok(jwt.MapClaims{"aud": "livetail"}), fail: "iss"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			id, err := a.Authenticate(req(tt.query, "").r)
			if tt.fail != "" {
				if !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), tt.fail) {
					t.Fatalf("error %v, want ErrUnauthenticated mentioning %q", err, tt.fail)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !id.Expires.Equal(exp.Add(Leeway)) {
				t.Fatalf("expires %v, want %v", id.Expires, exp.Add(Leeway))
			}
		})
	}
}

func TestAllows(t *testing.T) {
	id := Identity{User: "u", Jobs: []string{"web-*", "db"}}
	for job, want := range map[string]bool{"web-1": true, "web-": true, "db": true, "db-1": false, "web": false, "x": false} {
		if id.Allows(job) != want {
			t.Errorf("Allows(%q) = %v", job, !want)
		}
	}
	if (Identity{Jobs: []string{}}).Allows("any") {
		t.Error("an empty jobs claim allows a job")
	}
}

func TestPublicKeys(t *testing.T) {
	exp := time.Now().Add(time.Hour).Unix()
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	pkix := func(k any) []byte {
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}
	rsaPEM := pkix(&rsaKey.PublicKey)
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey)})

	for name, tt := range map[string]struct {
		pem    []byte
		alg    string
		good   string
		others []string
	}{
		"RS256": {rsaPEM, "RS256", sign(t, jwt.SigningMethodRS256, rsaKey, jwt.MapClaims{"sub": "u", "exp": exp}), []string{
			sign(t, jwt.SigningMethodRS384, rsaKey, jwt.MapClaims{"sub": "u", "exp": exp}),
			sign(t, jwt.SigningMethodHS256, rsaPEM, jwt.MapClaims{"sub": "u", "exp": exp}), // HS256 keyed with the public key
			sign(t, jwt.SigningMethodPS256, rsaKey, jwt.MapClaims{"sub": "u", "exp": exp}),
		}},
		"RS256 PKCS1": {pkcs1, "RS256", sign(t, jwt.SigningMethodRS256, rsaKey, jwt.MapClaims{"sub": "u", "exp": exp}), nil},
		"ES256": {pkix(&ecKey.PublicKey), "ES256", sign(t, jwt.SigningMethodES256, ecKey, jwt.MapClaims{"sub": "u", "exp": exp}), []string{
			sign(t, jwt.SigningMethodHS256, pkix(&ecKey.PublicKey), jwt.MapClaims{"sub": "u", "exp": exp}),
		}},
	} {
		t.Run(name, func(t *testing.T) {
			a, err := NewPublicKey(tt.pem, Claims{})
			if err != nil {
				t.Fatal(err)
			}
			if a.Algorithm() != tt.alg {
				t.Fatalf("algorithm %s", a.Algorithm())
			}
			if id, err := a.Authenticate(req("token="+tt.good, "").r); err != nil || id.User != "u" {
				t.Fatalf("good token: %+v %v", id, err)
			}
			for i, tok := range tt.others {
				if _, err := a.Authenticate(req("token="+tok, "").r); !errors.Is(err, ErrUnauthenticated) {
					t.Errorf("token %d of another algorithm accepted: %v", i, err)
				}
			}
		})
	}
	for name, p := range map[string][]byte{
		"P-384":   pkix(&ec384.PublicKey),
		"not PEM": []byte("hello"),
		"private": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}),
		"bad DER": pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2}}),
	} {
		if _, err := NewPublicKey(p, Claims{}); !errors.Is(err, ErrKey) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := NewHS256(nil, Claims{}); !errors.Is(err, ErrKey) {
		t.Errorf("empty secret: %v", err)
	}
}

func TestRedactURL(t *testing.T) {
	r := req("job=a&token=secret-token", "").r
	if got := RedactURL(r); strings.Contains(got, "secret-token") || !strings.Contains(got, "job=a") {
		t.Fatalf("%s", got)
	}
}
