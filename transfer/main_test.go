package main

import (
	"testing"

	"github.com/logpipe/logpipe/devstack/proc"
)

func TestMain(m *testing.M) { proc.Main(m) }
