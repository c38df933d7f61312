package upstream

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// oldestFetchBytes bounds the fetch of a partition's oldest record.
const oldestFetchBytes = 256 << 10

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
	t, err := c.recordTime(hc.c, p, oldest)
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
// of the next one, if retention removed it meanwhile), from one fetch
// request to the partition's leader that does not wait for data: a
// partition consumer would cost its start and its close.
func (c *Client) recordTime(client sarama.Client, p int32, off int64) (time.Time, error) {
	leader, err := client.Leader(c.cfg.Topic, p)
	if err != nil {
		return time.Time{}, err
	}
	req := &sarama.FetchRequest{Version: 4, MinBytes: 1, MaxBytes: oldestFetchBytes, Isolation: sarama.ReadUncommitted}
	req.AddBlock(c.cfg.Topic, p, off, oldestFetchBytes, -1)
	resp, err := leader.Fetch(req)
	if err != nil {
		return time.Time{}, err
	}
	block := resp.GetBlock(c.cfg.Topic, p)
	if block == nil {
		return time.Time{}, fmt.Errorf("fetching partition %d at %d: no answer for it", p, off)
	}
	if !errors.Is(block.Err, sarama.ErrNoError) {
		return time.Time{}, fmt.Errorf("fetching partition %d at %d: %w", p, off, block.Err)
	}
	for _, rs := range block.RecordsSet {
		if b := rs.RecordBatch; b != nil {
			for _, r := range b.Records {
				if b.FirstOffset+r.OffsetDelta < off {
					continue
				}
				if b.LogAppendTime {
					return b.MaxTimestamp, nil
				}
				return b.FirstTimestamp.Add(r.TimestampDelta), nil
			}
		}
		if ms := rs.MsgSet; ms != nil {
			for _, m := range ms.Messages {
				if m.Offset >= off && m.Msg != nil {
					return m.Msg.Timestamp, nil
				}
			}
		}
	}
	return time.Time{}, nil // none whole within the bytes fetched: left out
}
