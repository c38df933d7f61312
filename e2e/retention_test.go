package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/logpipe/logpipe/common/record"
	"github.com/logpipe/logpipe/devstack/proc"
	"github.com/logpipe/logpipe/devstack/stack"
)

// TestSinceBeyondRetention: lines Kafka no longer holds come from the
// index. A producer writes job ret's first lines, an hour old, transfer
// indexes them, and then Kafka loses them: on Apache Kafka by retention
// (retention.ms of a minute, segment.ms of a second, the broker checking
// every second: the next line rolls the segment and the old one is
// deleted), on kfake, which applies retention only hourly, by
// DeleteRecords, which moves the partition's start the same way for a
// reader. More lines follow. A livetail with the index, asked for
// since= two hours ago, sends the index's lines and then Kafka's, in
// offset order, with no gap and no duplicate at the boundary.
func TestSinceBeyondRetention(t *testing.T) {
	stack.ForBackends(t, testSinceBeyondRetention)
}

func testSinceBeyondRetention(t *testing.T, kind string) {
	st := stack.New(t, stack.Options{Backends: kind, Without: []string{stack.Etcd}})
	kafka := st.KafkaAddrs()
	topic, dlq, esIndex := st.Topic("logs"), st.Topic("logs.dlq"), st.Index(index)
	const job, old, fresh = "ret", 300, 40

	cl, err := kgo.NewClient(kgo.SeedBrokers(kafka...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	adm := kadm.NewClient(cl)
	ctx := context.Background()
	hourAgo := time.Now().Add(-time.Hour).UTC()
	produce := func(first, n int, at time.Time) (partition int32) {
		t.Helper()
		recs := make([]*kgo.Record, n)
		for i := range recs {
			r := record.Record{
				Timestamp: at.Add(time.Duration(first+i) * time.Millisecond), Message: fmt.Sprintf("ret line %04d", first+i), Job: job,
				Host: record.Host{Name: "node-r"}, Agent: record.Agent{Name: "node-r"},
				Log: record.Log{Offset: int64(first+i) * 14, File: record.File{
					Path: "/var/log/ret.log", DeviceID: "2049", Inode: "91", Fingerprint: "0123456789abcdef", Generation: "00000000000000e1",
				}},
			}
			recs[i] = &kgo.Record{Key: []byte(job), Value: r.AppendJSON(nil), Timestamp: r.Timestamp}
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		return recs[0].Partition
	}
	p := produce(0, old, hourAgo)

	transfer := proc.Start(t, binary(t, "transfer"), "--kafka-brokers", kafka[0], "--kafka-topics", topic, "--dlq-topic", dlq,
		"--group", st.Topic("logpipe-transfer"), "--es-addresses", st.ESURL(), "--es-index", esIndex, "--metrics-addr", "127.0.0.1:0",
		"--jobs-topic", "")
	waitReady(t, "transfer", transfer.Addr(t, "metrics"))
	eventually(t, "the old lines indexed", func() error {
		if err := esRefresh(st.ESURL(), esIndex); err != nil {
			return err
		}
		n, err := esCount(st.ESURL(), esIndex, "")
		if err == nil && n < old {
			err = fmt.Errorf("%d of %d documents", n, old)
		}
		return err
	})

	start := func() int64 {
		offs, err := adm.ListStartOffsets(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		o, _ := offs.Lookup(topic, p)
		return o.Offset
	}
	if kind == stack.Real {
		setTopic(t, adm, topic, map[string]string{"retention.ms": "60000", "segment.ms": "1000"})
		time.Sleep(1100 * time.Millisecond) // segment.ms, from the segment's first (hour old) line, has passed anyway
		produce(old, 1, time.Now().UTC())   // rolls the segment of the old lines
	} else {
		res, err := adm.DeleteRecords(ctx, kadm.Offsets{topic: {p: {Topic: topic, Partition: p, At: old}}})
		if err == nil {
			err = res.Error()
		}
		if err != nil {
			t.Fatal(err)
		}
		produce(old, 1, time.Now().UTC())
	}
	// The premise: Kafka holds no old line any more.
	eventually(t, "Kafka to lose the old lines", func() error {
		if s := start(); s != old {
			return fmt.Errorf("partition %d starts at %d, want %d", p, s, old)
		}
		return nil
	})
	if produce(old+1, fresh-1, time.Now().UTC()) != p {
		t.Fatal("the job's lines moved partition")
	}

	livetail := proc.Start(t, binary(t, "livetail"), "--kafka-brokers", kafka[0], "--kafka-topic", topic,
		"--listen", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--jobs-topic", "",
		"--es-addresses", st.ESURL(), "--es-index", esIndex)
	waitReady(t, "livetail", livetail.Addr(t, "http"))

	since := time.Now().Add(-2 * time.Hour).UTC().Format(time.RFC3339)
	dctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	conn, _, err := websocket.Dial(dctx, "ws://"+livetail.Addr(t, "http")+"/api/v1/tail?job="+job+"&since="+since, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	conn.SetReadLimit(16 << 20)
	var hello struct {
		Archive     bool   `json:"archive"`
		HistoryFrom string `json:"history_from"`
	}
	type entry struct {
		Partition int32  `json:"partition"`
		Offset    int64  `json:"offset"`
		Line      string `json:"line"`
		Pos       int64  `json:"pos"`
	}
	var got []entry
	for done := false; !done; {
		_, data, err := conn.Read(dctx)
		if err != nil {
			t.Fatalf("after %d entries: %v", len(got), err)
		}
		var f struct {
			Type    string  `json:"type"`
			Entries []entry `json:"entries"`
		}
		if err := json.Unmarshal(data, &f); err != nil {
			t.Fatal(err)
		}
		switch f.Type {
		case "hello":
			json.Unmarshal(data, &hello)
		case "entries":
			got = append(got, f.Entries...)
		case "caught_up":
			done = true
		case "dropped", "error":
			t.Fatalf("%s", data)
		}
	}
	if !hello.Archive {
		t.Errorf("hello says no archive")
	}
	if len(got) != old+fresh {
		t.Fatalf("%d lines, want %d: the %d the index holds, then Kafka's %d", len(got), old+fresh, old, fresh)
	}
	for i, e := range got {
		if e.Partition != p || e.Offset != int64(i) || e.Line != "ret line "+fmt.Sprintf("%04d", i) || e.Pos != int64(i)*14 {
			t.Fatalf("line %d: %+v, want offset %d, line %q, pos %d (no gap, no duplicate)", i, e, i, "ret line "+strconv.Itoa(i), i*14)
		}
	}
}

// setTopic sets configs of topic.
func setTopic(t testing.TB, adm *kadm.Client, topic string, configs map[string]string) {
	t.Helper()
	var alter []kadm.AlterConfig
	for k, v := range configs {
		alter = append(alter, kadm.AlterConfig{Op: kadm.SetConfig, Name: k, Value: &v})
	}
	res, err := adm.AlterTopicConfigs(context.Background(), alter, topic)
	if err == nil {
		_, err = res.On(topic, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
}
