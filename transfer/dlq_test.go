package main

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/logpipe/logpipe/common/record"
	"github.com/logpipe/logpipe/devstack/stack"
	"github.com/logpipe/logpipe/transfer/internal/dlq"
	"github.com/logpipe/logpipe/transfer/internal/document"
)

// TestRefusedDocumentGoesToDLQ: a record that Elasticsearch refuses for
// its own content (esfake refuses it as a value that does not fit a
// field), and a value that is not a record, land in logs.dlq with their
// error headers; the records around them are indexed and the partition's
// committed offset moves past them.
func TestRefusedDocumentGoesToDLQ(t *testing.T) {
	// On esfake only: it refuses the document as Elasticsearch would.
	w := newWorld(t, stack.Embedded)
	w.s.ES().RejectItems(func(_, id string, doc []byte) (int, string, string, bool) {
		return http.StatusBadRequest, "document_parsing_exception",
			"[1:30] failed to parse field [json.code] of type [long] in document with id '" + id + "'",
			bytes.Contains(doc, []byte(`"code":"not a number"`))
	})
	p := w.newProducer()
	r := startService(t, "transfer", w.config())

	// One key, so one partition.
	value := func(msg string) sarama.Encoder {
		rec := record.Record{Timestamp: time.Now().UTC(), Message: msg, Job: "api"}
		return sarama.ByteEncoder(rec.AppendJSON(nil))
	}
	messages := []sarama.Encoder{
		value(`{"code":1}`),
		value(`plain line`),
		value(`{"code":"not a number"}`), // offset 2: refused
		value(`{"code":3}`),
		sarama.StringEncoder(`not a record`), // offset 4: invalid record
		value(`{"code":5}`),
	}
	var msgs []*sarama.ProducerMessage
	for _, v := range messages {
		msgs = append(msgs, &sarama.ProducerMessage{Topic: w.topic, Key: sarama.StringEncoder("api"), Value: v})
	}
	p.sendRaw(msgs...)
	part := msgs[0].Partition
	for _, m := range msgs {
		if m.Partition != part || m.Offset != msgs[0].Offset+int64(slicesIndex(msgs, m)) {
			t.Fatalf("records not consecutive in one partition: %d/%d", m.Partition, m.Offset)
		}
	}
	id := func(i int) string {
		return document.Source{Topic: w.topic, Partition: part, Offset: msgs[i].Offset}.ID()
	}

	w.waitCount(within, 4)
	w.checkExactly([]string{id(0), id(1), id(3), id(5)})

	letters := readTopic(t, w.s.KafkaAddrs(), w.dlq, 2)
	byOffset := map[string]map[string]string{}
	for _, m := range letters {
		h := map[string]string{}
		for _, rh := range m.Headers {
			h[string(rh.Key)] = string(rh.Value)
		}
		h["key"], h["value"] = string(m.Key), string(m.Value)
		byOffset[h[dlq.HeaderOffset]] = h
	}
	conflict := byOffset[strconv.FormatInt(msgs[2].Offset, 10)]
	invalid := byOffset[strconv.FormatInt(msgs[4].Offset, 10)]
	origConflict, _ := messages[2].Encode()
	switch {
	case conflict == nil || invalid == nil:
		t.Fatalf("dead letters %v, want offsets %d and %d", byOffset, msgs[2].Offset, msgs[4].Offset)
	case conflict[dlq.HeaderErrorType] != "document_parsing_exception" || conflict[dlq.HeaderErrorStatus] != "400" || conflict[dlq.HeaderErrorReason] == "":
		t.Errorf("mapping-conflict headers = %v", conflict)
	case conflict["value"] != string(origConflict) || conflict["key"] != "api":
		t.Errorf("mapping-conflict record = %q %q, want the original", conflict["key"], conflict["value"])
	case conflict[dlq.HeaderTopic] != w.topic || conflict[dlq.HeaderPartition] != fmt.Sprint(part):
		t.Errorf("mapping-conflict source headers = %v", conflict)
	case invalid[dlq.HeaderErrorType] != dlq.TypeInvalidRecord || invalid[dlq.HeaderErrorReason] == "" || invalid["value"] != "not a record":
		t.Errorf("invalid-record dead letter = %v", invalid)
	}

	dead := map[string]bool{id(2): true, id(4): true}
	waitFor(t, within, "the partition committed past the dead letters", func() bool {
		return w.checkCommitted(dead)[part] == msgs[5].Offset+1
	})
	if got := scrape(t, r.svc.Addr(), "transfer_docs_dlq_total"); got != 2 {
		t.Errorf("transfer_docs_dlq_total = %v, want 2", got)
	}
	r.stop()
}

func slicesIndex(msgs []*sarama.ProducerMessage, m *sarama.ProducerMessage) int {
	for i, x := range msgs {
		if x == m {
			return i
		}
	}
	return -1
}

// readTopic waits until topic holds n records and returns them.
func readTopic(t testing.TB, brokers []string, topic string, n int) []*sarama.ConsumerMessage {
	t.Helper()
	client, err := sarama.NewClient(brokers, sarama.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	parts, err := client.Partitions(topic)
	if err != nil {
		t.Fatal(err)
	}
	ends := map[int32]int64{}
	waitFor(t, within, fmt.Sprintf("%d records in %s", n, topic), func() bool {
		total := int64(0)
		for _, p := range parts {
			end, err := client.GetOffset(topic, p, sarama.OffsetNewest)
			if err != nil {
				t.Fatal(err)
			}
			ends[p] = end
			total += end
		}
		return total >= int64(n)
	})
	c, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var got []*sarama.ConsumerMessage
	for p, end := range ends {
		if end == 0 {
			continue
		}
		pc, err := c.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatal(err)
		}
		for m := range pc.Messages() {
			got = append(got, m)
			if m.Offset == end-1 {
				break
			}
		}
		pc.Close()
	}
	return got
}
