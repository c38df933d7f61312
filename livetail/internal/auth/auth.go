// Package auth decides who opens a live tail and which jobs they may tail.
//
// An Authenticator turns a request into an Identity: None names the user by
// the client address and allows every job; JWT verifies a bearer token
// (from the Authorization header or the token query parameter) with a
// pinned algorithm, takes the user from `sub` and the allowed jobs from an
// optional `jobs` claim of glob patterns. Tokens are never logged or put in
// an error.
package auth

import (
	"errors"
	"net"
	"net/http"
	"path"
	"strings"
	"time"
)

// ErrUnauthenticated is returned when the token is missing, invalid or
// expired (WebSocket close code 4401).
var ErrUnauthenticated = errors.New("auth: unauthenticated")

// Identity is an authenticated user.
type Identity struct {
	User string
	// Jobs lists glob patterns (path.Match syntax) of the jobs the user may
	// tail; nil allows every job.
	Jobs []string
	// Expires is when the credentials stop being accepted (a token's exp,
	// plus the leeway); zero means never. A session ends then with 4401.
	Expires time.Time
}

// Allows reports whether the identity may tail job.
func (id Identity) Allows(job string) bool {
	if id.Jobs == nil {
		return true
	}
	for _, pat := range id.Jobs {
		if ok, err := path.Match(pat, job); err == nil && ok {
			return true
		}
	}
	return false
}

// Authenticator authenticates a WebSocket upgrade request.
type Authenticator interface {
	// Authenticate returns the request's identity, or an error wrapping
	// ErrUnauthenticated whose text does not contain the token.
	Authenticate(r *http.Request) (Identity, error)
}

// None is the Authenticator for --auth none: the user is the client's
// address (without the port) and every job is allowed.
type None struct{}

// Authenticate implements Authenticator.
func (None) Authenticate(r *http.Request) (Identity, error) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return Identity{User: host}, nil
}

// Token returns the bearer token of r: the Authorization header's, else the
// token query parameter's.
func Token(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if scheme, tok, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(tok)
		}
	}
	return r.URL.Query().Get("token")
}

// RedactURL returns the request's path and query with the token replaced,
// for logs.
func RedactURL(r *http.Request) string {
	q := r.URL.Query()
	if q.Has("token") {
		q.Set("token", "REDACTED")
	}
	if len(q) == 0 {
		return r.URL.Path
	}
	return r.URL.Path + "?" + q.Encode()
}
