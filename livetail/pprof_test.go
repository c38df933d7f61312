package main

import (
	"net/http"
	"strings"
	"testing"
)

// --pprof serves the profiles on the metrics listener, never on the public
// one; without it they are not served at all.
func TestPprof(t *testing.T) {
	s := newKafka(t)
	for name, on := range map[string]bool{"off": false, "on": true} {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(s)
			cfg.Pprof = on
			ts := startServer(t, cfg)
			code, body := httpGet(t, "http://"+ts.MetricsAddr()+"/debug/pprof/")
			if served := code == http.StatusOK && strings.Contains(body, "goroutine"); served != on {
				t.Errorf("--pprof=%v: /debug/pprof/ on --metrics-addr answered %d", on, code)
			}
			if code, _ := httpGet(t, "http://"+ts.Addr()+"/debug/pprof/"); code == http.StatusOK {
				t.Errorf("--pprof=%v: /debug/pprof/ served on the public listener", on)
			}
		})
	}
}
