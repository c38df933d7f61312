package sink

import (
	"github.com/IBM/sarama"

	"github.com/logpipe/logpipe/transfer/internal/document"
	"github.com/logpipe/logpipe/transfer/internal/esbulk"
)

// Batch is a run of consecutive records of one partition and the bulk body
// that indexes them. It is reused: Reset keeps its buffers.
type Batch struct {
	index   string
	builder document.Builder

	body  []byte // create actions of the records that are documents
	items []item // every record, in offset order
	docs  int    // items that have lines in body

	id      []byte        // scratch: one _id
	doc     []byte        // scratch: one document
	scratch []byte        // scratch: the body of a partial retry
	results []esbulk.Item // scratch: outcomes of one request
	pending []int         // scratch: items still to index
	letters []deadLetter  // scratch: items for the dead-letter topic
}

// item is one record of a batch.
type item struct {
	msg        *sarama.ConsumerMessage
	start, end int   // its action and document lines in body; equal when it has none
	err        error // why the value is not a record (then start == end)
}

// NewBatch returns an empty batch that builds documents with b and writes
// them into index.
func NewBatch(index string, b document.Builder) *Batch {
	return &Batch{index: index, builder: b}
}

// Add appends a record; it must follow the previous one in its partition.
// A value that is not a record is kept for the dead-letter topic.
func (b *Batch) Add(msg *sarama.ConsumerMessage) {
	src := document.Source{Topic: msg.Topic, Partition: msg.Partition, Offset: msg.Offset, Key: msg.Key}
	start := len(b.body)
	var err error
	b.doc, b.id, err = b.builder.AppendDocument(b.doc[:0], b.id[:0], msg.Value, src)
	if err != nil {
		b.items = append(b.items, item{msg: msg, start: start, end: start, err: err})
		return
	}
	// The _id comes from the record (its source position when it has one),
	// so the action line is written once the document is built.
	b.body = esbulk.AppendCreate(b.body, b.index, b.id)
	b.body = append(b.body, b.doc...)
	b.body = append(b.body, '\n')
	b.items = append(b.items, item{msg: msg, start: start, end: len(b.body)})
	b.docs++
}

// Len is the number of records in the batch.
func (b *Batch) Len() int { return len(b.items) }

// Size is the size of the bulk body in bytes.
func (b *Batch) Size() int { return len(b.body) }

// First is the first record added, or nil for an empty batch.
func (b *Batch) First() *sarama.ConsumerMessage {
	if len(b.items) == 0 {
		return nil
	}
	return b.items[0].msg
}

// Last is the last record added, or nil for an empty batch.
func (b *Batch) Last() *sarama.ConsumerMessage {
	if len(b.items) == 0 {
		return nil
	}
	return b.items[len(b.items)-1].msg
}

// Reset empties the batch, keeping its buffers.
func (b *Batch) Reset() {
	clear(b.items) // drop the messages for the garbage collector
	b.items = b.items[:0]
	b.body = b.body[:0]
	b.docs = 0
	clear(b.letters)
	b.letters = b.letters[:0]
}

// bodyOf returns the bulk body for the given items: the whole body when they
// are all of the batch's documents, else a copy of their lines.
func (b *Batch) bodyOf(idx []int) []byte {
	if len(idx) == b.docs {
		return b.body
	}
	b.scratch = b.scratch[:0]
	for _, i := range idx {
		it := b.items[i]
		b.scratch = append(b.scratch, b.body[it.start:it.end]...)
	}
	return b.scratch
}
