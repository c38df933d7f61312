package wire

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCloseReason(t *testing.T) {
	long := strings.Repeat("é", 100)
	r := CloseReason(long)
	if len(r) > 123 || !utf8.ValidString(r) || !strings.HasSuffix(r, "...") {
		t.Fatalf("%q (%d bytes)", r, len(r))
	}
	if CloseReason("short") != "short" {
		t.Fatal("short reason changed")
	}
}
