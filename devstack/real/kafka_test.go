package real

import (
	"os"
	"strings"
	"testing"
)

// TestKafkaAddressTaken: a broker address given and taken fails the start
// at once, with Kafka's own words about it, and leaves no JVM behind.
func TestKafkaAddressTaken(t *testing.T) {
	needJava(t)
	dist, err := Prepare(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := listen("")
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
