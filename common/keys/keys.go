// Package keys is the etcd key layout that agents, operators and tests share
// (DESIGN.md, "etcd keys").
package keys

import (
	"errors"
	"fmt"
	"strings"
)

const (
	// AgentsPrefix holds one collect config per agent: AgentsPrefix + name.
	AgentsPrefix = "/logpipe/agents/"
	// StatusPrefix holds each live agent's status, under a lease: StatusPrefix + name.
	StatusPrefix = "/logpipe/status/agents/"
)

// ErrBadName is returned for an agent name that cannot be part of a key.
var ErrBadName = errors.New("keys: bad agent name")

// AgentConfig is the key of agent name's collect config.
func AgentConfig(name string) string { return AgentsPrefix + name }

// AgentStatus is the key of agent name's status.
func AgentStatus(name string) string { return StatusPrefix + name }

// CheckName reports whether name can be used as an agent name: not empty, no
// slash, no whitespace or control characters.
func CheckName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty", ErrBadName)
	}
	if strings.ContainsAny(name, "/") {
		return fmt.Errorf("%w %q: contains '/'", ErrBadName, name)
	}
	for _, r := range name {
		if r <= ' ' || r == 0x7f {
			return fmt.Errorf("%w %q: contains whitespace or a control character", ErrBadName, name)
		}
	}
	return nil
}
