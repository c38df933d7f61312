package producer

import (
	"math/rand/v2"

	"github.com/IBM/sarama"

	"github.com/logpipe/logpipe/common/partition"
)

// NewMurmur2Partitioner is a sarama.PartitionerConstructor that places a
// keyed message as Kafka's Java client does by default (DESIGN.md, "Kafka
// record"): toPositive(murmur2(key)) % partitions. Messages without a key go
// to a random partition.
func NewMurmur2Partitioner(string) sarama.Partitioner { return murmur2Partitioner{} }

type murmur2Partitioner struct{}

// Partition implements sarama.Partitioner.
func (murmur2Partitioner) Partition(m *sarama.ProducerMessage, n int32) (int32, error) {
	if m.Key == nil || m.Key.Length() == 0 {
		return rand.Int32N(n), nil
	}
	key, err := m.Key.Encode()
	if err != nil {
		return -1, err
	}
	return partition.ForKey(key, n), nil
}

// RequiresConsistency implements sarama.Partitioner: a key always maps to
// the same partition, so sarama must not move it when that one is down.
func (murmur2Partitioner) RequiresConsistency() bool { return true }
