// Package esauth puts HTTP basic authentication in front of an
// Elasticsearch API handler (esfake, or the proxy in front of OpenSearch)
// and answers a request without valid credentials as Elasticsearch does
// with security on: 401, a WWW-Authenticate: Basic challenge and a
// security_exception body.
package esauth

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
)

// Challenge is the WWW-Authenticate header of a 401, as Elasticsearch
// sends it.
const Challenge = `Basic realm="security", charset="UTF-8"`

// Wrap returns a handler that passes a request to next only when it
// carries the basic-auth user and password.
func Wrap(next http.Handler, user, password string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if ok && equal(u, user) && equal(p, password) {
			next.ServeHTTP(w, r)
			return
		}
		reason := "missing authentication credentials for REST request [" + r.URL.Path + "]"
		if ok {
			reason = "unable to authenticate user [" + u + "] for REST request [" + r.URL.Path + "]"
		}
		refuse(w, reason)
	})
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// refuse writes Elasticsearch's 401 answer.
func refuse(w http.ResponseWriter, reason string) {
	cause := map[string]any{
		"type":   "security_exception",
		"reason": reason,
		"header": map[string][]string{"WWW-Authenticate": {Challenge}},
	}
	body := map[string]any{
		"error":  map[string]any{"root_cause": []any{cause}, "type": cause["type"], "reason": reason, "header": cause["header"]},
		"status": http.StatusUnauthorized,
	}
	w.Header().Set("WWW-Authenticate", Challenge)
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	_ = json.NewEncoder(w).Encode(body)
}
