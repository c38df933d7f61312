package keys_test

import (
	"errors"
	"testing"

	"github.com/logpipe/logpipe/common/keys"
)

func TestLayout(t *testing.T) {
	if got := keys.AgentConfig("node-a"); got != "/logpipe/agents/node-a" {
		t.Errorf("AgentConfig = %q", got)
	}
	if got := keys.AgentStatus("node-a"); got != "/logpipe/status/agents/node-a" {
		t.Errorf("AgentStatus = %q", got)
	}
}

func TestCheckName(t *testing.T) {
	for name, ok := range map[string]bool{"node-a": true, "web.1": true, "": false, "a/b": false, "a b": false, "a\tb": false} {
		err := keys.CheckName(name)
		if (err == nil) != ok {
			t.Errorf("CheckName(%q) = %v", name, err)
		}
		if err != nil && !errors.Is(err, keys.ErrBadName) {
			t.Errorf("CheckName(%q) error %v does not wrap ErrBadName", name, err)
		}
	}
}
