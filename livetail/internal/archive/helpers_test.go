package archive

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/logpipe/logpipe/common/essec"
	"github.com/logpipe/logpipe/common/record"
	"github.com/logpipe/logpipe/devstack/stack"
	"github.com/logpipe/logpipe/livetail/internal/hub"
)

// The archive is tested on OpenSearch only: esfake (issue 20's stand-in,
// at its size limit) has no search_after and no exists query. Without the
// real backends these tests are skipped, saying how to run them.

// base is the first record's time; record i is written base + i ms + 500µs,
// so that a since bound can fall inside a record's millisecond.
var base = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

func tsOf(offset int64) time.Time {
	return base.Add(time.Duration(offset)*time.Millisecond + 500*time.Microsecond)
}

// doc is a record as transfer indexes it, and where it was in Kafka.
type doc struct {
	topic     string
	partition int32
	offset    int64
	key       string // the Kafka key: the job, as the agent writes it
	value     []byte // the record, as in Kafka
}

// entry is the entry a Kafka read of d gives.
func (d doc) entry() *hub.Entry {
	e, _ := hub.NewEntry(d.partition, d.offset, []byte(d.key), d.value, time.Time{})
	return e
}

// agentRecord is a line of the agent: job's line of file generation gen at pos.
func agentRecord(job, gen string, pos, offset int64) []byte {
	r := record.Record{
		Timestamp: tsOf(offset), Message: fmt.Sprintf("%s %s line at %d", job, gen, pos), Job: job,
		Host: record.Host{Name: "node-a"}, Agent: record.Agent{Name: "node-a"},
		Log: record.Log{Offset: pos, File: record.File{
			Path: "/var/log/" + job + ".log", DeviceID: "2049", Inode: "77", Fingerprint: "9f2c41d07a5b3e88", Generation: gen,
		}},
		Labels: map[string]string{"env": "test"},
	}
	return r.AppendJSON(nil)
}

// plainRecord is a line of another producer: no source position.
func plainRecord(job string, offset int64) []byte {
	r := record.Record{Timestamp: tsOf(offset), Message: fmt.Sprintf("%s plain %d", job, offset), Job: job}
	return r.AppendJSON(nil)
}

// index is a data stream of the test on the shared OpenSearch.
type index struct {
	t    testing.TB
	url  string
	name string
}

// newIndex makes a data stream under transfer's index template for
// OpenSearch (configs/, which transfer's tests keep equal to what it
// installs) and returns an archive reading it, for topic "logs".
func newIndex(t testing.TB) (*index, *Archive) {
	t.Helper()
	s := stack.New(t, stack.Options{Backends: stack.Real, Without: []string{stack.Etcd}})
	ix := &index{t: t, url: s.ESURL(), name: s.Index("logs-logpipe-archive")}
	raw, err := os.ReadFile(filepath.Join("..", "..", "..", "configs", "index-template-opensearch.json"))
	if err != nil {
		t.Fatal(err)
	}
	var tmpl map[string]any
	if err := json.Unmarshal(raw, &tmpl); err != nil {
		t.Fatal(err)
	}
	tmpl["index_patterns"] = []string{ix.name}
	delete(tmpl, "composed_of") // the operator's component template is not needed here
	body, _ := json.Marshal(tmpl)
	ix.call(http.MethodPut, "/_index_template/"+ix.name, body)
	t.Cleanup(func() {
		ix.call(http.MethodDelete, "/_data_stream/"+ix.name, nil)
		ix.call(http.MethodDelete, "/_index_template/"+ix.name, nil)
	})
	a, err := New(essec.Config{ESAddresses: []string{ix.url}, ESIndex: ix.name}, Options{Topic: "logs"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return ix, a
}

// add indexes docs as transfer does (the record, kafka.*, event.ingested)
// and makes them searchable.
func (ix *index) add(docs ...doc) {
	ix.t.Helper()
	var bulk bytes.Buffer
	for i, d := range docs {
		fmt.Fprintf(&bulk, `{"create":{"_index":%q,"_id":"%s-%d-%d"}}`+"\n", ix.name, d.topic, d.partition, d.offset)
		v := bytes.TrimSuffix(d.value, []byte("}"))
		fmt.Fprintf(&bulk, `%s,"kafka":{"topic":%q,"partition":%d,"offset":%d},"event":{"ingested":"2026-11-21T11:00:00.000000Z"}}`+"\n",
			v, d.topic, d.partition, d.offset)
		if (i+1)%2000 == 0 || i == len(docs)-1 {
			var res struct {
				Errors bool `json:"errors"`
			}
			if err := json.Unmarshal(ix.call(http.MethodPost, "/_bulk", bulk.Bytes()), &res); err != nil || res.Errors {
				ix.t.Fatalf("bulk: errors %v, %v", res.Errors, err)
			}
			bulk.Reset()
		}
	}
	ix.call(http.MethodPost, "/"+ix.name+"/_refresh", nil)
}

func (ix *index) call(method, path string, body []byte) []byte {
	ix.t.Helper()
	req, err := http.NewRequest(method, ix.url+path, bytes.NewReader(body))
	if err != nil {
		ix.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		ix.t.Fatal(err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	if res.StatusCode >= 300 && method != http.MethodDelete {
		ix.t.Fatalf("%s %s: %d %s", method, path, res.StatusCode, out)
	}
	return out
}

// offsets lists the entries' offsets.
func offsets(es []*hub.Entry) []int64 {
	out := make([]int64, len(es))
	for i, e := range es {
		out[i] = e.Offset
	}
	return out
}

// checkEntries fails unless got are the entries of want, byte for byte.
func checkEntries(t testing.TB, what string, got []*hub.Entry, want []doc) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d entries %v, want %d", what, len(got), short(offsets(got)), len(want))
	}
	for i, d := range want {
		w := d.entry()
		if g := got[i]; g.Partition != w.Partition || g.Offset != w.Offset || g.Job != w.Job || g.TS != w.TS || !bytes.Equal(g.JSON, w.JSON) {
			t.Fatalf("%s: entry %d:\n got %d:%d %s %s\nwant %d:%d %s %s", what, i, g.Partition, g.Offset, g.Job, g.JSON, w.Partition, w.Offset, w.Job, w.JSON)
		}
	}
}

// short prints a long list of offsets by its ends.
func short(o []int64) string {
	if len(o) <= 8 {
		return fmt.Sprint(o)
	}
	return fmt.Sprint(o[:4]) + "…" + fmt.Sprint(o[len(o)-4:]) + " (" + strconv.Itoa(len(o)) + ")"
}
