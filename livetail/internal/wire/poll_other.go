//go:build !linux

package wire

import (
	"errors"
	"syscall"
)

// peers is the poller of watched connections: none on this system, where
// each connection is read by a goroutine of its own.
var peers poller

type poller struct{}

var errNoPoller = errors.New("no poller on this system")

func (poller) add(*watch) error   { return errNoPoller }
func (poller) rearm(*watch) error { return errNoPoller }
func (poller) remove(*watch)      {}

// readNow is never called here: no connection is watched by a poller.
func readNow(syscall.RawConn, []byte) (int, error) { return 0, errNoPoller }
