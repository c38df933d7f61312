package deploy_test

import (
	"testing"

	"github.com/logpipe/logpipe/devstack/proc"
)

func TestMain(m *testing.M) { proc.Main(m) }
