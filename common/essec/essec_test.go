package essec

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	tests := map[string]struct {
		cfg     Config
		wantErr string
	}{
		"ok":                {Config{ESAddresses: []string{"http://127.0.0.1:9200", "https://es:9200"}}, ""},
		"no address is ok":  {Config{}, ""},
		"bad scheme":        {Config{ESAddresses: []string{"127.0.0.1:9200"}}, "--es-addresses 127.0.0.1:9200"},
		"bad index":         {Config{ESIndex: "Logs"}, "--es-index Logs"},
		"both credentials":  {Config{ESAPIKey: "k", ESUsername: "u"}, "use one"},
		"password only":     {Config{ESPassword: "p"}, "without --es-username"},
		"basic auth is ok":  {Config{ESUsername: "u", ESPassword: "p"}, ""},
		"negative timeout":  {Config{ESTimeout: -1}, "negative"},
		"api key alone ok":  {Config{ESAPIKey: "k"}, ""},
		"missing CA file":   {Config{ESCAFile: "/nonexistent/ca.pem"}, "--es-ca-file /nonexistent/ca.pem"},
		"CA file not a PEM": {Config{ESCAFile: "essec_test.go"}, "no PEM"},
		"password file":     {Config{ESUsername: "u", ESPasswordFile: "/nonexistent/pw"}, "--es-password-file /nonexistent/pw"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if tt.cfg.ESIndex == "" {
				tt.cfg.ESIndex = DefaultIndex
			}
			err := tt.cfg.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate = %v, want ErrConfig mentioning %q", err, tt.wantErr)
			}
		})
	}
}

// TestSecretsNeverInErrors: a refused value names the flag, not the secret.
func TestSecretsNeverInErrors(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := Config{ESIndex: DefaultIndex, ESAPIKey: "k3y", ESPasswordFile: pw}
	err := c.Validate()
	if err == nil || strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "k3y") {
		t.Fatalf("Validate = %v, want an error without the secrets", err)
	}
}

func TestClient(t *testing.T) {
	c := Config{ESAddresses: []string{"https://127.0.0.1:1"}, ESIndex: DefaultIndex, ESCAFile: "essec_test.go"}
	if _, _, err := c.Client(); !errors.Is(err, ErrConfig) {
		t.Fatalf("Client with a bad CA file = %v, want ErrConfig", err)
	}
	c.ESCAFile = ""
	es, tr, err := c.Client()
	if err != nil || es == nil || tr == nil {
		t.Fatalf("Client = %v, %v, %v", es, tr, err)
	}
	tr.CloseIdleConnections()
}
