package viewertest

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/logpipe/logpipe/devstack/stack"
)

const (
	// liveWithin bounds how long a page may take to reach "live", or a line
	// to reach the page: far more than on an idle machine (well under a
	// second), so that a loaded one does not fail a test.
	liveWithin = time.Minute
	// noLoopWait is how long a page that stopped must stay stopped: longer
	// than the viewer's longest first retry delay (1 s).
	noLoopWait = 2 * time.Second
)

// samples are lines of common log formats, each with the level the viewer
// should give it.
var samples = []struct{ line, level string }{
	{"2026-11-21T10:00:00Z INFO server started on :8080", "info"},
	{"2026-11-21T10:00:01Z WARN slow query took 2.3s", "warn"},
	{"2026-11-21T10:00:02Z ERROR connection refused: dial tcp 10.0.0.5:5432", "error"},
	{`{"level":"error","msg":"payment failed","order":1234,"user":{"id":42,"name":"ann"}}`, "error"},
	{`{"level":"debug","msg":"cache hit","key":"user:42"}`, "debug"},
	{`level=warning msg="disk 91% full" path=/var`, "warn"},
	{"[trace] entering handler /api/items", "trace"},
	{"FATAL out of memory", "fatal"},
	{"E1121 10:00:03.000000       1 controller.go:42] sync failed", "error"},
	{"GET /healthz 200 1ms", ""},
}

func TestViewerStreamPauseFilter(t *testing.T) {
	k := newKafka(t, stack.Embedded)
	lt := startLivetail(t, k)
	prod := newProducer(t, k)
	browser := newBrowser(t)

	const job = "web"
	var history []string
	for _, s := range samples {
		history = append(history, s.line)
	}
	want := prod.produce(t, job, history...)
	prod.produce(t, "other", numbered("a line of another job", 0, 5)...)

	p := openTab(t, browser, lt.URL("?job="+job+"&tail=100"))
	p.waitLive()
	p.waitRows(len(want))
	checkRows(t, p.rows(), want)

	t.Run("levels", func(t *testing.T) {
		p := p.in(t)
		for i, r := range p.rows()[:len(samples)] {
			cls := "lvl-" + samples[i].level
			if samples[i].level == "" {
				if strings.Contains(r.Class, "lvl-") {
					t.Errorf("%q: class %q, want no level", r.Line, r.Class)
				}
			} else if !strings.Contains(" "+r.Class+" ", " "+cls+" ") {
				t.Errorf("%q: class %q, want %s", r.Line, r.Class, cls)
			}
		}
	})

	t.Run("live lines in order", func(t *testing.T) {
		p := p.in(t)
		want = append(want, prod.produce(t, job, numbered("GET /api/items/", 10, 30)...)...)
		p.waitRows(len(want))
		checkRows(t, p.rows(), want)
		if got := eval[string](p, `location.search`); got != "?job=web&tail=100" {
			t.Errorf("address %q, want the job and history in it", got)
		}
	})

	t.Run("pause and resume", func(t *testing.T) {
		p := p.in(t)
		p.do(chromedp.Focus(chromedp.CSS("#log")), press(' '))
		p.waitFor("paused", `document.getElementById('status').dataset.state === 'paused'`, liveWithin)
		shown := len(p.rows())
		held := prod.produce(t, job, numbered("written while paused", 0, 10)...)
		p.waitFor("10 lines held", `document.getElementById('pause').textContent === 'Resume (10 new)'`, liveWithin)
		if n := len(p.rows()); n != shown {
			t.Fatalf("paused page shows %d lines, want the %d it showed when paused", n, shown)
		}
		p.do(press(' '))
		want = append(want, held...)
		p.waitRows(len(want))
		checkRows(t, p.rows(), want)
		if s := p.status(); s.State != "live" {
			t.Errorf("after resume: status %+v, want live", s)
		}
	})

	t.Run("scrolling up stops following", func(t *testing.T) {
		p := p.in(t)
		p.wheelUp()
		p.waitFor("follow off", `document.getElementById('follow').getAttribute('aria-pressed') === 'false'`, liveWithin)
		top := eval[float64](p, `document.getElementById('log').scrollTop`)
		want = append(want, prod.produce(t, job, numbered("below the fold", 0, 5)...)...)
		p.waitFor("5 new lines announced", `!document.getElementById('new-lines').hidden && document.getElementById('new-count').textContent === '5'`, liveWithin)
		if now := eval[float64](p, `document.getElementById('log').scrollTop`); now != top {
			t.Errorf("the view moved from scrollTop %v to %v while not following", top, now)
		}
		p.do(press([]rune(kb.End)[0]))
		p.waitFor("following again", `(() => { const l = document.getElementById('log');
			return document.getElementById('new-lines').hidden && l.scrollHeight - l.scrollTop - l.clientHeight < 30; })()`, liveWithin)
		checkRows(t, p.rows(), want)
	})

	t.Run("filter hides and highlights", func(t *testing.T) {
		p := p.in(t)
		p.do(press('/'))
		if id := eval[string](p, `document.activeElement.id`); id != "filter" {
			t.Fatalf("/ focused %q, want the filter", id)
		}
		p.do(chromedp.SendKeys(chromedp.CSS("#filter"), "error"))
		checkFilter(t, p, want, "error", regexp.MustCompile(`(?i)error`))
		if got := eval[string](p, `new URLSearchParams(location.search).get('filter')`); got != "error" {
			t.Errorf("filter in the address: %q, want error", got)
		}

		p.do(
			clearFilter,
			chromedp.Click(chromedp.CSS("#regex")),
			chromedp.SendKeys(chromedp.CSS("#filter"), `^GET /api/items/ 1\d$`),
		)
		checkFilter(t, p, want, `^GET /api/items/ 1\d$`, regexp.MustCompile(`^GET /api/items/ 1\d$`))

		p.do(clearFilter)
		p.waitFor("filter cleared", `document.querySelectorAll('#log .row[hidden]').length === 0`, liveWithin)
	})

	t.Run("screenshots", func(t *testing.T) {
		p := p.in(t)
		// Pretty-print the JSON line through its row button, as a user would.
		p.wheelUp()
		p.do(chromedp.Evaluate[chromedp.Void](`document.querySelector('#log .row[data-offset="` + fmt.Sprint(want[3].Offset) + `"]').scrollIntoView({block: 'center'})`))
		box := eval[[]float64](p, `(() => { const r = document.querySelector('#log .row[data-offset="`+fmt.Sprint(want[3].Offset)+`"]').getBoundingClientRect(); return [r.x + 200, r.y + 5]; })()`)
		p.do(
			chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, box[0], box[1]),
			chromedp.Click(chromedp.CSS(`#log .row[data-offset="`+fmt.Sprint(want[3].Offset)+`"] [data-act="json"]`)),
		)
		p.waitFor("pretty JSON", `document.querySelector('#log .row.pretty .msg')?.textContent.includes('\n  "user": {')`, liveWithin)
		// The samples with their levels are at the top.
		p.wheelUp()
		p.screenshot("viewer-1280-light", 1280, 800, "light")
		p.screenshot("viewer-1280-dark", 1280, 800, "dark")
		p.screenshot("viewer-360-light", 360, 740, "light")
	})

	t.Run("server grep", func(t *testing.T) {
		p := p.in(t)
		p.do(chromedp.EmulateViewport(1280, 800))
		p.waitFor("the form", `document.getElementById('conn-panel').open`, liveWithin)
		const grep = `items/ 1[0-4]$`
		p.do(chromedp.SendKeys(chromedp.CSS("#grep"), grep+"\r"))
		p.waitFor("a new session", `window.__sockets.length === 2`, liveWithin)
		if s := p.sockets()[1]; !strings.Contains(s, "grep=items%2F+1%5B0-4%5D%24") || !strings.Contains(s, "tail=100") {
			t.Errorf("connected to %s, want the grep and the history", s)
		}
		p.waitLive()
		var matching []sent
		for _, s := range want {
			if regexp.MustCompile(grep).MatchString(s.Line) {
				matching = append(matching, s)
			}
		}
		live := prod.produce(t, job, "GET /api/items/ 12", "GET /api/items/ 99", "GET /api/items/ 13")
		matching = append(matching, live[0], live[2])
		p.waitRows(len(matching))
		checkRows(t, p.rows(), matching)
		if got := eval[string](p, `new URLSearchParams(location.search).get('grep')`); got != grep {
			t.Errorf("grep in the address: %q, want %q", got, grep)
		}
	})
}

func TestViewerResumesAfterRestart(t *testing.T) {
	k := newKafka(t, stack.Embedded)
	lt := startLivetail(t, k)
	prod := newProducer(t, k)
	browser := newBrowser(t)

	const job = "api"
	want := prod.produce(t, job, numbered("before the page opened", 0, 5)...)
	p := openTab(t, browser, lt.URL("?job="+job+"&tail=5"))
	p.waitLive()
	want = append(want, prod.produce(t, job, numbered("live before the restart", 0, 20)...)...)
	p.waitRows(len(want))
	lastSeen := want[len(want)-1].Offset

	lt.stop()
	p.waitFor("reconnecting", `document.getElementById('status').dataset.state === 'reconnecting'`, liveWithin)
	if s := p.status(); !regexp.MustCompile(`^Reconnecting \(attempt \d+\)`).MatchString(s.Text) {
		t.Errorf("status while livetail is down: %q, want Reconnecting (attempt N)", s.Text)
	}
	want = append(want, prod.produce(t, job, numbered("written while livetail was down", 0, 20)...)...)
	// One attempt fails on the closed port before livetail is back.
	p.waitFor("a failed reconnect attempt", `window.__sockets.length >= 2 && /^Reconnecting \(attempt [2-9]/.test(document.getElementById('status-text').textContent)`, liveWithin)
	lt.start()
	p.waitLive()
	want = append(want, prod.produce(t, job, numbered("after the restart", 0, 20)...)...)
	p.waitRows(len(want))
	checkRows(t, p.rows(), want)

	states := eval[[]string](p, `window.__states`)
	if !inOrder(states, "live", "reconnecting", "live") {
		t.Errorf("states %v, want live, reconnecting, then live", states)
	}
	socks := p.sockets()
	if len(socks) < 2 {
		t.Fatalf("sockets %v: want a reconnect", socks)
	}
	for _, s := range socks[1:] {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		c := u.Query().Get("cursor")
		if !regexp.MustCompile(fmt.Sprintf(`(^|,)\d+:%d(,|$)`, lastSeen)).MatchString(c) || u.Query().Has("tail") {
			t.Errorf("reconnect %s: want a cursor at offset %d (the last seen) instead of tail", s, lastSeen)
		}
	}
}

func TestViewerStopsOnRefusal(t *testing.T) {
	k := newKafka(t, stack.Embedded)
	browser := newBrowser(t)

	t.Run("4429", func(t *testing.T) {
		t.Parallel()
		lt := startLivetail(t, k, "--max-conns-per-user", "1")
		holdConnection(t, "ws://"+lt.Addr+"/api/v1/tail?job=busy")

		p := openTab(t, browser, lt.URL("?job=busy&tail=0"))
		p.waitFor("closed", `document.getElementById('status').dataset.state === 'closed'`, liveWithin)
		s := p.status()
		if s.Code != "4429" || !strings.Contains(s.Text, "too many connections: close other tails") {
			t.Errorf("status %+v, want code 4429 and a message to close other tails", s)
		}
		checkNoLoop(t, p)
	})

	t.Run("4401", func(t *testing.T) {
		t.Parallel()
		const secret = "viewer-test-secret"
		lt := startLivetail(t, k, "--auth", "jwt", "--jwt-secret", secret)

		p := openTab(t, browser, lt.URL("?job=secure&tail=0"))
		p.waitFor("closed", `document.getElementById('status').dataset.state === 'closed'`, liveWithin)
		s := p.status()
		if s.Code != "4401" || !strings.Contains(s.Text, "token missing, invalid or expired") {
			t.Errorf("status %+v, want code 4401 and token missing, invalid or expired", s)
		}
		checkNoLoop(t, p)

		// A token typed into the form is used at once, and never put in
		// the page's address.
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"sub": "ann", "exp": time.Now().Add(time.Hour).Unix(),
		}).SignedString([]byte(secret))
		if err != nil {
			t.Fatal(err)
		}
		p.do(
			chromedp.SendKeys(chromedp.CSS("#token"), tok),
			chromedp.Evaluate[chromedp.Void](`document.getElementById('token').dispatchEvent(new Event('change'))`),
		)
		p.waitLive()
		if n := len(p.sockets()); n != 2 {
			t.Errorf("%d sockets opened, want 2", n)
		}
		if href := eval[string](p, `location.href`); strings.Contains(href, tok) || strings.Contains(href, "token") {
			t.Errorf("the token is in the page's address %s", href)
		}
	})
}

// clearFilter empties the filter as the search field's clear button does.
var clearFilter = chromedp.Evaluate[chromedp.Void](`(() => { const f = document.getElementById('filter');
	f.value = ''; f.dispatchEvent(new Event('input', { bubbles: true })); })()`)

// ---- checks ----

func (p *tab) waitLive() {
	p.t.Helper()
	p.waitFor("live", `document.getElementById('status').dataset.state === 'live'`, liveWithin)
}

func (p *tab) waitRows(n int) {
	p.t.Helper()
	p.waitFor(fmt.Sprintf("%d lines", n), fmt.Sprintf(`document.querySelectorAll('#log .row[data-offset]').length >= %d`, n), liveWithin)
}

// checkRows fails unless the page shows exactly want, in order: no line
// missing, none twice.
func checkRows(t testing.TB, got []row, want []sent) {
	t.Helper()
	for i := range max(len(got), len(want)) {
		switch {
		case i >= len(got):
			t.Fatalf("line %d (offset %d, %q) missing: the page shows %d of %d lines", i, want[i].Offset, want[i].Line, len(got), len(want))
		case i >= len(want):
			t.Fatalf("line %d (offset %d, %q) was never produced: the page shows %d lines, want %d", i, got[i].Offset, got[i].Line, len(got), len(want))
		case got[i].Offset != want[i].Offset || got[i].Line != want[i].Line:
			t.Fatalf("line %d: offset %d %q, want offset %d %q", i, got[i].Offset, got[i].Line, want[i].Offset, want[i].Line)
		}
	}
}

// checkFilter waits until the filter has been applied, then checks that
// exactly the lines matching re show, with their matches marked; typed is
// what was typed into the filter.
func checkFilter(t testing.TB, p *tab, all []sent, typed string, re *regexp.Regexp) {
	t.Helper()
	n := 0
	for _, s := range all {
		if re.MatchString(s.Line) {
			n++
		}
	}
	if n == 0 || n == len(all) {
		t.Fatalf("filter %s matches %d of %d lines: a useless test", re, n, len(all))
	}
	// The filter is applied as it is typed: a prefix of it may show the
	// same rows with other marks, so the wait is also for the address,
	// which the viewer writes once it applied the whole filter.
	p.waitFor(fmt.Sprintf("%d lines matching %s", n, re), fmt.Sprintf(`new URLSearchParams(location.search).get('filter') === %s &&
		document.querySelectorAll('#log .row[data-offset]:not([hidden])').length === %d`, strconv.Quote(typed), n), liveWithin)
	for _, r := range p.rows() {
		match := re.FindAllString(r.Line, -1)
		switch {
		case len(match) == 0 && !r.Hidden:
			t.Errorf("%q shows, though it does not match %s", r.Line, re)
		case len(match) > 0 && r.Hidden:
			t.Errorf("%q is hidden, though it matches %s", r.Line, re)
		case len(match) > 0 && strings.Join(r.Marks, "|") != strings.Join(match, "|"):
			t.Errorf("%q: marked %q, want %q", r.Line, r.Marks, match)
		}
	}
}

// checkNoLoop fails if the stopped page opens another connection.
func checkNoLoop(t testing.TB, p *tab) {
	t.Helper()
	time.Sleep(noLoopWait)
	if socks := p.sockets(); len(socks) != 1 {
		t.Errorf("the page opened %d connections, want 1 and no reconnect: %v", len(socks), socks)
	}
	if s := p.status(); s.State != "closed" {
		t.Errorf("status %+v, want it to stay closed", s)
	}
}

// holdConnection keeps a tail of url open until the test ends.
func holdConnection(t testing.TB, url string) {
	t.Helper()
	// Ending the context of Dial or Read closes the connection: it lasts
	// as long as the connection.
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	timer := time.AfterFunc(within, cancel)
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("dialing %s: %v", url, err)
	}
	// The slot is taken once the hello frame comes.
	if _, _, err := c.Read(ctx); err != nil {
		t.Fatalf("reading the hello frame: %v", err)
	}
	timer.Stop()
	// Read on, which also answers the server's pings, until the test ends.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, _, err := c.Read(ctx); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		c.Close(websocket.StatusNormalClosure, "")
		<-done
	})
}

// inOrder reports whether seq contains want as a subsequence.
func inOrder(seq []string, want ...string) bool {
	for _, s := range seq {
		if len(want) > 0 && s == want[0] {
			want = want[1:]
		}
	}
	return len(want) == 0
}
