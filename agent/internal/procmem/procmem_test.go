package procmem_test

import (
	"os"
	"testing"

	"github.com/logpipe/logpipe/agent/internal/procmem"
)

func TestRSSOfThisProcess(t *testing.T) {
	cur, peak := procmem.RSS(os.Getpid())
	if cur <= 0 || peak < cur {
		t.Fatalf("RSS = %d, peak %d: want 0 < cur <= peak", cur, peak)
	}
	if cur, peak := procmem.RSS(-1); cur != 0 || peak != 0 {
		t.Fatalf("RSS of no process = %d, %d", cur, peak)
	}
}
