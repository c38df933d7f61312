package conf_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/logpipe/logpipe/common/conf"
)

func TestReadSecret(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const secret = "hunter2-secret"
	for name, tc := range map[string]struct {
		value, file string
		want        string
		err         []string // in the error; the secret never is
	}{
		"no file":             {value: "v", want: "v"},
		"file":                {file: write("a", secret), want: secret},
		"trailing newline":    {file: write("b", secret+"\n"), want: secret},
		"trailing crlf":       {file: write("c", secret+"\r\n"), want: secret},
		"only one newline":    {file: write("d", secret+"\n\n"), want: secret + "\n"},
		"inner spaces stay":   {file: write("e", " a b \n"), want: " a b "},
		"empty":               {file: write("f", ""), err: []string{"--db-password-file", filepath.Join(dir, "f"), "the file is empty"}},
		"only a newline":      {file: write("g", "\n"), err: []string{"the file is empty"}},
		"missing":             {file: filepath.Join(dir, "nope"), err: []string{"--db-password-file " + filepath.Join(dir, "nope"), "no such file or directory"}},
		"a directory":         {file: dir, err: []string{"--db-password-file " + dir}},
		"both value and file": {value: secret, file: write("h", secret), err: []string{"--db-password-file and --db-password (or LOGPIPE_DB_PASSWORD) are both set"}},
	} {
		t.Run(name, func(t *testing.T) {
			v := tc.value
			err := conf.ReadSecret(&v, "db-password", tc.file)
			if tc.err == nil {
				if err != nil || v != tc.want {
					t.Fatalf("got %q, %v; want %q", v, err, tc.want)
				}
				return
			}
			if !errors.Is(err, conf.ErrSecretFile) {
				t.Fatalf("error %v, want ErrSecretFile", err)
			}
			for _, w := range tc.err {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q holds the secret or a newline", err)
			}
		})
	}
}

func TestSecretWarning(t *testing.T) {
	for args, want := range map[string]bool{
		"--db-password x":      true,
		"-db-password=x":       true,
		"--db-password-file f": false,
		"-- --db-password":     false,
	} {
		got := conf.SecretWarning(strings.Fields(args), "db-password")
		if (got != "") != want {
			t.Errorf("%q: warning %q, want one: %v", args, got, want)
		}
		if want && (!strings.Contains(got, "LOGPIPE_DB_PASSWORD") || !strings.Contains(got, "--db-password-file")) {
			t.Errorf("%q: warning %q names neither the variable nor the file flag", args, got)
		}
	}
}
