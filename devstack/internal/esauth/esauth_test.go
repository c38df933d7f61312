package esauth

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestWrap(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	h := Wrap(ok, "logpipe", "secret")
	for name, tc := range map[string]struct {
		user, password string
		basic          bool
		status         int
		reason         string
	}{
		"the user":       {"logpipe", "secret", true, http.StatusOK, ""},
		"anonymous":      {"", "", false, http.StatusUnauthorized, "missing authentication credentials for REST request [/logs/_search]"},
		"wrong password": {"logpipe", "not-secret", true, http.StatusUnauthorized, "unable to authenticate user [logpipe] for REST request [/logs/_search]"},
		"another user":   {"elastic", "secret", true, http.StatusUnauthorized, "unable to authenticate user [elastic] for REST request [/logs/_search]"},
	} {
		t.Run(name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/logs/_search", nil)
			if tc.basic {
				req.SetBasicAuth(tc.user, tc.password)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d", rec.Code, tc.status)
			}
			if tc.status == http.StatusOK {
				return
			}
			if got := rec.Header().Get("WWW-Authenticate"); got != Challenge {
				t.Errorf("WWW-Authenticate %q, want %q", got, Challenge)
			}
			var body struct {
				Error struct {
					Type, Reason string
				}
				Status int
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			if body.Error.Type != "security_exception" || body.Error.Reason != tc.reason || body.Status != http.StatusUnauthorized {
				t.Errorf("body %s: want a security_exception saying %q", rec.Body, tc.reason)
			}
		})
	}
}
