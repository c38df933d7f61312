package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/golang-jwt/jwt/v5"

	"github.com/logpipe/logpipe/common/record"
	"github.com/logpipe/logpipe/devstack/stack"
	"github.com/logpipe/logpipe/livetail/internal/hub"
)

// placed writes records to chosen partitions, as other producers and a
// restarted agent do, and keeps each record to compare entries with.
type placed struct {
	p     sarama.SyncProducer
	topic string
	recs  map[[2]int64][]byte // partition, offset → value
	keys  map[[2]int64]string
}

func newPlaced(t testing.TB, s *stack.Stack) *placed {
	t.Helper()
	cfg := sarama.NewConfig()
	cfg.Producer.Return.Successes = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	p, err := sarama.NewSyncProducer(s.KafkaAddrs(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return &placed{p: p, topic: s.Topic("logs"), recs: map[[2]int64][]byte{}, keys: map[[2]int64]string{}}
}

// send writes one record of job to partition and returns its offset.
func (pl *placed) send(t testing.TB, partition int32, job string, rec record.Record) int64 {
	t.Helper()
	v := rec.AppendJSON(nil)
	m := &sarama.ProducerMessage{Topic: pl.topic, Partition: partition, Key: sarama.StringEncoder(job), Value: sarama.ByteEncoder(v)}
	if _, _, err := pl.p.SendMessage(m); err != nil {
		t.Fatal(err)
	}
	pl.recs[[2]int64{int64(partition), m.Offset}] = v
	pl.keys[[2]int64{int64(partition), m.Offset}] = job
	return m.Offset
}

// entry is the entry livetail gives for the record at partition:offset.
func (pl *placed) entry(partition int32, offset int64) json.RawMessage {
	k := [2]int64{int64(partition), offset}
	e, _ := hub.NewEntry(partition, offset, []byte(pl.keys[k]), pl.recs[k], time.Time{})
	return e.JSON
}

// fileLine is line i of job's file generation gen, as the agent sends it.
func fileLine(job, gen string, i int) record.Record {
	return record.Record{
		Timestamp: time.Now().UTC(), Message: fmt.Sprintf("%s %s line %d", job, gen, i), Job: job,
		Host: record.Host{Name: "node-a"}, Agent: record.Agent{Name: "node-a"},
		Log: record.Log{Offset: int64(i) * 100, File: record.File{
			Path: "/var/log/" + job + ".log", DeviceID: "2049", Inode: "77", Fingerprint: "9f2c41d07a5b3e88", Generation: gen,
		}},
	}
}

// contextAnswer is GET /api/v1/context's answer.
type contextAnswer struct {
	Line   json.RawMessage   `json:"line"`
	Before []json.RawMessage `json:"before"`
	After  []json.RawMessage `json:"after"`
	From   string            `json:"from"`
	Error  string            `json:"error"`
	Param  string            `json:"param"`
}

func getContext(t testing.TB, base, query, authorization string) (int, contextAnswer) {
	t.Helper()
	code, body := httpGetAuth(t, base+"/api/v1/context?"+query, authorization)
	var a contextAnswer
	if err := json.Unmarshal([]byte(body), &a); err != nil {
		t.Fatalf("context?%s: %d %q: %v", query, code, body, err)
	}
	return code, a
}

// TestContextFromKafka: without an index, the context of a line is read
// from Kafka: the 50 lines before and after it in its own source file
// generation, in file order, whatever else the partition holds between
// them (other jobs, the agent's resends after a crash, the file's next
// generation); the job's lines by offset for a line without a source
// position. On kfake and on Apache Kafka.
func TestContextFromKafka(t *testing.T) {
	stack.ForBackends(t, testContextFromKafka)
}

func testContextFromKafka(t *testing.T, kind string) {
	s := newKafkaOf(t, stack.Options{Backends: kind})
	pl := newPlaced(t, s)
	// Partition 0: web's file g1, lines 0..299, each followed by a line of
	// db; after line 200 the agent restarts and sends 190..200 again; then
	// the file is truncated and written again (g2, lines 0..19).
	g1 := map[int][]int64{} // line → offsets (a resent line has two)
	for i := 0; i < 300; i++ {
		g1[i] = append(g1[i], pl.send(t, 0, "web", fileLine("web", "00000000000000a1", i)))
		pl.send(t, 0, "db", fileLine("db", "00000000000000d1", i))
		if i == 200 {
			for j := 190; j <= 200; j++ {
				g1[j] = append(g1[j], pl.send(t, 0, "web", fileLine("web", "00000000000000a1", j)))
			}
		}
	}
	var g2 []int64
	for i := 0; i < 20; i++ {
		g2 = append(g2, pl.send(t, 0, "web", fileLine("web", "00000000000000a2", i)))
	}
	// Partition 1: another producer's lines, without a source position.
	var plain []int64
	for i := 0; i < 30; i++ {
		rec := record.Record{Timestamp: time.Now().UTC(), Message: fmt.Sprintf("plain %d", i), Job: "plain"}
		plain = append(plain, pl.send(t, 1, "plain", rec))
		if i%10 == 0 {
			pl.send(t, 1, "other", record.Record{Timestamp: time.Now().UTC(), Message: "other", Job: "other"})
		}
	}

	ts := startServer(t, testConfig(s))
	base := "http://" + ts.Addr()
	lines := func(p int32, offs ...int64) []json.RawMessage {
		out := make([]json.RawMessage, len(offs))
		for i, o := range offs {
			out[i] = pl.entry(p, o)
		}
		return out
	}
	firstOf := func(from, to int) []int64 { // the first offset of g1's lines from..to-1
		var out []int64
		for i := from; i < to; i++ {
			out = append(out, g1[i][0])
		}
		return out
	}

	for name, c := range map[string]struct {
		query  string
		line   json.RawMessage
		before []json.RawMessage
		after  []json.RawMessage
	}{
		"a line and 50 either side": {fmt.Sprintf("job=web&partition=0&offset=%d", g1[150][0]), pl.entry(0, g1[150][0]), lines(0, firstOf(100, 150)...), lines(0, firstOf(151, 201)...)},
		"across the resend":         {fmt.Sprintf("job=web&partition=0&offset=%d&before=3&after=3", g1[201][0]), pl.entry(0, g1[201][0]), lines(0, firstOf(198, 201)...), lines(0, firstOf(202, 205)...)},
		"a resent line":             {fmt.Sprintf("job=web&partition=0&offset=%d&before=2&after=2", g1[195][1]), pl.entry(0, g1[195][1]), lines(0, firstOf(193, 195)...), lines(0, firstOf(196, 198)...)},
		"the file's start":          {fmt.Sprintf("job=web&partition=0&offset=%d&before=5&after=2", g1[2][0]), pl.entry(0, g1[2][0]), lines(0, firstOf(0, 2)...), lines(0, firstOf(3, 5)...)},
		"the next generation":       {fmt.Sprintf("job=web&partition=0&offset=%d&before=3&after=50", g2[5]), pl.entry(0, g2[5]), lines(0, g2[2:5]...), lines(0, g2[6:]...)},
		"no source position":        {fmt.Sprintf("job=plain&partition=1&offset=%d&before=4&after=4", plain[10]), pl.entry(1, plain[10]), lines(1, plain[6:10]...), lines(1, plain[11:15]...)},
		"none asked":                {fmt.Sprintf("job=web&partition=0&offset=%d&before=0&after=0", g1[150][0]), pl.entry(0, g1[150][0]), []json.RawMessage{}, []json.RawMessage{}},
	} {
		t.Run(name, func(t *testing.T) {
			code, a := getContext(t, base, c.query, "")
			if code != http.StatusOK || a.From != "kafka" {
				t.Fatalf("%d, from %q, error %q", code, a.From, a.Error)
			}
			same := func(what string, got, want []json.RawMessage) {
				t.Helper()
				if len(got) != len(want) {
					t.Fatalf("%s: %d lines, want %d", what, len(got), len(want))
				}
				for i := range want {
					if string(got[i]) != string(want[i]) {
						t.Fatalf("%s %d:\n got %s\nwant %s", what, i, got[i], want[i])
					}
				}
			}
			same("line", []json.RawMessage{a.Line}, []json.RawMessage{c.line})
			same("before", a.Before, c.before)
			same("after", a.After, c.after)
		})
	}

	for query, want := range map[string]struct {
		code  int
		param string
	}{
		fmt.Sprintf("job=web&partition=0&offset=%d", g1[10][0]+1): {http.StatusNotFound, "offset"}, // db's line
		"job=web&partition=0&offset=999999":                       {http.StatusNotFound, "offset"},
		"partition=0&offset=1":                                    {http.StatusBadRequest, "job"},
		"job=web&partition=3&offset=1":                            {http.StatusBadRequest, "partition"},
		"job=web&partition=x&offset=1":                            {http.StatusBadRequest, "partition"},
		"job=web&partition=0&offset=-1":                           {http.StatusBadRequest, "offset"},
		"job=web&partition=0&offset=1&before=201":                 {http.StatusBadRequest, "before"},
		"job=web&partition=0&offset=1&after=x":                    {http.StatusBadRequest, "after"},
	} {
		if code, a := getContext(t, base, query, ""); code != want.code || a.Param != want.param || a.Error == "" {
			t.Errorf("context?%s: %d %+v, want %d naming %s", query, code, a, want.code, want.param)
		}
	}
}

// TestContextAuth: under --auth jwt the context of a line needs a token
// (401) that allows the line's job (403).
func TestContextAuth(t *testing.T) {
	s := newKafka(t)
	pl := newPlaced(t, s)
	off := pl.send(t, 0, "web-1", fileLine("web-1", "00000000000000a1", 0))
	cfg := testConfig(s)
	cfg.Auth.Value = "jwt"
	cfg.JWTSecret = testSecret
	ts := startServer(t, cfg)
	base := "http://" + ts.Addr()
	exp := time.Now().Add(time.Hour).Unix()
	q := fmt.Sprintf("job=web-1&partition=0&offset=%d", off)

	if code, a := getContext(t, base, q, ""); code != http.StatusUnauthorized || a.Error == "" {
		t.Errorf("without a token: %d %+v, want 401", code, a)
	}
	other := hsToken(t, jwt.MapClaims{"sub": "bob", "exp": exp, "jobs": []string{"db-*"}})
	if code, a := getContext(t, base, q, "Bearer "+other); code != http.StatusForbidden || a.Param != "job" || !strings.Contains(a.Error, "web-1") {
		t.Errorf("a token for other jobs: %d %+v, want 403 naming the job", code, a)
	}
	good := hsToken(t, jwt.MapClaims{"sub": "alice", "exp": exp, "jobs": []string{"web-*"}})
	if code, a := getContext(t, base, q, "Bearer "+good); code != http.StatusOK || string(a.Line) != string(pl.entry(0, off)) {
		t.Errorf("an allowed job: %d %+v", code, a)
	}
	if code, a := getContext(t, base, q+"&token="+url.QueryEscape(good), ""); code != http.StatusOK {
		t.Errorf("token in the query: %d %+v", code, a)
	}
}
