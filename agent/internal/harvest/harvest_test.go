package harvest

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/logpipe/logpipe/agent/internal/producer"
	"github.com/logpipe/logpipe/agent/internal/registry"
	"github.com/logpipe/logpipe/agent/internal/testkit"
	"github.com/logpipe/logpipe/common/collect"
	"github.com/logpipe/logpipe/common/record"
	"github.com/logpipe/logpipe/devstack/stack"
)

const waitLimit = time.Minute // generous, for a loaded machine

type env struct {
	t        testing.TB
	stack    *stack.Stack
	brokers  []string
	dir      string
	stateDir string
	kafka    *testkit.Reader
	opts     Options
	mgr      *Manager
	prod     *producer.Producer
	reg      *registry.Registry
	pcfg     func(*producer.Config) // changes the producer's defaults, at the next start
	stop     func()
}

func newEnv(t testing.TB) *env {
	t.Helper()
	s := stack.New(t, stack.Options{Without: []string{stack.Etcd, stack.ES}})
	e := &env{t: t, stack: s, brokers: s.KafkaAddrs(), dir: t.TempDir(), stateDir: t.TempDir()}
	e.kafka = testkit.NewReader(t, e.brokers, "logs")
	e.opts = DefaultOptions()
	e.opts.AgentName, e.opts.HostName = "test-agent", "test-host"
	e.opts.ScanInterval = 100 * time.Millisecond
	e.opts.PollMax = 50 * time.Millisecond
	e.opts.RotatedIdle = 500 * time.Millisecond
	e.opts.MultilineFlush = 200 * time.Millisecond
	e.opts.Metrics = NewMetrics(prometheus.NewRegistry())
	if os.Getenv("AGENT_TEST_LOG") != "" {
		l := logrus.New()
		l.SetLevel(logrus.DebugLevel)
		e.opts.Log = l
	}
	e.start()
	t.Cleanup(func() { e.stop() })
	return e
}

// start runs a Manager on the state directory.
func (e *env) start() {
	e.t.Helper()
	reg, err := registry.Open(e.stateDir)
	if err != nil {
		e.t.Fatal(err)
	}
	pcfg := producer.DefaultConfig()
	pcfg.Brokers = e.brokers
	if e.pcfg != nil {
		e.pcfg(&pcfg)
	}
	p, err := producer.New(pcfg)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.opts.Metrics = NewMetrics(prometheus.NewRegistry())
	e.mgr = New(ctx, e.opts, p, reg)
	e.prod, e.reg = p, reg
	stopped := false
	e.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		e.mgr.Wait()
		if err := p.Close(10 * time.Second); err != nil {
			e.t.Error(err)
		}
		if err := reg.Save(); err != nil {
			e.t.Error(err)
		}
	}
}

func (e *env) path(name string) string { return filepath.Join(e.dir, name) }

// waitRead waits until the agent has acknowledged every byte of path.
func (e *env) waitRead(path string) {
	e.t.Helper()
	deadline := time.Now().Add(waitLimit)
	for time.Now().Before(deadline) {
		fi, err := os.Stat(path)
		if err == nil {
			for _, f := range e.mgr.Files() {
				if f.Path == path && f.Inode == uint64(inode(fi)) && f.Offset == fi.Size() {
					return
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.t.Fatalf("%s not read to its end: %+v", path, e.mgr.Files())
}

func inode(fi os.FileInfo) uint64 { return identityOf(fi).Ino }

// waitLines waits until tag's lines [0, n) arrived and checks their order.
func (e *env) waitLines(tag string, n int) int {
	e.t.Helper()
	recs := e.kafka.WaitFor(waitLimit, tag, func(recs []testkit.Record) bool {
		_, distinct := testkit.Count(recs, tag)
		return distinct >= n
	})
	dups, err := testkit.Check(recs, tag, n)
	if err != nil {
		e.t.Fatal(err)
	}
	return dups
}

func entry(path string, mod ...func(*collect.Entry)) collect.Entry {
	e := collect.Entry{Path: path, From: collect.FromBeginning}
	for _, f := range mod {
		f(&e)
	}
	return e
}

func TestRecordFields(t *testing.T) {
	e := newEnv(t)
	path := e.path("web-1.log")
	testkit.Append(t, path, "first line")
	e.mgr.Apply(collect.Config{entry(path, func(c *collect.Entry) { c.Labels = map[string]string{"env": "dev"} })})
	recs := e.kafka.WaitFor(waitLimit, "first line", func(r []testkit.Record) bool { return len(r) > 0 })
	r := recs[0]
	if r.Key != "web-1" || r.Rec.Job != "web-1" || r.Rec.Message != "first line" || r.Rec.Log.File.Path != path ||
		r.Rec.Log.Offset != 0 || r.Rec.Host.Name != "test-host" || r.Rec.Agent.Name != "test-agent" || r.Rec.Labels["env"] != "dev" ||
		len(r.Rec.Log.Flags) != 0 || time.Since(r.Rec.Timestamp) > time.Minute {
		t.Fatalf("record %+v key %q", r.Rec, r.Key)
	}
}

func TestFromEndAndBeginning(t *testing.T) {
	e := newEnv(t)
	endPath, begPath := e.path("end.log"), e.path("beg.log")
	testkit.Append(t, endPath, testkit.Numbered("old", 0, 5, 0)...)
	appendRaw(t, endPath, "partial line being writ") // no newline yet
	testkit.Append(t, begPath, testkit.Numbered("beg", 0, 5, 0)...)
	e.mgr.Apply(collect.Config{
		entry(endPath, func(c *collect.Entry) { c.From = collect.FromEnd }),
		entry(begPath),
	})
	e.waitLines("beg", 5)
	// The end file's start is fixed once it is among the files read; what
	// is appended before that would be skipped as old.
	deadline := time.Now().Add(waitLimit)
	for !slices.ContainsFunc(e.mgr.Files(), func(f FileStatus) bool { return f.Path == endPath }) {
		if time.Now().After(deadline) {
			t.Fatalf("%s not opened within %v: %+v", endPath, waitLimit, e.mgr.Files())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The end entry starts after the last complete line: the line being
	// written when the agent started is sent whole.
	appendRaw(t, endPath, "ten\n")
	testkit.Append(t, endPath, testkit.Numbered("new", 0, 3, 0)...)
	e.waitLines("new", 3)
	recs := e.kafka.ForPath(endPath)
	if total, _ := testkit.Count(recs, "old"); total != 0 {
		t.Fatalf("%d old lines sent from an entry starting at the end", total)
	}
	if len(recs) != 4 || recs[0].Rec.Message != "partial line being written" || recs[0].Rec.Log.Offset != 30 {
		t.Fatalf("first record %+v of %d", recs[0].Rec, len(recs))
	}
}

func appendRaw(t testing.TB, path, data string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(data); err != nil {
		t.Fatal(err)
	}
}

func TestRotationByRename(t *testing.T) {
	e := newEnv(t)
	path := e.path("app.log")
	testkit.Append(t, path, testkit.Numbered("rot", 0, 1000, 100)...)
	e.mgr.Apply(collect.Config{entry(path)})
	e.waitRead(path)
	// Written right before the rename, possibly not read yet.
	testkit.Append(t, path, testkit.Numbered("rot", 1000, 3000, 100)...)
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	testkit.Append(t, path+".1", testkit.Numbered("rot", 3000, 3100, 100)...) // late write to the old file
	appendRaw(t, path+".1", testkit.Line("rot", 3100, 100))                   // and a last line without a newline
	testkit.Append(t, path, testkit.Numbered("rot2", 0, 500, 100)...)
	e.waitLines("rot2", 500)
	if dups := e.waitLines("rot", 3101); dups != 0 {
		t.Fatalf("%d duplicates", dups)
	}
}

func TestCopyTruncate(t *testing.T) {
	e := newEnv(t)
	path := e.path("ct.log")
	testkit.Append(t, path, testkit.Numbered("ct", 0, 2000, 80)...)
	e.mgr.Apply(collect.Config{entry(path)})
	e.waitRead(path)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".1", data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	testkit.Append(t, path, testkit.Numbered("ct2", 0, 10, 80)...)
	e.waitLines("ct2", 10)
	if dups := e.waitLines("ct", 2000); dups != 0 {
		t.Fatalf("%d duplicates", dups)
	}
}

func TestTruncateAndRewriteLonger(t *testing.T) {
	e := newEnv(t)
	path := e.path("tr.log")
	testkit.Append(t, path, testkit.Numbered("tr", 0, 10, 20)...)
	e.mgr.Apply(collect.Config{entry(path)})
	e.waitRead(path)
	// Truncate and at once write more than there was: the size never
	// looks smaller, only the fingerprint tells.
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(strings.Join(testkit.Numbered("tr2", 0, 100, 40), "\n") + "\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	e.waitLines("tr2", 100)
	e.waitLines("tr", 10)
}

func TestDeleteAndRecreate(t *testing.T) {
	e := newEnv(t)
	path := e.path("del.log")
	testkit.Append(t, path, "start")
	e.mgr.Apply(collect.Config{entry(path)})
	e.waitRead(path)
	testkit.Append(t, path, testkit.Numbered("del", 0, 2000, 100)...)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	testkit.Append(t, path, testkit.Numbered("del2", 0, 100, 100)...)
	e.waitLines("del", 2000)
	e.waitLines("del2", 100)
}

func TestLongLineAndInvalidUTF8(t *testing.T) {
	e := newEnv(t)
	e.stop()
	e.opts.MaxLineBytes = 1000
	e.start()
	path := e.path("odd.log")
	long := "long " + strings.Repeat("é", 3000)
	testkit.Append(t, path, "before", long, "bad \xff\xfe bytes", "after")
	e.mgr.Apply(collect.Config{entry(path)})
	recs := e.kafka.WaitFor(waitLimit, "4 records", func(r []testkit.Record) bool { return len(r) >= 4 })
	msgs := []string{}
	for _, r := range recs {
		msgs = append(msgs, r.Rec.Message)
	}
	if msgs[0] != "before" || msgs[3] != "after" {
		t.Fatalf("messages %q", msgs)
	}
	if m := recs[1].Rec; !m.HasFlag(record.FlagTruncated) || len(m.Message) > 1000 || !strings.HasPrefix(m.Message, "long éé") || m.Log.Offset != 7 {
		t.Fatalf("long line: %d bytes, flags %v, offset %d", len(m.Message), m.Log.Flags, m.Log.Offset)
	}
	if m := recs[2].Rec.Message; m != "bad \ufffd\ufffd bytes" {
		t.Fatalf("invalid UTF-8 became %q", m)
	}
	if recs[3].Rec.Log.Offset != int64(7+len(long)+1+len("bad \xff\xfe bytes")+1) {
		t.Fatalf("offset after the long line %d", recs[3].Rec.Log.Offset)
	}
}

func TestMultilineJavaTrace(t *testing.T) {
	e := newEnv(t)
	path := e.path("java.log")
	e.mgr.Apply(collect.Config{entry(path, func(c *collect.Entry) {
		c.Multiline = &collect.Multiline{Pattern: `^\d{4}-`, Negate: true}
	})})
	time.Sleep(200 * time.Millisecond)
	testkit.Append(t, path,
		"2026-11-21 ERROR boom",
		"java.lang.RuntimeException: x",
		"\tat a.B.c(B.java:1)",
		"2026-11-21 INFO ok",
	)
	recs := e.kafka.WaitFor(waitLimit, "2 events", func(r []testkit.Record) bool { return len(r) >= 2 })
	if m := recs[0].Rec; m.Message != "2026-11-21 ERROR boom\njava.lang.RuntimeException: x\n\tat a.B.c(B.java:1)" || !m.HasFlag(record.FlagMultiline) {
		t.Fatalf("event %q flags %v", m.Message, m.Log.Flags)
	}
	if m := recs[1].Rec; m.Message != "2026-11-21 INFO ok" || len(m.Log.Flags) != 0 {
		t.Fatalf("second event %q flags %v (sent after the flush timeout)", m.Message, m.Log.Flags)
	}
}

func TestGlobPicksUpNewFiles(t *testing.T) {
	e := newEnv(t)
	e.mgr.Apply(collect.Config{entry(e.path("*.log"))})
	for i := range 3 {
		p := e.path(string(rune('a'+i)) + ".log")
		testkit.Append(t, p, testkit.Numbered("g"+string(rune('a'+i)), 0, 50, 0)...)
		time.Sleep(150 * time.Millisecond)
	}
	for i := range 3 {
		e.waitLines("g"+string(rune('a'+i)), 50)
	}
	recs := e.kafka.Records()
	for _, r := range recs {
		if want := strings.TrimSuffix(filepath.Base(r.Rec.Log.File.Path), ".log"); r.Key != want {
			t.Fatalf("key %q for %s", r.Key, r.Rec.Log.File.Path)
		}
	}
}

func TestApplyReconcilesByDifference(t *testing.T) {
	e := newEnv(t)
	a, b, c := e.path("a.log"), e.path("b.log"), e.path("c.log")
	testkit.Append(t, a, testkit.Numbered("a", 0, 100, 0)...)
	testkit.Append(t, b, testkit.Numbered("b", 0, 100, 0)...)
	testkit.Append(t, c, testkit.Numbered("c", 0, 100, 0)...)
	e.mgr.Apply(collect.Config{entry(a), entry(b)})
	e.waitLines("a", 100)
	e.waitLines("b", 100)
	e.waitRead(b)

	e.mgr.Apply(collect.Config{entry(b), entry(c)})
	testkit.Append(t, a, testkit.Numbered("a", 100, 200, 0)...)
	testkit.Append(t, b, testkit.Numbered("b", 100, 200, 0)...)
	e.waitLines("c", 100)
	if dups := e.waitLines("b", 200); dups != 0 {
		t.Fatalf("unchanged entry repeated %d lines", dups)
	}
	time.Sleep(300 * time.Millisecond)
	if total, _ := testkit.Count(e.kafka.Records(), "a"); total != 100 {
		t.Fatalf("removed entry sent %d lines, want 100", total)
	}

	// A changed entry restarts from its offset: no loss, no repeat.
	e.waitRead(b)
	e.mgr.Apply(collect.Config{entry(b, func(x *collect.Entry) { x.Job = "bee" }), entry(c)})
	testkit.Append(t, b, testkit.Numbered("b", 200, 250, 0)...)
	if dups := e.waitLines("b", 250); dups != 0 {
		t.Fatalf("changed entry repeated %d lines", dups)
	}
	last := e.kafka.ForPath(b)
	if r := last[len(last)-1]; r.Key != "bee" {
		t.Fatalf("changed entry key %q", r.Key)
	}
}

func TestRestartResumes(t *testing.T) {
	e := newEnv(t)
	path := e.path("r.log")
	testkit.Append(t, path, testkit.Numbered("r", 0, 500, 50)...)
	e.mgr.Apply(collect.Config{entry(path)})
	e.waitLines("r", 500)
	e.waitRead(path)
	e.stop()
	testkit.Append(t, path, testkit.Numbered("r", 500, 1000, 50)...)
	e.start()
	e.mgr.Apply(collect.Config{entry(path, func(c *collect.Entry) { c.From = collect.FromEnd })})
	if dups := e.waitLines("r", 1000); dups != 0 {
		t.Fatalf("%d duplicates after a clean restart", dups)
	}
}
