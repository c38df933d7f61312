package viewertest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"

	"github.com/logpipe/logpipe/livetail/internal/web"
)

// A real livetail sends some frames and close codes only under faults
// (Kafka down for good, a client too slow, a session at its maximum age).
// These tests serve the viewer with a stand-in for /api/v1/tail that plays a
// script, to check the viewer's side of each.

// step is one thing the scripted server does: send a frame, or close.
type step struct {
	frame  any
	code   websocket.StatusCode // close with it when not 0
	reason string
}

func hello() step {
	return step{frame: map[string]any{"type": "hello", "job": "j", "partition": 0, "server_time": "2026-11-21T10:00:00.000000Z"}}
}

func entries(offsets ...int64) step {
	var es []map[string]any
	for _, o := range offsets {
		es = append(es, map[string]any{"offset": o, "ts": "2026-11-21T10:00:00.000000Z", "line": fmt.Sprintf("line at offset %d", o), "host": "node-a", "file": "/var/log/j.log", "labels": map[string]string{}})
	}
	return step{frame: map[string]any{"type": "entries", "entries": es}}
}

// line is an entry of the agent: the line at pos of source file src ("":
// a line of another producer, without src and pos).
type line struct {
	offset int64
	src    string
	pos    int64
}

// text is the line's message: a line sent twice has the same text.
func (l line) text() string {
	if l.src == "" {
		return "a line without source position"
	}
	return fmt.Sprintf("%s at %d", l.src, l.pos)
}

func sourced(lines ...line) step {
	var es []map[string]any
	for _, l := range lines {
		e := map[string]any{"partition": 0, "offset": l.offset, "ts": "2026-11-21T10:00:00.000000Z", "line": l.text(), "host": "node-a", "file": "/var/log/j.log", "labels": map[string]string{}}
		if l.src != "" {
			e["src"], e["pos"] = l.src, l.pos
		}
		es = append(es, e)
	}
	return step{frame: map[string]any{"type": "entries", "entries": es}}
}

func caughtUp(offset int64) step {
	return step{frame: map[string]any{"type": "caught_up", "offset": offset}}
}

func closeWith(code websocket.StatusCode, reason string) step {
	return step{frame: map[string]any{"type": "error", "code": int(code), "reason": reason}, code: code, reason: reason}
}

// scripted serves the viewer and plays script(job, n) to the n-th (from 1)
// connection of each job; a script that does not close keeps the
// connection open.
type scripted struct {
	*httptest.Server
	script func(job string, n int) []step

	mu    sync.Mutex
	conns map[string]int
	ctx   context.Context
	wg    sync.WaitGroup
}

func newScripted(t testing.TB, script func(job string, n int) []step) *scripted {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &scripted{script: script, conns: map[string]int{}, ctx: ctx}
	mux := http.NewServeMux()
	mux.Handle("GET /", web.Handler())
	mux.HandleFunc("GET /api/v1/jobs", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `[{"job":"web","partition":0}]`)
	})
	mux.HandleFunc("GET /api/v1/tail", s.tail)
	s.Server = httptest.NewServer(mux)
	t.Cleanup(func() {
		cancel()
		s.wg.Wait()
		s.Server.Close()
	})
	return s
}

func (s *scripted) tail(w http.ResponseWriter, r *http.Request) {
	s.wg.Add(1)
	defer s.wg.Done()
	job := r.URL.Query().Get("job")
	s.mu.Lock()
	s.conns[job]++
	n := s.conns[job]
	s.mu.Unlock()
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	ctx := c.CloseRead(s.ctx)
	for _, st := range s.script(job, n) {
		if st.frame != nil {
			b, _ := json.Marshal(st.frame)
			if err := c.Write(ctx, websocket.MessageText, b); err != nil {
				return
			}
		}
		if st.code != 0 {
			c.Close(st.code, st.reason)
			return
		}
	}
	<-ctx.Done()
}

func TestViewerCloseCodes(t *testing.T) {
	// Each job's first connection gets offsets 6 and 7 and is then closed
	// with the job's code; the next refused connections are closed with
	// it at once, as livetail refuses one (no hello); the connection after
	// them gets 7 again (which the viewer must drop) and 8.
	type closeCase struct {
		code      websocket.StatusCode
		reason    string
		reconnect bool
		text      string
		refused   int // connections refused after the first one's close
	}
	codes := map[string]closeCase{
		"c1000": {websocket.StatusNormalClosure, "", false, "Closed: closed by the server", 0},
		"c1001": {websocket.StatusGoingAway, "server shutting down", true, "server restarting", 0},
		"c1011": {websocket.StatusInternalError, "upstream unavailable: kafka: client has run out of available brokers", true, "upstream (Kafka) unavailable", 0},
		"c4400": {4400, `tail: "x" is not a number of lines`, false, `Closed: bad request — tail: "x" is not a number of lines`, 0},
		"c4403": {4403, "job: user ann may not tail job c4403", false, "Closed: the token does not allow this job — job: user ann may not tail job c4403", 0},
		"c4408": {4408, "session reached its maximum duration; reconnect with cursor", true, "session reached its maximum duration", 0},
		"c1013": {websocket.StatusTryAgainLater, "this server is at its connection limit (10000): try again later", true, "the server is full: trying again later", 1},
		"c4429": {4429, "too many connections for user 127.0.0.1 (limit 10): close other tails", false, "Closed: too many connections: close other tails, then connect again — too many connections for user 127.0.0.1 (limit 10): close other tails", 0},
	}
	srv := newScripted(t, func(job string, n int) []step {
		c := codes[job]
		switch {
		case n == 1:
			return []step{hello(), entries(6, 7), caughtUp(7), closeWith(c.code, c.reason)}
		case n <= 1+c.refused:
			return []step{closeWith(c.code, c.reason)}
		}
		return []step{hello(), entries(7, 8), caughtUp(8)}
	})
	browser := newBrowser(t)

	for job, c := range codes {
		t.Run(job, func(t *testing.T) {
			t.Parallel()
			p := openTab(t, browser, srv.URL+"/?job="+job+"&tail=10")
			if !c.reconnect {
				p.waitFor("closed", `document.getElementById('status').dataset.state === 'closed'`, liveWithin)
				if s := p.status(); s.Code != fmt.Sprint(int(c.code)) || s.Text != c.text {
					t.Errorf("status %+v, want code %d and %q", s, c.code, c.text)
				}
				checkNoLoop(t, p)
				return
			}
			if c.code == websocket.StatusTryAgainLater {
				checkTryLater(t, p, c.text)
			}
			p.waitFor("reconnected", fmt.Sprintf(`window.__sockets.length === %d && document.getElementById('status').dataset.state === 'live'`, 2+c.refused), liveWithin)
			if states := eval[[]string](p, `window.__states`); !inOrder(states, "live", "reconnecting", "live") {
				t.Errorf("states %v, want live, reconnecting, live", states)
			}
			for _, got := range p.sockets()[1:] {
				if !strings.Contains(got, "cursor=7") || strings.Contains(got, "tail=") {
					t.Errorf("reconnected to %s, want cursor=7 and no tail", got)
				}
			}
			p.waitRows(3)
			checkRows(t, p.rows(), []sent{{6, "line at offset 6"}, {7, "line at offset 7"}, {8, "line at offset 8"}})
		})
	}
}

// checkTryLater checks that after a 1013 (the server is full) the page
// waits before it tries again, and longer after a second 1013: conn.js
// waits 5 s less a random half of it (2.5 to 5 s), then 10 s less a random
// half (5 to 10 s), doubling up to 60 s. Only the lower bounds are
// checked: a loaded machine makes every wait longer. The page says why it
// waits meanwhile.
func checkTryLater(t *testing.T, p *tab, text string) {
	t.Helper()
	// performance.now() is coarsened by a fraction of a millisecond.
	const slack = 5 * time.Millisecond
	p.waitFor("a second 1013", `window.__closed.length >= 2`, liveWithin)
	if s := p.status(); s.State != "reconnecting" || !strings.HasPrefix(s.Text, "Reconnecting (attempt 2): "+text) {
		t.Errorf("status %+v after a second 1013, want Reconnecting (attempt 2): %s", s, text)
	}
	p.waitFor("a third connection", `window.__opened.length >= 3`, liveWithin)
	type closed struct {
		At   float64
		Code int
	}
	closes := eval[[]closed](p, `window.__closed`)
	opened := eval[[]float64](p, `window.__opened`)
	for i, least := range []time.Duration{2500 * time.Millisecond, 5000 * time.Millisecond} {
		if closes[i].Code != int(websocket.StatusTryAgainLater) {
			t.Fatalf("connection %d closed with %d, want 1013", i+1, closes[i].Code)
		}
		waited := time.Duration((opened[i+1] - closes[i].At) * float64(time.Millisecond))
		if waited < least-slack {
			t.Errorf("after 1013 number %d the page reconnected within %v, want it to wait at least %v", i+1, waited, least)
		}
		t.Logf("after 1013 number %d the page waited %v", i+1, waited.Round(time.Millisecond))
	}
}

func TestViewerFrames(t *testing.T) {
	const burst = 20000 // more than the viewer keeps (10,000 lines by default)
	srv := newScripted(t, func(job string, n int) []step {
		switch job {
		case "dropped":
			if n == 1 {
				// Live lines skipped for a slow browser (after caught_up).
				return []step{hello(), entries(1, 2), caughtUp(2), {frame: map[string]any{"type": "dropped", "count": 412, "from_offset": 3, "to_offset": 414}}, entries(415), closeWith(websocket.StatusInternalError, "upstream unavailable")}
			}
			return []step{hello(), caughtUp(415)}
		case "resend":
			// The agent was killed after Kafka had its lines A 10 and 20
			// and B 0 and before it saved its offsets: it sent them again,
			// and a session resumed by cursor (at offset 5) does not know
			// they were sent before it. Another producer's line, the same
			// text again, is another line.
			if n == 1 {
				return []step{hello(), sourced(line{1, "aaaaaaaaaaaaaaaa", 0}, line{2, "aaaaaaaaaaaaaaaa", 10}, line{3, "aaaaaaaaaaaaaaaa", 20}),
					sourced(line{4, "bbbbbbbbbbbbbbbb", 0}, line{5, "", 0}), caughtUp(5), closeWith(websocket.StatusGoingAway, "server shutting down")}
			}
			return []step{hello(), sourced(line{6, "aaaaaaaaaaaaaaaa", 10}, line{7, "aaaaaaaaaaaaaaaa", 20}, line{8, "bbbbbbbbbbbbbbbb", 0}, line{9, "aaaaaaaaaaaaaaaa", 30}),
				sourced(line{10, "", 0}, line{11, "cccccccccccccccc", 10}, line{12, "bbbbbbbbbbbbbbbb", 5}, line{13, "aaaaaaaaaaaaaaaa", 0}),
				sourced(line{14, "dddddddddddddddd", 0}), caughtUp(14)}
		case "empty":
			// The partition had no record yet: caught_up says -1, which is
			// no cursor.
			if n == 1 {
				return []step{hello(), caughtUp(-1), closeWith(websocket.StatusGoingAway, "server shutting down")}
			}
			return []step{hello(), entries(0), caughtUp(0)}
		default: // burst
			steps := []step{hello()}
			for from := int64(0); from < burst; from += 500 {
				offs := make([]int64, 500)
				for i := range offs {
					offs[i] = from + int64(i)
				}
				steps = append(steps, entries(offs...))
			}
			return append(steps, caughtUp(burst-1))
		}
	})
	browser := newBrowser(t)

	t.Run("dropped", func(t *testing.T) {
		t.Parallel()
		p := openTab(t, browser, srv.URL+"/?job=dropped")
		p.waitFor("the marker", `[...document.querySelectorAll('#log .marker')].some(m => m.textContent === '412 lines skipped: the browser fell behind')`, liveWithin)
		p.waitFor("reconnected", `window.__sockets.length === 2 && document.getElementById('status').dataset.state === 'live'`, liveWithin)
		got := eval[[]string](p, `[...document.querySelectorAll('#log .row, #log .marker')].map(r => r.dataset.offset || r.textContent)`)
		want := []string{"1", "2", "412 lines skipped: the browser fell behind", "415"}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("stream %q, want %q", got, want)
		}
		if s := p.sockets()[1]; !strings.Contains(s, "cursor=415") {
			t.Errorf("reconnected to %s, want cursor=415", s)
		}

		// Download saves the lines in view; Copy puts one line on the clipboard.
		dir := t.TempDir()
		if _, err := chromedp.CallBrowser(p.ctx, cdpbrowser.SetDownloadBehavior, cdpbrowser.SetDownloadBehaviorParams{
			Behavior: cdpbrowser.SetDownloadBehaviorBehaviorAllow, DownloadPath: dir,
		}); err != nil {
			t.Fatal(err)
		}
		p.do(chromedp.Click(chromedp.CSS("#download")))
		// The browser may show the file before it has written it whole:
		// read it until it holds what the page saved, or time runs out.
		wantSaved := "2026-11-21T10:00:00.000000Z line at offset 1\n2026-11-21T10:00:00.000000Z line at offset 2\n" +
			"# 412 lines skipped: the browser fell behind\n2026-11-21T10:00:00.000000Z line at offset 415\n"
		var saved []byte
		var files []string
		for deadline := time.Now().Add(liveWithin); ; time.Sleep(25 * time.Millisecond) {
			files, _ = filepath.Glob(filepath.Join(dir, "dropped-*.txt"))
			if len(files) == 1 {
				saved, _ = os.ReadFile(files[0])
			}
			if string(saved) == wantSaved || time.Now().After(deadline) {
				break
			}
		}
		switch {
		case len(files) != 1:
			t.Errorf("downloads in %s: %q, want one dropped-*.txt", dir, files)
		case string(saved) != wantSaved:
			t.Errorf("downloaded %q, want %q", saved, wantSaved)
		}

		if err := chromedp.FromContext(p.ctx).Browser.Call(p.ctx, "Browser.grantPermissions", map[string]any{
			"origin": srv.URL, "permissions": []string{"clipboardReadWrite", "clipboardSanitizedWrite"},
		}, nil); err != nil {
			t.Fatal(err)
		}
		box := eval[[]float64](p, `(() => { const r = document.querySelector('#log .row[data-offset="2"]').getBoundingClientRect(); return [r.x + 100, r.y + 5]; })()`)
		p.do(
			chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, box[0], box[1]),
			chromedp.Click(chromedp.CSS(`#log .row[data-offset="2"] [data-act="copy"]`)),
		)
		p.waitFor("copied", `document.querySelector('#log .row[data-offset="2"] [data-act="copy"]')?.textContent === 'Copied'`, liveWithin)
		if got := eval[string](p, `navigator.clipboard.readText()`); got != "line at offset 2" {
			t.Errorf("clipboard %q, want the line", got)
		}
	})

	t.Run("resend", func(t *testing.T) {
		t.Parallel()
		p := openTab(t, browser, srv.URL+"/?job=resend")
		p.waitFor("reconnected", `window.__sockets.length === 2 && document.getElementById('status').dataset.state === 'live'`, liveWithin)
		if s := p.sockets()[1]; !strings.Contains(s, "cursor=5") {
			t.Errorf("reconnected to %s, want cursor=5", s)
		}
		var want []sent
		for _, l := range []line{{1, "aaaaaaaaaaaaaaaa", 0}, {2, "aaaaaaaaaaaaaaaa", 10}, {3, "aaaaaaaaaaaaaaaa", 20}, {4, "bbbbbbbbbbbbbbbb", 0}, {5, "", 0},
			{9, "aaaaaaaaaaaaaaaa", 30}, {10, "", 0}, {11, "cccccccccccccccc", 10}, {12, "bbbbbbbbbbbbbbbb", 5}, {14, "dddddddddddddddd", 0}} {
			want = append(want, sent{l.offset, l.text()})
		}
		// 14 comes in a frame of its own after 13: once it is shown, so
		// would 13 be if it were not dropped.
		p.waitFor("the last line", `[...document.querySelectorAll('#log .row')].at(-1)?.dataset.offset === '14'`, liveWithin)
		checkRows(t, p.rows(), want)
	})

	t.Run("empty partition", func(t *testing.T) {
		t.Parallel()
		p := openTab(t, browser, srv.URL+"/?job=empty&tail=10")
		p.waitFor("reconnected", `window.__sockets.length === 2 && document.getElementById('status').dataset.state === 'live'`, liveWithin)
		if s := p.sockets()[1]; !strings.Contains(s, "tail=10") || strings.Contains(s, "cursor") {
			t.Errorf("reconnected to %s, want the history asked for and no cursor", s)
		}
		p.waitRows(1)
	})

	t.Run("burst", func(t *testing.T) {
		t.Parallel()
		p := openTab(t, browser, srv.URL+"/?job=burst")
		p.waitFor("the last line", fmt.Sprintf(`[...document.querySelectorAll('#log .row')].at(-1)?.dataset.offset === '%d'`, burst-1), liveWithin)
		n := eval[int](p, `document.querySelectorAll('#log .row').length`)
		first := eval[string](p, `document.querySelector('#log .row').dataset.offset`)
		if n != 10000 || first != fmt.Sprint(burst-10000) {
			t.Errorf("the page keeps %d lines from offset %s, want the last 10000 (from %d)", n, first, burst-10000)
		}
		if note := eval[string](p, `document.getElementById('dropped-note').textContent`); note != "10,000 older lines dropped: the page keeps at most 10,000 lines (View menu)" {
			t.Errorf("the note over the lines says %q, want how many dropped and the bound", note)
		}
		p.waitFor("the view at the bottom", `(() => { const l = document.getElementById('log');
			return l.scrollHeight - l.scrollTop - l.clientHeight < 30; })()`, liveWithin)
	})
}

func TestViewerPage(t *testing.T) {
	srv := newScripted(t, func(job string, n int) []step {
		return []step{hello(), entries(1, 2), caughtUp(2)}
	})
	p := openTab(t, newBrowser(t), srv.URL+"/")

	t.Run("job picker and options", func(t *testing.T) {
		p := p.in(t)
		// /api/v1/jobs lists web: one click tails it with the form's history.
		p.do(chromedp.Click(chromedp.CSS(`#job-list button`)))
		p.waitLive()
		p.waitRows(2)
		if got := eval[string](p, `location.search`); got != "?job=web&tail=100" {
			t.Errorf("address %q, want ?job=web&tail=100", got)
		}

		display := func(sel string) string {
			return eval[string](p, `getComputedStyle(document.querySelector('`+sel+`')).display`)
		}
		if display("#log .ts") == "none" || display("#log .src") != "none" {
			t.Fatalf("by default the time shows and the source does not")
		}
		p.do(
			chromedp.Click(chromedp.CSS(`.menu summary`)),
			chromedp.Click(chromedp.CSS(`#opt-ts`)),
			chromedp.Click(chromedp.CSS(`#opt-src`)),
			chromedp.Click(chromedp.CSS(`#opt-wrap`)),
		)
		check := func() {
			t.Helper()
			if display("#log .ts") != "none" || display("#log .src") == "none" {
				t.Errorf("the options did not hide the time and show the source")
			}
			if src := eval[string](p, `document.querySelector('#log .src').textContent`); src != "node-a j.log" {
				t.Errorf("source %q, want node-a j.log", src)
			}
			if ws := eval[string](p, `getComputedStyle(document.querySelector('#log .row')).whiteSpace`); ws != "pre" {
				t.Errorf("white-space %q with wrapping off, want pre", ws)
			}
		}
		check()
		// The options outlive the page.
		p.do(chromedp.Reload())
		p.waitRows(2)
		check()
	})

	t.Run("at most 10 jobs", func(t *testing.T) {
		p := p.in(t)
		p.waitFor("the form", `document.getElementById('conn-panel').open`, liveWithin)
		n := eval[int](p, `window.__sockets.length`)
		p.do(chromedp.SetValue(chromedp.CSS("#job"), "j0, j1 j2,j3, j4, j5, j6, j7, j8, j9, j10"), chromedp.Click(chromedp.CSS("#connect-btn")))
		p.waitFor("the form's error", `!document.getElementById('form-error').hidden`, liveWithin)
		if msg := eval[string](p, `document.getElementById('form-error').textContent`); msg != "At most 10 jobs in one stream (11 given)." {
			t.Errorf("error %q", msg)
		}
		if m := eval[int](p, `window.__sockets.length`); m != n {
			t.Errorf("the page connected with 11 jobs")
		}
	})

	t.Run("levels", func(t *testing.T) {
		p := p.in(t)
		levels := map[string]string{
			"2026-11-21T10:00:00Z INFO started":  "info",
			"WARNING: disk almost full":          "warn",
			"ERR connection reset":               "error",
			"level=error msg=boom":               "error",
			"lvl=dbg msg=x":                      "debug",
			`{"level":"warn","msg":"x"}`:         "warn",
			`{"severity":"ERROR","message":"x"}`: "error",
			`{"level":50,"msg":"pino"}`:          "error",
			`{"log.level":"debug"}`:              "debug",
			`{"log":{"level":"info"}}`:           "info",
			`"level": "info" (not JSON)`:         "info",
			"[debug] cache miss":                 "debug",
			"<error> failed":                     "error",
			"error: boom":                        "error",
			"I1121 10:00:00.000000 1 x.go:1] ok": "info",
			"F1121 10:00:00.000000 1 x.go:1] no": "fatal",
			"PANIC: nil map":                     "fatal",
			"TRACE enter":                        "trace",
			"retrying after the error":           "",
			"INFORMATIONAL is not a level":       "",
			"GET /api 200":                       "",
		}
		lines := make([]string, 0, len(levels))
		for l := range levels {
			lines = append(lines, l)
		}
		arg, _ := json.Marshal(lines)
		got := eval[map[string]string](p, `import('./line.js').then(m => Object.fromEntries(`+string(arg)+`.map(l => [l, m.levelOf(l, m.parseJSON(l))])))`)
		for l, want := range levels {
			if got[l] != want {
				t.Errorf("levelOf(%q) = %q, want %q", l, got[l], want)
			}
		}
	})

	t.Run("sources remembered", func(t *testing.T) {
		p := p.in(t)
		// A Tail remembers MAX_SOURCES source files; one more forgets the
		// least recently seen.
		got := eval[[]int](p, `import('./conn.js').then(m => {
			const shown = [];
			const t = new m.Tail({ base: location.href, job: 'j', handlers: { entries: (l) => shown.push(...l.map(e => e.offset)), state: () => {} } });
			let offset = 0;
			const feed = (src, pos) => t.onEntries([{ partition: 0, offset: offset++, line: '', src, pos }]);
			for (let i = 0; i < m.MAX_SOURCES; i++) feed('s' + i, 10); // shown: offsets 0…MAX_SOURCES-1
			feed('s0', 10);  // dropped, and s0 is now the most recently seen
			feed('new', 0);  // shown: s1 is forgotten
			feed('s1', 10);  // shown, as a new source: s2 is forgotten
			feed('s0', 10);  // dropped
			feed('s3', 9);   // dropped
			feed('s2', 10);  // shown
			return [m.MAX_SOURCES, shown.length, t.sources.size, ...shown.slice(-3)];
		})`)
		if want := []int{4096, 4096 + 3, 4096, 4097, 4098, 4101}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("[MAX_SOURCES, lines shown, sources remembered, the last three shown] = %v, want %v", got, want)
		}
	})

	t.Run("backoff", func(t *testing.T) {
		p := p.in(t)
		// The waits before a retry, with the random part at its least and
		// at its most: after 1013, 5 s doubling to 60 s (minus up to half);
		// after 1001 and 4408, 0.5 s; otherwise 1 s doubling to 30 s. The
		// close-code test checks the first two after 1013 in real time.
		got := eval[[]int](p, `import('./conn.js').then(m => [
			[1, 'slow'], [2, 'slow'], [3, 'slow'], [4, 'slow'], [5, 'slow'], [40, 'slow'],
			[1, 'quick'], [1, ''], [5, ''], [6, ''],
		].flatMap(([n, speed]) => [m.backoff(n, speed, () => 0), m.backoff(n, speed, () => 1)]))`)
		want := []int{2500, 5000, 5000, 10000, 10000, 20000, 20000, 40000, 30000, 60000, 30000, 60000,
			250, 500, 500, 1000, 8000, 16000, 15000, 30000}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("backoff [least, most] for 1013's attempts 1–5 and 40, 1001's first, others' 1, 5 and 6 = %v, want %v", got, want)
		}
	})

	t.Run("matches", func(t *testing.T) {
		p := p.in(t)
		marks := eval[[][]int](p, `import('./line.js').then(m => [
			m.makeMatcher('a.b').ranges('xa.bx axb a.b'),
			m.makeMatcher('O', { regex: true }).ranges('foo'),
			m.makeMatcher('O', { regex: true, matchCase: true }).ranges('foo'),
			m.makeMatcher('x*', { regex: true }).ranges('axxb'),
		].map(r => r.flat()))`)
		want := [][]int{{1, 4, 10, 13}, {1, 2, 2, 3}, {}, {1, 3}}
		if fmt.Sprint(marks) != fmt.Sprint(want) {
			t.Errorf("matches %v, want %v", marks, want)
		}
	})
}

// The page keeps at most its line limit whatever comes: live lines beyond
// it drop off the top, with a note that says how many; "load earlier" asks
// for no more than the room left, and nothing when there is none.
func TestViewerBound(t *testing.T) {
	const bound = 1000
	var mu sync.Mutex
	var limits []string // the limit of each history request
	srv := newScripted(t, func(job string, n int) []step {
		steps := []step{hello()}
		first := int64(5000)
		if job == "full" {
			first = 0
		}
		for from := first; from < 5900; from += 100 {
			offs := make([]int64, 100)
			for i := range offs {
				offs[i] = from + int64(i)
			}
			steps = append(steps, entries(offs...))
		}
		return append(steps, caughtUp(5899))
	})
	srv.Config.Handler.(*http.ServeMux).HandleFunc("GET /api/v1/history", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		mu.Lock()
		limits = append(limits, q.Get("limit"))
		mu.Unlock()
		var below, limit int64
		fmt.Sscanf(q.Get("before"), "0:%d", &below)
		fmt.Sscanf(q.Get("limit"), "%d", &limit)
		from := max(0, below-limit)
		var es []map[string]any
		for o := from; o < below; o++ {
			es = append(es, map[string]any{"job": q.Get("job"), "partition": 0, "offset": o, "ts": "2026-11-21T09:00:00.000000Z", "line": fmt.Sprintf("line at offset %d", o)})
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"entries": es, "before": fmt.Sprintf("0:%d", from), "more": from > 0, "stop": map[bool]string{true: "", false: "start"}[from > 0]})
	})
	browser := newBrowser(t)
	limitPrefs := fmt.Sprintf(`localStorage.setItem('logpipe.livetail.viewer', JSON.stringify({ max: %d }))`, bound)

	t.Run("load earlier up to the bound", func(t *testing.T) {
		p := openTab(t, browser, srv.URL+"/?job=room", limitPrefs)
		p.waitFor("900 lines", `[...document.querySelectorAll('#log .row')].at(-1)?.dataset.offset === '5899'`, liveWithin)
		p.do(chromedp.Click(chromedp.CSS(`#earlier`)))
		p.waitFor("the page loaded", fmt.Sprintf(`document.querySelectorAll('#log .row').length === %d`, bound), liveWithin)
		p.do(chromedp.Click(chromedp.CSS(`#earlier`)))
		p.waitFor("no room", `document.getElementById('earlier-note').textContent.startsWith('The page keeps at most 1,000 lines')`, liveWithin)
		mu.Lock()
		got := slices.Clone(limits)
		mu.Unlock()
		if !slices.Equal(got, []string{"100"}) {
			t.Errorf("history asked for with limits %q, want one request for the 100 lines of room", got)
		}
		if first := eval[string](p, `document.querySelector('#log .row').dataset.offset`); first != "4900" {
			t.Errorf("the first line is at offset %s, want 4900", first)
		}
	})

	t.Run("live lines beyond the bound", func(t *testing.T) {
		p := openTab(t, browser, srv.URL+"/?job=full", limitPrefs)
		p.waitFor("the last line", `[...document.querySelectorAll('#log .row')].at(-1)?.dataset.offset === '5899'`, liveWithin)
		n := eval[int](p, `document.querySelectorAll('#log .row').length`)
		first := eval[string](p, `document.querySelector('#log .row').dataset.offset`)
		if n != bound || first != "4900" {
			t.Errorf("the page keeps %d lines from offset %s, want the last %d (from 4900)", n, first, bound)
		}
		p.waitFor("the note", `!document.getElementById('dropped-note').hidden`, liveWithin)
		if note := eval[string](p, `document.getElementById('dropped-note').textContent`); note != "4,900 older lines dropped: the page keeps at most 1,000 lines (View menu)" {
			t.Errorf("the note over the lines says %q", note)
		}
		p.screenshot("viewer-bound-1280-light", 1280, 800, "light")
	})
}
