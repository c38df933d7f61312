package viewertest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"

	"github.com/logpipe/logpipe/common/record"
	"github.com/logpipe/logpipe/devstack/proc"
	"github.com/logpipe/logpipe/devstack/stack"
)

// ---- several jobs, highlight, rates ----

// jobLine is a line of a stream of several jobs, as produced or as shown.
type jobLine struct {
	Job, Line string
}

// twoJobs returns two job names that sarama's default partitioner puts on
// different partitions of n, so that their stream merges two partitions.
func twoJobs(prefix string, n int32) (string, string) {
	hash := sarama.NewHashPartitioner("")
	part := func(job string) int32 {
		p, _ := hash.Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(job)}, n)
		return p
	}
	a := prefix + "-a"
	for i := 0; ; i++ {
		b := fmt.Sprintf("%s-b%d", prefix, i)
		if part(a) != part(b) {
			return a, b
		}
	}
}

// interleave produces n lines of each job, one job's line then the
// other's, and returns them in the order written.
func interleave(t testing.TB, p *producer, phase string, n int, jobs ...string) []jobLine {
	t.Helper()
	var out []jobLine
	for i := range n {
		for _, job := range jobs {
			l := fmt.Sprintf("%s %s %d", phase, job, i)
			if i%3 == 1 {
				l += " error: upstream timeout"
			}
			p.produce(t, job, l)
			out = append(out, jobLine{job, l})
		}
	}
	return out
}

// jobRows is the page's lines with their jobs, in page order.
func (p *tab) jobRows() []jobLine {
	p.t.Helper()
	return eval[[]jobLine](p, `[...document.querySelectorAll('#log .row[data-offset]')].map(r => ({
		Job: r.dataset.job, Line: r.querySelector('.msg').textContent }))`)
}

// ofJob returns the lines of job, in order.
func ofJob(lines []jobLine, job string) []string {
	var out []string
	for _, l := range lines {
		if l.Job == job {
			out = append(out, l.Line)
		}
	}
	return out
}

// checkPerJob fails unless the page shows exactly want's lines of each
// job, in the order written: none missing, none twice.
func checkPerJob(t testing.TB, got, want []jobLine, jobs ...string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("the page shows %d lines, want %d", len(got), len(want))
	}
	for _, job := range jobs {
		if g, w := ofJob(got, job), ofJob(want, job); !slices.Equal(g, w) {
			t.Fatalf("job %s: the page shows\n%s\nwant, in the order written,\n%s", job, strings.Join(g, "\n"), strings.Join(w, "\n"))
		}
	}
}

// writeCatalogue writes the jobs catalogue record transfer would write for
// job: seen now on partition part of the stack's log topic, at lpm lines a
// minute, to a catalogue topic it creates.
func writeCatalogue(t testing.TB, s *stack.Stack, topic, job string, part int32, lpm float64) {
	t.Helper()
	admin, err := sarama.NewClusterAdmin(s.KafkaAddrs(), sarama.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1}, false); err != nil && !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("creating the catalogue topic: %v", err)
	}
	p := newProducer(t, s)
	value := fmt.Sprintf(`{"job":%q,"topic":%q,"partition":%d,"last_seen":%q,"lines_per_min":%g,"lines":10}`,
		job, s.Topic("logs"), part, time.Now().UTC().Format(time.RFC3339Nano), lpm)
	key := fmt.Sprintf("%s:%d:%s", s.Topic("logs"), part, job)
	if _, _, err := p.p.SendMessage(&sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(key), Value: sarama.StringEncoder(value)}); err != nil {
		t.Fatalf("writing the catalogue: %v", err)
	}
}

// Two jobs on two partitions in one stream: each line tagged with its job,
// history merged by time, every line of each job once and in order, also
// across a livetail restart under the page (resumed by one cursor). The
// link's highlight marks the matches and hides nothing; a click on a tag
// shows that job alone; the header counts the live lines; the jobs list
// shows a job's rate from the catalogue and picks several jobs.
func TestViewerSeveralJobs(t *testing.T) {
	stack.ForBackends(t, func(t *testing.T, kind string) {
		k := newKafka(t, kind)
		jobsTopic := k.Topic("logs.jobs")
		a, b := twoJobs("merged", 3)
		prod := newProducer(t, k)
		writeCatalogue(t, k, jobsTopic, a, partitionOf(t, prod, a), 42)
		lt := startLivetail(t, k, "--jobs-topic", jobsTopic)
		browser := newBrowser(t)

		want := interleave(t, prod, "history", 5, a, b)
		p := openTab(t, browser, lt.URL("?job="+a+"&job="+b+"&tail=100&hl=timeout"))
		p.waitLive()
		p.waitRows(len(want))
		if got := p.jobRows(); !slices.Equal(got, want) {
			t.Fatalf("history: the page shows %v, want both jobs' lines merged by time, %v", got, want)
		}
		live := interleave(t, prod, "live", 5, a, b)
		want = append(want, live...)
		p.waitRows(len(want))
		checkPerJob(t, p.jobRows(), want, a, b)

		t.Run("rate", func(t *testing.T) {
			p := p.in(t)
			// The live lines, and not the history, are in the last 60 s of
			// the sparkline.
			p.waitFor(fmt.Sprintf("%d live lines counted", len(live)), fmt.Sprintf(`document.getElementById('rate').dataset.total === '%d'`, len(live)), liveWithin)
			if pts := eval[string](p, `document.querySelector('#spark polyline').getAttribute('points')`); len(strings.Fields(pts)) != 60 {
				t.Errorf("sparkline points %q, want 60", pts)
			}
		})

		t.Run("highlight", func(t *testing.T) {
			p := p.in(t)
			p.waitFor("highlight applied", `document.querySelectorAll('#log .row.lit').length > 0`, liveWithin)
			checkHighlight(t, p, regexp.MustCompile(`timeout`))
		})

		t.Run("job tag", func(t *testing.T) {
			p := p.in(t)
			p.do(chromedp.Click(chromedp.CSS(`#log .row[data-job="` + b + `"] .job`)))
			p.waitFor("only "+b, `new URLSearchParams(location.search).get('only') === '`+b+`'`, liveWithin)
			for _, r := range p.rowsWithJob() {
				if r.Hidden != (r.Job != b) {
					t.Fatalf("with only %s: a line of %s hidden=%v", b, r.Job, r.Hidden)
				}
			}
			if hue := eval[[]string](p, `['`+a+`','`+b+`'].map(j => getComputedStyle(document.querySelector('#log .row[data-job="'+j+'"] .job')).backgroundColor)`); hue[0] == hue[1] {
				t.Errorf("both jobs' tags are %s, want a colour each", hue[0])
			}
			p.screenshot("viewer-jobs-only-1280-light", 1280, 800, "light")
			p.do(chromedp.Click(chromedp.CSS(`#only`)))
			p.waitFor("every job again", `document.querySelectorAll('#log .row[hidden]').length === 0 && !new URLSearchParams(location.search).has('only')`, liveWithin)
			p.screenshot("viewer-jobs-1280-light", 1280, 800, "light")
			p.screenshot("viewer-jobs-1280-dark", 1280, 800, "dark")
			p.do(chromedp.EmulateViewport(1280, 800))
		})

		t.Run("resume", func(t *testing.T) {
			p := p.in(t)
			lt.stop()
			p.waitFor("reconnecting", `document.getElementById('status').dataset.state === 'reconnecting'`, liveWithin)
			want = append(want, interleave(t, prod, "down", 5, a, b)...)
			lt.start()
			p.waitLive()
			want = append(want, interleave(t, prod, "after", 5, a, b)...)
			p.waitRows(len(want))
			checkPerJob(t, p.jobRows(), want, a, b)
			socks := p.sockets()
			if len(socks) < 2 {
				t.Fatalf("sockets %v: want a reconnect", socks)
			}
			for _, s := range socks[1:] {
				if !strings.Contains(s, "job="+a+"&job="+b) || !strings.Contains(s, "cursor=") || strings.Contains(s, "tail=") {
					t.Errorf("reconnected to %s, want both jobs and a cursor instead of tail", s)
				}
			}
		})

		t.Run("jobs list", func(t *testing.T) {
			p := openTab(t, browser, lt.URL(""))
			p.waitFor("the catalogue's rate of "+a, `document.querySelector('#job-list li[data-job="`+a+`"] .lpm')?.textContent === '42/min'`, liveWithin)
			p.waitFor(b+" listed", `!!document.querySelector('#job-list li[data-job="`+b+`"]')`, liveWithin)
			p.screenshot("viewer-jobs-list-1280-light", 1280, 800, "light")
			p.do(chromedp.EmulateViewport(1280, 800))
			p.do(
				chromedp.Click(chromedp.CSS(`#job-list li[data-job="`+a+`"] input`)),
				chromedp.Click(chromedp.CSS(`#job-list li[data-job="`+b+`"] input`)),
				chromedp.Click(chromedp.CSS(`#connect-btn`)),
			)
			p.waitLive()
			if s := p.sockets(); len(s) != 1 || !strings.Contains(s[0], "job="+a+"&job="+b) {
				t.Errorf("picking %s and %s connected to %v", a, b, s)
			}
			if got := eval[[]string](p, `new URLSearchParams(location.search).getAll('job')`); !slices.Equal(got, []string{a, b}) {
				t.Errorf("jobs in the address %v, want [%s %s]", got, a, b)
			}
		})
	})
}

// jobRow is a line on the page with its job and whether it shows.
type jobRow struct {
	Job    string
	Hidden bool
}

func (p *tab) rowsWithJob() []jobRow {
	p.t.Helper()
	return eval[[]jobRow](p, `[...document.querySelectorAll('#log .row[data-offset]')].map(r => ({ Job: r.dataset.job, Hidden: r.hidden }))`)
}

// checkHighlight fails unless every line shows, the lines matching re are
// marked as highlighted with exactly re's matches, and no other line is.
func checkHighlight(t testing.TB, p *tab, re *regexp.Regexp) {
	t.Helper()
	type lit struct {
		Line   string
		Hidden bool
		Lit    bool
		Marks  []string
	}
	rows := eval[[]lit](p, `[...document.querySelectorAll('#log .row[data-offset]')].map(r => ({
		Line: r.querySelector('.msg').textContent, Hidden: r.hidden, Lit: r.classList.contains('lit'),
		Marks: [...r.querySelectorAll('.msg mark.hl')].map(m => m.textContent) }))`)
	n := 0
	for _, r := range rows {
		match := re.FindAllString(r.Line, -1)
		switch {
		case r.Hidden:
			t.Errorf("%q is hidden: a highlight hides nothing", r.Line)
		case (len(match) > 0) != r.Lit:
			t.Errorf("%q: highlighted %v, want %v", r.Line, r.Lit, len(match) > 0)
		case strings.Join(r.Marks, "|") != strings.Join(match, "|"):
			t.Errorf("%q: marked %q, want %q", r.Line, r.Marks, match)
		}
		if len(match) > 0 {
			n++
		}
	}
	if n == 0 || n == len(rows) {
		t.Fatalf("the highlight %s matches %d of %d lines: a useless test", re, n, len(rows))
	}
}

// ---- load earlier ----

// deleteBelow removes the records of the topic's partitions below the
// offsets, as retention does.
func deleteBelow(t testing.TB, s *stack.Stack, offsets map[int32]int64) {
	t.Helper()
	admin, err := sarama.NewClusterAdmin(s.KafkaAddrs(), sarama.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := admin.DeleteRecords(s.Topic("logs"), offsets); err != nil {
		t.Fatalf("deleting records: %v", err)
	}
}

// "Load earlier" pages back from the lines a page opened with, exactly
// (none missing, none twice), down to where Kafka's retention ends, which
// it says, with history_from; past it there is nothing to load without an
// archive.
func TestViewerLoadEarlier(t *testing.T) {
	stack.ForBackends(t, func(t *testing.T, kind string) {
		k := newKafka(t, kind)
		lt := startLivetail(t, k)
		prod := newProducer(t, k)
		browser := newBrowser(t)

		const job = "paged"
		all := prod.produce(t, job, numbered("an older line", 0, 520)...)
		// Retention removed the first 70 of them.
		const gone = 70
		deleteBelow(t, k, map[int32]int64{partitionOf(t, prod, job): all[gone].Offset})
		want := all[gone:]

		p := openTab(t, browser, lt.URL("?job="+job+"&tail=30"))
		p.waitLive()
		p.waitRows(30)
		pages := loadAllEarlier(t, p)
		checkRows(t, p.rows(), want)
		top := eval[string](p, `document.querySelector('#log .marker')?.textContent ?? ''`)
		if !regexp.MustCompile(`^Kafka's retention ends here \(\d{4}-\d\d-\d\dT[^)]+\)`).MatchString(top) {
			t.Errorf("the top of the page says %q, want where Kafka's retention ends, with its time", top)
		}
		t.Logf("%d lines loaded in %d pages down to the retention stop", len(want)-30, pages)
		p.wheelUp()
		p.screenshot("viewer-retention-1280-light", 1280, 800, "light")
	})
}

// partitionOf is the partition p's records of job went to.
func partitionOf(t testing.TB, p *producer, job string) int32 {
	t.Helper()
	part, err := sarama.NewHashPartitioner(p.topic).Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(job)}, 3)
	if err != nil {
		t.Fatal(err)
	}
	return part
}

// ---- a line's context ----

// fileRecord is a line of a source file at pos, as the agent reads it.
func fileRecord(job, name string, pos int64, line string) record.Record {
	return record.Record{
		Timestamp: time.Now(),
		Message:   line,
		Job:       job,
		Host:      record.Host{Name: "node-c"},
		Agent:     record.Agent{Name: "node-c"},
		Log: record.Log{Offset: pos, File: record.File{Path: "/var/log/" + name + ".log", DeviceID: "2049",
			Inode: fmt.Sprint(1000 + len(name)), Fingerprint: fmt.Sprintf("%016x", len(name)), Generation: fmt.Sprintf("%016x", 7+len(name))}},
	}
}

// produceRecords writes records as they are.
func (p *producer) produceRecords(t testing.TB, recs ...record.Record) {
	t.Helper()
	msgs := make([]*sarama.ProducerMessage, len(recs))
	for i, r := range recs {
		msgs[i] = &sarama.ProducerMessage{Topic: p.topic, Key: sarama.StringEncoder(r.Job), Value: sarama.ByteEncoder(r.AppendJSON(nil)), Timestamp: r.Timestamp}
	}
	if err := p.p.SendMessages(msgs); err != nil {
		t.Fatalf("producing: %v", err)
	}
}

// A line found with grep opens its context: the 50 lines before and after
// it in its own file, in file order, though grep and another file's lines
// interleaved in Kafka hide them from the stream. With --kibana-url, the
// line links to Kibana's Discover at its moment, for its job, with the line
// identified.
func TestViewerContext(t *testing.T) {
	stack.ForBackends(t, func(t *testing.T, kind string) {
		k := newKafka(t, kind)
		const kibana = "https://kibana.example.com:5601/logs"
		lt := startLivetail(t, k, "--kibana-url", kibana)
		prod := newProducer(t, k)
		browser := newBrowser(t)

		const job = "ctx"
		var app []string
		var recs []record.Record
		for i := range 200 {
			l := fmt.Sprintf("app line %d", i)
			if i == 120 {
				l = "app line 120 NEEDLE"
			}
			app = append(app, l)
			recs = append(recs, fileRecord(job, "app", int64(i*50), l))
			recs = append(recs, fileRecord(job, "other", int64(i*30), fmt.Sprintf("other file line %d", i)))
		}
		prod.produceRecords(t, recs...)

		p := openTab(t, browser, lt.URL("?job="+job+"&tail=1000&grep=NEEDLE"))
		p.waitLive()
		p.waitRows(1)
		box := eval[[]float64](p, `(() => { const r = document.querySelector('#log .row').getBoundingClientRect(); return [r.x + 200, r.y + 5]; })()`)
		p.do(chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, box[0], box[1]), chromedp.Click(chromedp.CSS(`#log .row [data-act="context"]`)))
		p.waitFor("the context", `document.querySelectorAll('#context-lines li').length > 1`, liveWithin)
		type ctxLine struct {
			Line string
			Self bool
		}
		got := eval[[]ctxLine](p, `[...document.querySelectorAll('#context-lines li')].map(l => ({ Line: l.querySelector('.msg').textContent, Self: l.classList.contains('self') }))`)
		var lines []string
		self := -1
		for i, l := range got {
			lines = append(lines, l.Line)
			if l.Self {
				self = i
			}
		}
		if want := app[70:171]; !slices.Equal(lines, want) {
			t.Errorf("the context shows\n%s\nwant the 50 lines before and after in file order\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
		}
		if self != 50 {
			t.Errorf("the line itself is marked at %d, want 50", self)
		}
		t.Logf("context: %s", eval[string](p, `document.getElementById('context-from').textContent`))
		p.screenshot("viewer-context-1280-light", 1280, 800, "light")
		p.do(chromedp.EmulateViewport(1280, 800), chromedp.Click(chromedp.CSS(`#context-close`)))

		line := eval[struct {
			Partition, Offset int64
			TS, Href          string
		}](p, `(() => { const r = document.querySelector('#log .row'); const k = r.querySelector('[data-act="kibana"]');
			return { Partition: Number(r.dataset.partition), Offset: Number(r.dataset.offset), TS: r.querySelector('.ts').dateTime, Href: k.hidden ? '' : k.href }; })()`)
		checkKibanaLink(t, line.Href, kibana, job, line.Partition, line.Offset, line.TS)
	})
}

// checkKibanaLink fails unless href opens Kibana's Discover under base for
// the minute each way around ts, with the query job:"<job>" and disabled
// filters on the line's kafka.partition and kafka.offset.
func checkKibanaLink(t testing.TB, href, base, job string, partition, offset int64, ts string) {
	t.Helper()
	prefix := base + "/app/discover#/?"
	if !strings.HasPrefix(href, prefix) {
		t.Fatalf("Kibana link %q, want it under %s", href, prefix)
	}
	q, err := url.ParseQuery(strings.TrimPrefix(href, prefix))
	if err != nil {
		t.Fatalf("Kibana link %q: %v", href, err)
	}
	at, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		t.Fatal(err)
	}
	iso := func(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }
	wantG := fmt.Sprintf("(time:(from:'%s',to:'%s'))", iso(at.Add(-time.Minute)), iso(at.Add(time.Minute)))
	filter := func(key string, v int64) string {
		return fmt.Sprintf("(meta:(disabled:!t,key:%s,negate:!f,params:(query:%d),type:phrase),query:(match_phrase:(%s:%d)))", key, v, key, v)
	}
	wantA := fmt.Sprintf(`(filters:!(%s,%s),query:(language:kuery,query:'job:"%s"'))`, filter("kafka.partition", partition), filter("kafka.offset", offset), job)
	if g := q.Get("_g"); g != wantG {
		t.Errorf("Kibana link's _g %s, want %s", g, wantG)
	}
	if a := q.Get("_a"); a != wantA {
		t.Errorf("Kibana link's _a %s, want %s", a, wantA)
	}
}

// ---- load earlier past Kafka's retention, from the index ----

// esPost posts body to url of the search engine: an answer other than 2xx
// is an error.
func esPost(url, body string) ([]byte, error) {
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("POST %s: %s %s", url, resp.Status, b)
	}
	return b, nil
}

// With an archive, "load earlier" goes on past Kafka's retention: the
// lines Kafka no longer holds come from the index, joined to Kafka's with
// none missing and none twice, down to the start of the stream. The index
// is OpenSearch's (esfake has no search_after): real backends only, as the
// archive's own tests.
func TestViewerLoadEarlierFromArchive(t *testing.T) {
	s := stack.New(t, stack.Options{Backends: stack.Real, Without: []string{stack.Etcd}})
	topic, dlq, esIndex := s.Topic("logs"), s.Topic("logs.dlq"), s.Index("logs-logpipe-viewer")
	prod := newProducer(t, s)
	const job, old, fresh = "archived", 300, 40
	hourAgo := time.Now().Add(-time.Hour)
	lines := func(first, n int, at time.Time) []record.Record {
		var out []record.Record
		for i := first; i < first+n; i++ {
			r := fileRecord(job, "archived", int64(i)*20, fmt.Sprintf("archived line %04d", i))
			r.Timestamp = at.Add(time.Duration(i) * time.Millisecond)
			out = append(out, r)
		}
		return out
	}
	prod.produceRecords(t, lines(0, old, hourAgo)...)
	part := partitionOf(t, prod, job)

	transfer := proc.Start(t, proc.Build(t, "github.com/logpipe/logpipe/transfer"), "--kafka-brokers", s.KafkaAddrs()[0],
		"--kafka-topics", topic, "--dlq-topic", dlq, "--group", s.Topic("logpipe-transfer"),
		"--es-addresses", s.ESURL(), "--es-index", esIndex, "--metrics-addr", "127.0.0.1:0", "--jobs-topic", "")
	waitFor(t, "the old lines indexed", func() error {
		if _, err := esPost(s.ESURL()+"/"+esIndex+"/_refresh", ""); err != nil {
			return err
		}
		b, err := esPost(s.ESURL()+"/"+esIndex+"/_count", "")
		if err != nil {
			return err
		}
		var c struct{ Count int }
		if err := json.Unmarshal(b, &c); err != nil || c.Count < old {
			return fmt.Errorf("%d of %d documents (%v)", c.Count, old, err)
		}
		return nil
	})
	transfer.Stop(t)

	// Retention removes the segment of the old lines: a minute's
	// retention.ms, a second's segment.ms, and the next line rolls it.
	admin, err := sarama.NewClusterAdmin(s.KafkaAddrs(), sarama.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	minute, second := "60000", "1000"
	if err := admin.AlterConfig(sarama.TopicResource, topic, map[string]*string{"retention.ms": &minute, "segment.ms": &second}, false); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	prod.produceRecords(t, lines(old, 1, time.Now())...)
	client, err := sarama.NewClient(s.KafkaAddrs(), sarama.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	// The premise: Kafka holds none of the old lines any more.
	waitFor(t, "Kafka to lose the old lines", func() error {
		if o, err := client.GetOffset(topic, part, sarama.OffsetOldest); err != nil || o != old {
			return fmt.Errorf("partition %d starts at %d (%v), want %d", part, o, err, old)
		}
		return nil
	})
	prod.produceRecords(t, lines(old+1, fresh-1, time.Now())...)

	lt := startLivetail(t, s, "--es-addresses", s.ESURL(), "--es-index", esIndex)
	browser := newBrowser(t)
	p := openTab(t, browser, lt.URL("?job="+job+"&tail=30"))
	p.waitLive()
	p.waitRows(30)
	pages := loadAllEarlier(t, p)
	var want []string
	for i := range old + fresh {
		want = append(want, fmt.Sprintf("archived line %04d", i))
	}
	var got []string
	for _, r := range p.rows() {
		got = append(got, r.Line)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("the page shows %d lines:\n%s\nwant the %d from the index and then Kafka's, in order", len(got), strings.Join(got, "\n"), len(want))
	}
	if top := eval[string](p, `document.querySelector('#log .marker')?.textContent ?? ''`); top != "The start of the stream: there is nothing older" {
		t.Errorf("the top of the page says %q, want the start of the stream", top)
	}
	t.Logf("%d lines loaded in %d pages, %d of them from the index", len(want)-30, pages, old)
	p.wheelUp()
	p.screenshot("viewer-archive-1280-light", 1280, 800, "light")
}

// loadAllEarlier clicks "load earlier" until there is nothing older, and
// returns how many pages it loaded.
func loadAllEarlier(t testing.TB, p *tab) int {
	t.Helper()
	const settled = `!document.getElementById('earlier-note').textContent.startsWith('Loading')`
	pages := 0
	for !eval[bool](p, `document.getElementById('earlier').disabled && `+settled) {
		if pages++; pages > 10 {
			t.Fatalf("still more to load after %d pages\n%s", pages, p.describe())
		}
		n := len(p.rows())
		p.do(chromedp.Click(chromedp.CSS(`#earlier`)))
		p.waitFor("a page loaded", fmt.Sprintf(`(document.querySelectorAll('#log .row[data-offset]').length > %d || document.getElementById('earlier').disabled) && %s`, n, settled), liveWithin)
		if note := eval[string](p, `document.getElementById('earlier-note').textContent`); strings.HasPrefix(note, "Could not") {
			t.Fatalf("load earlier: %s", note)
		}
	}
	return pages
}

// waitFor polls f until it returns nil.
func waitFor(t testing.TB, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, within, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
