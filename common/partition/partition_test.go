package partition

import (
	"fmt"
	"testing"
)

// Kafka's own vectors (clients/src/test/.../utils/UtilsTest.testMurmur2):
// what Java's Utils.murmur2 returns for these keys.
var kafkaVectors = map[string]int32{
	"21":                         -973932308,
	"foobar":                     -790332482,
	"a-little-bit-long-string":   -985981536,
	"a-little-bit-longer-string": -1486304829,
	"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
	"abc": 479470107,
}

func TestMurmur2KafkaVectors(t *testing.T) {
	for key, want := range kafkaVectors {
		if got := Murmur2([]byte(key)); got != want {
			t.Errorf("Murmur2(%q) = %d, want %d", key, got, want)
		}
	}
}

func TestForKey(t *testing.T) {
	tests := map[string]struct {
		key  string
		n    int32
		want int32
	}{
		// toPositive(-973932308) = 1173551340; % 6 = 0
		"negative hash": {"21", 6, 1173551340 % 6},
		"positive hash": {"abc", 6, 479470107 % 6},
		"one partition": {"foobar", 1, 0},
		"no partitions": {"foobar", 0, 0},
		"empty key":     {"", 12, (Murmur2(nil) & 0x7fffffff) % 12},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := ForKey([]byte(tt.key), tt.n); got != tt.want {
				t.Fatalf("ForKey(%q, %d) = %d, want %d", tt.key, tt.n, got, tt.want)
			}
			if tt.n > 0 && ForJob(tt.key, tt.n) != tt.want {
				t.Fatalf("ForJob(%q, %d) differs from ForKey", tt.key, tt.n)
			}
		})
	}
}

func BenchmarkMurmur2(b *testing.B) {
	key := []byte("web-frontend-1")
	b.ReportAllocs()
	for b.Loop() {
		Murmur2(key)
	}
}

func ExampleForJob() {
	fmt.Println(ForJob("web-1", 6))
	// Output: 5
}
