package proc

import (
	"net"
	"strconv"
	"strings"

	"github.com/logpipe/logpipe/common/logging"
)

// addrIn returns the address of the listener called name that line
// announces: the line logging.Listening writes, or a line whose first word
// is name and a later word an address ("127.0.0.1:9092") or a URL
// ("http://127.0.0.1:2379", "http://127.0.0.1:8080/?job=web").
func addrIn(line, name string) (string, bool) {
	if n, addr, ok := logging.ParseListening(line); ok {
		if n != name {
			return "", false
		}
		return addr, true
	}
	words := strings.Fields(line)
	if len(words) < 2 || words[0] != name {
		return "", false
	}
	for _, w := range words[1:] {
		if addr, ok := hostPort(w); ok {
			return addr, true
		}
	}
	return "", false
}

// hostPort returns the host:port of a word that is one, or a URL with one.
func hostPort(word string) (string, bool) {
	if _, rest, ok := strings.Cut(word, "://"); ok {
		word = rest
	}
	if i := strings.IndexAny(word, "/,;"); i >= 0 {
		word = word[:i]
	}
	host, port, err := net.SplitHostPort(word)
	if err != nil || host == "" {
		return "", false
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return "", false
	}
	return word, true
}
