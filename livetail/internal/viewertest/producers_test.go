package viewertest

import (
	"fmt"
	"hash/crc32"
	"net/url"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/golang-jwt/jwt/v5"

	"github.com/logpipe/logpipe/common/partition"
	"github.com/logpipe/logpipe/common/record"
	"github.com/logpipe/logpipe/devstack/stack"
)

// producers name the three ways a job's lines reach Kafka here, each the
// second word of the lines it writes: kcat with no partitioner option
// (librdkafka's default, consistent_random: CRC32 of the key), kcat with
// murmur2_random (Java's default, as the agent) and sarama's default
// partitioner (FNV-1a). For a job that spreadJob picks, each puts the
// job's lines on a partition of its own.
var producers = []string{"kcat", "kcat-murmur2", "sarama"}

// perRound is how many lines each producer writes in a round.
const perRound = 5

// writers write a job's lines with each of the producers, as records the
// agent would write, to the "logs" topic of a stack.
type writers struct {
	t       testing.TB
	brokers []string
	topic   string
	sarama  *producer
}

func newWriters(t testing.TB, s *stack.Stack) *writers {
	t.Helper()
	if _, err := exec.LookPath("kcat"); err != nil {
		t.Fatalf("kcat is not installed (make test installs it): %v", err)
	}
	return &writers{t: t, brokers: s.KafkaAddrs(), topic: s.Topic("logs"), sarama: newProducer(t, s)}
}

// round writes perRound lines of job with each producer in turn, the lines
// "<phase> <producer> <i>", and returns them in the order written. Their
// times increase, so that history, which merges a job's partitions by
// time, comes in that order.
func (w *writers) round(job, phase string) []string {
	w.t.Helper()
	var all []string
	for _, by := range producers {
		lines := numbered(phase+" "+by, 0, perRound)
		values := make([][]byte, len(lines))
		for i, l := range lines {
			time.Sleep(time.Millisecond) // distinct times
			rec := record.Record{Timestamp: time.Now(), Message: l, Job: job,
				Host: record.Host{Name: "node-k"}, Agent: record.Agent{Name: "node-k"}}
			values[i] = rec.AppendJSON(nil)
		}
		switch by {
		case "kcat":
			w.kcat(job, values)
		case "kcat-murmur2":
			w.kcat(job, values, "-X", "partitioner=murmur2_random")
		case "sarama":
			msgs := make([]*sarama.ProducerMessage, len(values))
			for i, v := range values {
				msgs[i] = &sarama.ProducerMessage{Topic: w.topic, Key: sarama.StringEncoder(job), Value: sarama.ByteEncoder(v)}
			}
			if err := w.sarama.p.SendMessages(msgs); err != nil {
				w.t.Fatalf("producing with sarama: %v", err)
			}
		}
		all = append(all, lines...)
	}
	return all
}

// kcat writes values with key job, one a line, with kcat and its options.
func (w *writers) kcat(job string, values [][]byte, opts ...string) {
	w.t.Helper()
	var in strings.Builder
	for _, v := range values {
		in.Write(v)
		in.WriteByte('\n')
	}
	args := append([]string{"-b", strings.Join(w.brokers, ","), "-t", w.topic, "-k", job, "-P"}, opts...)
	cmd := exec.Command("kcat", args...)
	cmd.Stdin = strings.NewReader(in.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		w.t.Fatalf("kcat %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// checkSpread fails unless each of the topic's n partitions holds exactly
// want records: with one job on the topic, each producer's lines are on a
// partition of their own.
func (w *writers) checkSpread(n int32, want int64) {
	w.t.Helper()
	cl, err := sarama.NewClient(w.brokers, sarama.NewConfig())
	if err != nil {
		w.t.Fatal(err)
	}
	defer cl.Close()
	var got []int64
	for p := range n {
		off, err := cl.GetOffset(w.topic, p, sarama.OffsetNewest)
		if err != nil {
			w.t.Fatalf("the end of partition %d of %s: %v", p, w.topic, err)
		}
		got = append(got, off)
	}
	for _, off := range got {
		if off != want {
			w.t.Fatalf("partitions of %s hold %v records, want %d each: the producers did not spread the job over %d partitions", w.topic, got, want, n)
		}
	}
}

// spreadJob returns a job name, prefix-i, that the three producers' default
// partitioners put on three different partitions of n.
func spreadJob(prefix string, n int32) string {
	hash := sarama.NewHashPartitioner("")
	for i := 0; ; i++ {
		job := fmt.Sprintf("%s-%d", prefix, i)
		murmur2 := partition.ForJob(job, n)
		crc := int32(crc32.ChecksumIEEE([]byte(job)) % uint32(n))
		fnv, err := hash.Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(job)}, n)
		if err == nil && murmur2 != crc && crc != fnv && fnv != murmur2 {
			return job
		}
	}
}

// mark returns a time between the lines written before it and after it,
// whether they are told apart by the records' times (microseconds) or
// Kafka's (milliseconds).
func mark() time.Time {
	time.Sleep(5 * time.Millisecond)
	m := time.Now()
	time.Sleep(5 * time.Millisecond)
	return m
}

// segment is lines the page must show next: history (merged from the
// job's partitions by time, so in the order written) or live lines (each
// producer's in the order written, the producers interleaved as their
// partitions arrive).
type segment struct {
	what    string
	lines   []string
	history bool
}

// checkSegments fails unless the page shows exactly the segments' lines,
// each once, the history in the order written and the live lines in the
// order each producer wrote them.
func checkSegments(t testing.TB, page string, got []string, segs ...segment) {
	t.Helper()
	var all []string
	for _, s := range segs {
		all = append(all, s.lines...)
	}
	if len(got) != len(all) {
		t.Fatalf("%s: the page shows %d lines, want %d:\n%s\nwant\n%s", page, len(got), len(all), strings.Join(got, "\n"), strings.Join(all, "\n"))
	}
	at := 0
	for _, s := range segs {
		part := got[at : at+len(s.lines)]
		at += len(s.lines)
		if s.history {
			if !slices.Equal(part, s.lines) {
				t.Fatalf("%s: %s: the page shows\n%s\nwant, in the order written,\n%s", page, s.what, strings.Join(part, "\n"), strings.Join(s.lines, "\n"))
			}
			continue
		}
		for _, by := range producers {
			if g, w := linesOf(by, part), linesOf(by, s.lines); !slices.Equal(g, w) {
				t.Fatalf("%s: %s: %s's lines on the page are\n%s\nwant, in the order written,\n%s", page, s.what, by, strings.Join(g, "\n"), strings.Join(w, "\n"))
			}
		}
	}
}

// linesOf returns the lines that producer by wrote.
func linesOf(by string, lines []string) []string {
	var out []string
	for _, l := range lines {
		if f := strings.Fields(l); len(f) > 1 && f[1] == by {
			out = append(out, l)
		}
	}
	return out
}

// lineTexts returns the rows' lines.
func lineTexts(rows []row) []string {
	var out []string
	for _, r := range rows {
		out = append(out, r.Line)
	}
	return out
}

// Lines of one job that kcat wrote with librdkafka's default partitioner
// (no option) and with murmur2_random, and that sarama wrote with its
// default partitioner, land on three partitions. The viewer shows every
// one once, with no gap, with tail=N and with since=, then live, and after
// livetail restarts under the page, when it resumes with its cursor=.
func TestViewerShowsEveryProducersLines(t *testing.T) {
	stack.ForBackends(t, func(t *testing.T, kind string) {
		k := newKafka(t, kind)
		w := newWriters(t, k)
		lt := startLivetail(t, k)
		browser := newBrowser(t)
		job := spreadJob("mixed", 3)

		before := w.round(job, "before")
		since := mark()
		history := w.round(job, "history")
		const tailN = 4 * perRound // all of history's round and part of before's
		tabs := []struct {
			what    string
			p       *tab
			history []string
		}{
			{fmt.Sprintf("tail=%d", tailN), openTab(t, browser, lt.URL(fmt.Sprintf("?job=%s&tail=%d", job, tailN))),
				append(slices.Clone(before[len(before)+len(history)-tailN:]), history...)},
			{"since", openTab(t, browser, lt.URL("?job="+job+"&since="+url.QueryEscape(since.UTC().Format(time.RFC3339Nano)))),
				history},
		}
		for _, pg := range tabs {
			pg.p.waitLive()
			pg.p.waitRows(len(pg.history))
		}
		live := w.round(job, "live")
		for _, pg := range tabs {
			pg.p.waitRows(len(pg.history) + len(live))
		}

		lt.stop()
		for _, pg := range tabs {
			pg.p.waitFor("reconnecting", `document.getElementById('status').dataset.state === 'reconnecting'`, liveWithin)
		}
		down := w.round(job, "down")
		lt.start()
		for _, pg := range tabs {
			pg.p.waitLive()
		}
		after := w.round(job, "restarted")
		w.checkSpread(3, 5*perRound)

		for _, pg := range tabs {
			n := len(pg.history) + len(live) + len(down) + len(after)
			pg.p.waitRows(n)
			checkSegments(t, pg.what, lineTexts(pg.p.rows()),
				segment{"history", pg.history, true},
				segment{"live lines", live, false},
				segment{"lines written while livetail was down, read by cursor", down, true},
				segment{"live lines after the restart", after, false},
			)
			socks := pg.p.sockets()
			if len(socks) < 2 {
				t.Fatalf("%s: sockets %v: want a reconnect", pg.what, socks)
			}
			for _, s := range socks[1:] {
				u, err := url.Parse(s)
				if err != nil {
					t.Fatal(err)
				}
				if q := u.Query(); q.Get("cursor") == "" || q.Has("tail") || q.Has("since") {
					t.Errorf("%s: reconnected to %s, want the cursor instead of the history asked for", pg.what, s)
				}
			}
		}
		tabs[1].p.screenshot("viewer-producers-1280-light", 1280, 800, "light")
	})
}

// When its token expires the session ends with 4401; the page asks the
// embedding page for a fresh token (window.livetailToken) and resumes with
// its cursor: no line missing, none twice.
func TestViewerRenewsExpiredToken(t *testing.T) {
	stack.ForBackends(t, func(t *testing.T, kind string) {
		// Most of the test is waiting for the token to expire.
		t.Parallel()
		testRenewsExpiredToken(t, kind)
	})
}

func testRenewsExpiredToken(t *testing.T, kind string) {
	const secret = "viewer-test-secret"
	k := newKafka(t, kind)
	lt := startLivetail(t, k, "--auth", "jwt", "--jwt-secret", secret)
	prod := newProducer(t, k)
	browser := newBrowser(t)
	token := func(d time.Duration) string {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "ann", "exp": time.Now().Add(d).Unix()}).SignedString([]byte(secret))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	// The first token expires 2 s after it is handed out (the server adds
	// its 5 s leeway); the next ones last an hour.
	provider := fmt.Sprintf(`window.__tokens = [%q, %q, %q]; window.__asked = 0;
		window.livetailToken = async () => window.__tokens[Math.min(window.__asked++, 2)];`,
		token(2*time.Second), token(time.Hour), token(time.Hour))

	const job = "secure"
	want := prod.produce(t, job, numbered("before", 0, 5)...)
	p := openTab(t, browser, lt.URL("?job="+job+"&tail=5"), provider)
	p.waitLive()
	p.waitRows(len(want))
	want = append(want, prod.produce(t, job, numbered("with the first token", 0, 5)...)...)
	p.waitRows(len(want))
	p.waitFor("a fresh token asked for at expiry", `window.__asked >= 2 && document.getElementById('status').dataset.state === 'live'`, 2*liveWithin)
	want = append(want, prod.produce(t, job, numbered("with the fresh token", 0, 5)...)...)
	p.waitRows(len(want))
	checkRows(t, p.rows(), want)

	socks := p.sockets()
	if len(socks) != 3 {
		t.Fatalf("sockets %v, want 3 (no token, the first, the fresh one)", socks)
	}
	u, err := url.Parse(socks[2])
	if err != nil {
		t.Fatal(err)
	}
	if !u.Query().Has("cursor") || u.Query().Has("tail") {
		t.Errorf("resumed with %s, want the cursor", socks[2])
	}
	if states := eval[[]string](p, `window.__states`); !inOrder(states, "live", "reconnecting", "live") {
		t.Errorf("states %v", states)
	}
}

// A regular expression from a shared link that would backtrack for ages in
// JavaScript runs on the server (RE2) instead: the tab stays responsive and
// shows the matching lines.
func TestViewerLinkRegexCannotFreeze(t *testing.T) {
	k := newKafka(t, stack.Embedded)
	lt := startLivetail(t, k)
	prod := newProducer(t, k)
	browser := newBrowser(t)
	const job = "evil"
	evil := strings.Repeat("a", 40) + "!"
	out := prod.produce(t, job, evil, "baaa", evil, "caaaa")

	p := openTab(t, browser, lt.URL("?job="+job+"&tail=10&filter="+url.QueryEscape("(a+)+$")+"&regex=1"))
	p.waitLive()
	p.waitRows(2)
	checkRows(t, p.rows(), []sent{out[1], out[3]})
	socks := p.sockets()
	u, err := url.Parse(socks[0])
	if err != nil {
		t.Fatal(err)
	}
	if g := u.Query().Get("grep"); g != "(?i)(a+)+$" {
		t.Errorf("grep %q, want the link's regular expression", g)
	}
	if note := eval[string](p, `document.getElementById('filter-error').textContent`); !strings.Contains(note, "on the server") {
		t.Errorf("note %q", note)
	}

	// A highlight is not sent to the server: from such a link it is
	// matched as plain text, and every line shows.
	h := openTab(t, browser, lt.URL("?job="+job+"&tail=10&hl="+url.QueryEscape("(a+)+$")+"&regex=1"))
	h.waitLive()
	h.waitRows(len(out))
	checkRows(t, h.rows(), out)
	if eval[bool](h, `document.getElementById('regex').checked || document.querySelectorAll('#log mark').length > 0`) {
		t.Errorf("the link's highlight was run as a regular expression")
	}
	if note := eval[string](h, `document.getElementById('filter-error').textContent`); !strings.Contains(note, "highlight from the link is matched as plain text") {
		t.Errorf("note %q", note)
	}
}
