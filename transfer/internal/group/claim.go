package group

import (
	"context"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/sirupsen/logrus"

	"github.com/logpipe/logpipe/transfer/internal/metrics"
	"github.com/logpipe/logpipe/transfer/internal/sink"
)

// handler is the sarama.ConsumerGroupHandler of one Group.
type handler struct{ g *Group }

func (h *handler) Setup(sess sarama.ConsumerGroupSession) error {
	h.g.setJoined(true, nil)
	h.g.log.WithFields(logrus.Fields{
		"member": sess.MemberID(), "generation": sess.GenerationID(), "claims": sess.Claims(),
	}).Info("kafka: joined consumer group")
	return nil
}

func (h *handler) Cleanup(sess sarama.ConsumerGroupSession) error {
	h.g.log.WithField("generation", sess.GenerationID()).Info("kafka: releasing partitions")
	return nil
}

// ConsumeClaim processes one partition in offset order until the claim is
// released. A reader (this goroutine) fills a batch while a writer indexes
// the previous one, so that building documents and the bulk round trip
// overlap; the writer marks offsets in batch order, and only after a batch
// is fully indexed or dead-lettered. While the writer retries, the reader
// fills one batch and then waits: that is the backpressure on Kafka. When
// the claim is released, the batch in progress and the partial one get
// DrainTimeout to finish; what does not finish is left uncommitted.
func (h *handler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	g := h.g
	topic, partition := claim.Topic(), claim.Partition()
	log := g.log.WithFields(logrus.Fields{"topic": topic, "partition": partition})
	lag := g.m.Lag.WithLabelValues(topic, metrics.PartitionLabel(partition))
	defer g.m.Lag.DeleteLabelValues(topic, metrics.PartitionLabel(partition))
	if g.cfg.Claimed != nil {
		defer g.cfg.Claimed(topic, partition)()
	}

	// Writes may go on for DrainTimeout after the session ends.
	ctx, stop := drainContext(sess.Context(), g.cfg.DrainTimeout)
	defer stop()

	// Two batches circulate: one being filled, one being written.
	full := make(chan *sink.Batch)
	free := make(chan *sink.Batch, 2)
	free <- g.newBatch()
	free <- g.newBatch()
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		abandoned := false
		for b := range full {
			if !abandoned {
				last := b.Last()
				if err := g.sink.Write(ctx, b); err != nil {
					// Nothing from here on may be marked: it would skip this batch.
					abandoned = true
					log.WithError(err).WithField("next_offset", b.First().Offset).
						Warn("batch abandoned uncommitted; it will be read again")
				} else {
					sess.MarkOffset(topic, partition, last.Offset+1, "")
					lag.Set(float64(max(0, claim.HighWaterMarkOffset()-last.Offset-1)))
				}
			}
			b.Reset()
			free <- b // never blocks: the batch came from free
		}
	}()

	cur := <-free
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	// handoff passes cur to the writer once it is idle; false means the
	// session ended first.
	handoff := func() bool {
		timer.Stop()
		select {
		case full <- cur:
		case <-sess.Context().Done():
			return false
		}
		cur = <-free // the writer put its previous batch back before taking cur
		return true
	}
	// finish hands the partial batch over and waits for the writer.
	finish := func() error {
		if cur.Len() > 0 {
			full <- cur
		}
		close(full)
		<-writerDone
		return nil
	}

	log.WithField("offset", claim.InitialOffset()).Debug("partition claimed")
	for {
		select {
		case msg, ok := <-claim.Messages():
			if !ok {
				return finish()
			}
			if cur.Len() == 0 {
				timer.Reset(g.cfg.BatchWait)
			}
			cur.Add(msg)
			if cur.Len() >= g.cfg.BatchDocs || cur.Size() >= g.cfg.BatchBytes {
				if !handoff() {
					return finish()
				}
			}
		case <-timer.C:
			if cur.Len() > 0 && !handoff() {
				return finish()
			}
		case <-sess.Context().Done():
			return finish()
		}
	}
}

// drainContext returns a context that ends grace after parent ends: the
// time a partition being given up has to finish its batch in progress.
func drainContext(parent context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	var (
		mu    sync.Mutex
		timer *time.Timer
		done  bool
	)
	stopAfter := context.AfterFunc(parent, func() {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			timer = time.AfterFunc(grace, cancel)
		}
	})
	return ctx, func() {
		stopAfter()
		mu.Lock()
		done = true
		if timer != nil {
			timer.Stop()
		}
		mu.Unlock()
		cancel()
	}
}
