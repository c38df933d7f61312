// Package partition computes the Kafka partition of a record key the way
// Kafka's Java client does by default: murmur2 of the key bytes, made
// positive, modulo the number of partitions
// (org.apache.kafka.common.utils.Utils.murmur2 and toPositive). DESIGN.md,
// "Kafka record", makes this logpipe's partitioner, so that any standard
// producer keyed by job puts a job's lines where logpipe does.
//
// The agent produces with it and livetail uses it to name a job's home
// partition; librdkafka's murmur2 partitioners (murmur2, murmur2_random)
// agree with it for non-empty keys.
package partition

// Murmur2 is Kafka's murmur2 hash of b: bit for bit the int that Java's
// Utils.murmur2 returns.
func Murmur2(b []byte) int32 {
	const (
		seed uint32 = 0x9747b28c
		m    uint32 = 0x5bd1e995
		r           = 24
	)
	n := len(b)
	h := seed ^ uint32(n)
	for i := 0; i+4 <= n; i += 4 {
		k := uint32(b[i]) | uint32(b[i+1])<<8 | uint32(b[i+2])<<16 | uint32(b[i+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	tail := b[n&^3:]
	switch len(tail) {
	case 3:
		h ^= uint32(tail[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(tail[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(tail[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return int32(h)
}

// ForKey returns the partition, of n, that Java's default partitioner
// picks for a non-empty key: toPositive(murmur2(key)) % n. It returns 0
// when n is not positive.
func ForKey(key []byte, n int32) int32 {
	if n <= 0 {
		return 0
	}
	return (Murmur2(key) & 0x7fffffff) % n
}

// ForJob is ForKey for a job name, logpipe's record key.
func ForJob(job string, n int32) int32 {
	return ForKey([]byte(job), n)
}
