package collect_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/logpipe/logpipe/common/collect"
)

func TestParseAcceptsSeedConfig(t *testing.T) {
	c, err := collect.Parse([]byte(`[{"path":"./xx.log","topic":"web_log"}]`))
	if err != nil {
		t.Fatal(err)
	}
	e := c[0].Resolve("logs")
	if e.Path != "./xx.log" || e.Topic != "web_log" || e.From != collect.FromEnd {
		t.Fatalf("resolved %+v", e)
	}
	if got := e.JobFor("./xx.log"); got != "xx" {
		t.Fatalf("job %q, want xx", got)
	}
}

func TestParseFullEntry(t *testing.T) {
	c, err := collect.Parse([]byte(`[{"path":"/var/log/app/*.log","job":"app","labels":{"env":"dev"},"from":"beginning",
		"multiline":{"pattern":"^\\s","negate":false,"match":"after","max_lines":50}}]`))
	if err != nil {
		t.Fatal(err)
	}
	e := c[0].Resolve("logs")
	if e.Topic != "logs" || e.Job != "app" || e.Labels["env"] != "dev" || e.From != "beginning" || !e.IsGlob() {
		t.Fatalf("resolved %+v", e)
	}
	if e.Multiline.MaxLines != 50 || e.Multiline.Match != "after" {
		t.Fatalf("multiline %+v", e.Multiline)
	}
}

func TestResolveDefaults(t *testing.T) {
	e := collect.Entry{Path: "a.log", Multiline: &collect.Multiline{Pattern: "^x"}}.Resolve("logs")
	if e.Multiline.Match != collect.MatchAfter || e.Multiline.MaxLines != collect.DefaultMaxLines {
		t.Fatalf("multiline defaults %+v", e.Multiline)
	}
}

func TestParseErrorsNameEntryAndField(t *testing.T) {
	for name, tc := range map[string]struct{ in, want string }{
		"empty value":       {``, "empty value"},
		"null":              {`null`, "got null"},
		"object not array":  {`{"path":"a"}`, "want a JSON array"},
		"bad json":          {`[{"path":}]`, "bad JSON"},
		"trailing data":     {`[] []`, "data after"},
		"empty path":        {`[{"path":"a.log"},{"path":""}]`, "entry 2: path is empty"},
		"bad glob":          {`[{"path":"a[.log"}]`, `entry 1: path "a[.log": bad glob`},
		"unknown field":     {`[{"path":"a.log","pth":"x"}]`, `unknown field "pth"`},
		"wrong type":        {`[{"path":3}]`, `field "path"`},
		"bad topic":         {`[{"path":"a.log","topic":"web log"}]`, `entry 1: topic "web log"`},
		"bad from":          {`[{"path":"a.log","from":"start"}]`, `entry 1: from "start"`},
		"duplicate path":    {`[{"path":"a.log"},{"path":"a.log"}]`, `entry 2: path "a.log" is already in entry 1`},
		"control in job":    {`[{"path":"a.log","job":"a\nb"}]`, `entry 1: job`},
		"empty label name":  {`[{"path":"a.log","labels":{"":"x"}}]`, `entry 1: labels`},
		"bad multiline re":  {`[{"path":"a.log","multiline":{"pattern":"("}}]`, `entry 1: multiline.pattern "("`},
		"no multiline re":   {`[{"path":"a.log","multiline":{}}]`, `multiline.pattern is empty`},
		"bad multiline mat": {`[{"path":"a.log","multiline":{"pattern":"x","match":"around"}}]`, `multiline.match "around"`},
		"negative max":      {`[{"path":"a.log","multiline":{"pattern":"x","max_lines":-1}}]`, `multiline.max_lines -1`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := collect.Parse([]byte(tc.in))
			if err == nil {
				t.Fatalf("Parse(%s) succeeded", tc.in)
			}
			if !errors.Is(err, collect.ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
		})
	}
}

func TestJobFor(t *testing.T) {
	for file, want := range map[string]string{
		"/var/log/web-1.log": "web-1",
		"app.json.log":       "app.json",
		"noext":              "noext",
		".hidden":            ".hidden",
	} {
		if got := (collect.Entry{Path: "*"}).JobFor(file); got != want {
			t.Errorf("JobFor(%q) = %q, want %q", file, got, want)
		}
	}
	if got := (collect.Entry{Path: "*", Job: "fixed"}).JobFor("x.log"); got != "fixed" {
		t.Errorf("explicit job ignored: %q", got)
	}
}

func TestEqual(t *testing.T) {
	a := collect.Entry{Path: "a", Labels: map[string]string{"x": "1", "y": "2"}}
	b := collect.Entry{Path: "a", Labels: map[string]string{"y": "2", "x": "1"}}
	c := collect.Entry{Path: "a", Labels: map[string]string{"x": "1"}}
	if !a.Equal(b) || a.Equal(c) {
		t.Fatal("Equal disagrees with the entries' content")
	}
}

// FuzzParse: whatever etcd holds, Parse returns a config that validates or an
// ErrInvalid error on one line; it never panics.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`[{"path":"./xx.log","topic":"web_log"}]`,
		`[{"path":"/a/*.log","labels":{"a":"b"},"multiline":{"pattern":"^\\s","match":"before","max_lines":3}}]`,
		`[]`, `null`, `{}`, `[{"path":""}]`, `[{"path":"[`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := collect.Parse(data)
		if err != nil {
			if !errors.Is(err, collect.ErrInvalid) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("bad error %q", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("parsed config does not validate: %v", err)
		}
		for _, e := range c {
			r := e.Resolve("logs")
			if r.Topic == "" || (r.From != collect.FromEnd && r.From != collect.FromBeginning) {
				t.Fatalf("resolve left defaults empty: %+v", r)
			}
		}
	})
}
