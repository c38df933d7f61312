package realtest

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestDecide(t *testing.T) {
	all := func(string) (string, error) { return "/usr/bin/x", nil }
	noMaven := func(cmd string) (string, error) {
		if cmd == "mvn" {
			return "", errors.New("not found")
		}
		return "/usr/bin/" + cmd, nil
	}
	tests := map[string]struct {
		env      map[string]string
		lookPath func(string) (string, error)
		want     Verdict
		msg      string // a part of the message; "" means none
	}{
		"nothing set":                    {nil, all, Run, ""},
		"skip asked":                     {map[string]string{EnvSkip: "1"}, all, Skip, "LOGPIPE_SKIP_REAL=1"},
		"skip asked, tools missing":      {map[string]string{EnvSkip: "1"}, noMaven, Skip, "not running JVMs"},
		"skip not 1":                     {map[string]string{EnvSkip: "true"}, all, Run, ""},
		"real required":                  {map[string]string{EnvRequire: "1"}, all, Run, ""},
		"skip asked while real required": {map[string]string{EnvSkip: "1", EnvRequire: "1"}, all, Run, "LOGPIPE_SKIP_REAL=1 ignored"},
		"skip asked, required, no maven": {map[string]string{EnvSkip: "1", EnvRequire: "1"}, noMaven, Fail, "mvn not found"},
		"tools missing":                  {nil, noMaven, Fail, "Debian package maven"},
		"required, no tools":             {map[string]string{EnvRequire: "1"}, noMaven, Fail, "make test-deps"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, msg := Decide(func(k string) string { return tc.env[k] }, tc.lookPath)
			if got != tc.want || (tc.msg == "") != (msg == "") || !strings.Contains(msg, tc.msg) {
				t.Errorf("Decide = %v %q, want %v and a message with %q", got, msg, tc.want, tc.msg)
			}
		})
	}
}

// Need and Decide read the process's environment: under the skip variable
// alone the test is skipped; with the require variable too, it runs.
func TestNeedReadsEnvironment(t *testing.T) {
	t.Run("skip", func(t *testing.T) {
		t.Setenv(EnvSkip, "1")
		t.Setenv(EnvRequire, "")
		ran := false
		t.Run("inner", func(t *testing.T) { Need(t); ran = true })
		if ran {
			t.Errorf("%s=1 without %s: the test ran past Need", EnvSkip, EnvRequire)
		}
	})
	t.Run("required", func(t *testing.T) {
		t.Setenv(EnvSkip, "1")
		t.Setenv(EnvRequire, "1")
		found := func(string) (string, error) { return "/usr/bin/x", nil }
		if v, msg := Decide(os.Getenv, found); v != Run || !strings.Contains(msg, "ignored") {
			t.Errorf("%s=1 with %s=1: Decide = %v %q, want Run and a note", EnvSkip, EnvRequire, v, msg)
		}
	})
}
