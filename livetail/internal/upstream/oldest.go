package upstream

import (
	"context"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// oldestWait bounds the read of a partition's oldest record: hello's
// history_from is left out rather than hold a session up.
const oldestWait = 2 * time.Second

// oldestTimes remembers, per partition, the time of the oldest record at
// the oldest offset last seen, so that it is read once per retention step,
// not once per session.
type oldestTimes struct {
	mu    sync.Mutex
	known map[int32]oldestRecord
}

type oldestRecord struct {
	offset int64
	time   time.Time
}

// OldestTime returns the Kafka timestamp of the oldest record partition p
// retains; zero when p is empty. It costs an offset lookup, and, when
// retention moved since the last call, another and a fetch of that record.
func (c *Client) OldestTime(ctx context.Context, p int32) (time.Time, error) {
	hc := c.pick()
	oldest, err := hc.c.GetOffset(c.cfg.Topic, p, sarama.OffsetOldest)
	if err != nil {
		return time.Time{}, err
	}
	c.oldest.mu.Lock()
	r, ok := c.oldest.known[p]
	c.oldest.mu.Unlock()
	if ok && r.offset == oldest { // the record at oldest is still retained
		return r.time, nil
	}
	newest, err := hc.c.GetOffset(c.cfg.Topic, p, sarama.OffsetNewest)
	if err != nil || oldest >= newest {
		return time.Time{}, err
	}
	t, err := c.recordTime(ctx, hc.c, p, oldest)
	if err != nil {
		return time.Time{}, err
	}
	c.oldest.mu.Lock()
	if c.oldest.known == nil {
		c.oldest.known = map[int32]oldestRecord{}
	}
	c.oldest.known[p] = oldestRecord{offset: oldest, time: t}
	c.oldest.mu.Unlock()
	return t, nil
}

// recordTime returns the timestamp of the record of p at offset off (or
// of the next one, if retention removed it meanwhile).
func (c *Client) recordTime(ctx context.Context, client sarama.Client, p int32, off int64) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, oldestWait)
	defer cancel()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return time.Time{}, err
	}
	defer consumer.Close()
	pc, err := consumer.ConsumePartition(c.cfg.Topic, p, off)
	if err != nil {
		return time.Time{}, err
	}
	defer closePartition(pc)
	msg, err := receive(ctx, pc)
	if err != nil {
		return time.Time{}, err
	}
	return msg.Timestamp, nil
}
