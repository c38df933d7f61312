package real

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/logpipe/logpipe/devstack/internal/listener"
)

// TestKafkaAddressTaken: a broker address given and taken fails the start
// at once, with Kafka's own words about it, and leaves no JVM behind.
func TestKafkaAddressTaken(t *testing.T) {
	needJava(t)
	dist, err := Prepare(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := listener.Listen("")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dir := t.TempDir()
	k, err := StartKafka(t.Context(), dist, KafkaOptions{Addr: ln.Addr().String(), DataDir: dir})
	if err == nil {
		k.Close()
		t.Fatalf("StartKafka on %s, which is taken: no error", ln.Addr())
	}
	msg := err.Error()
	if !strings.Contains(msg, "Address already in use") || !strings.Contains(msg, ln.Addr().String()) ||
		!strings.Contains(msg, dir+"/kafka.log") {
		t.Errorf("error %q: want Kafka's line saying that %s is in use, and the log's path", msg, ln.Addr())
	}
	if _, err := os.Stat(dir + "/kafka.log"); err != nil {
		t.Errorf("no log kept: %v", err)
	}
}

// TestStartCancelled: a start whose context ends early fails, naming the
// log, and leaves neither a JVM nor a temporary folder behind.
func TestStartCancelled(t *testing.T) {
	needJava(t)
	dist, err := Prepare(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	if k, err := StartKafka(ctx, dist, KafkaOptions{}); err == nil {
		k.Close()
		t.Error("StartKafka with half a second: no error")
	} else if !strings.Contains(err.Error(), "kafka.log") || !strings.Contains(err.Error(), "deadline exceeded") {
		t.Errorf("StartKafka with half a second: %v; want the deadline and the log named", err)
	}
	ctx, cancel = context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	if o, err := StartOpenSearch(ctx, dist, OpenSearchOptions{}); err == nil {
		o.Close()
		t.Error("StartOpenSearch with half a second: no error")
	} else if !strings.Contains(err.Error(), "opensearch.log") || !strings.Contains(err.Error(), "deadline exceeded") {
		t.Errorf("StartOpenSearch with half a second: %v; want the deadline and the log named", err)
	}
	if left, _ := os.ReadDir(tmp); len(left) > 0 {
		t.Errorf("left in the temporary folder: %v", left)
	}
	for _, pid := range javaChildren(t) {
		t.Errorf("JVM %d still runs", pid)
	}
}

// javaChildren are the process ids of this process's java children.
func javaChildren(tb testing.TB) []int {
	tb.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		tb.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid ...
		_, rest, _ := strings.Cut(string(stat), " (")
		i := strings.LastIndex(rest, ") ")
		if i < 0 {
			continue
		}
		fields := strings.Fields(rest[i+2:])
		if rest[:i] == "java" && len(fields) > 1 && fields[1] == strconv.Itoa(os.Getpid()) {
			pids = append(pids, pid)
		}
	}
	return pids
}
