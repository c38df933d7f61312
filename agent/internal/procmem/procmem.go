// Package procmem reads a process's memory use from /proc, for the tests and
// the benchmark that check the agent's memory stays flat.
package procmem

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// RSS returns the resident and peak resident memory of process pid in bytes
// (VmRSS and VmHWM of /proc/<pid>/status), or 0, 0 when it cannot be read.
func RSS(pid int) (cur, peak int64) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			switch f[0] {
			case "VmRSS:":
				cur = n << 10
			case "VmHWM:":
				peak = n << 10
			}
		}
	}
	return cur, peak
}
