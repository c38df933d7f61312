package viewertest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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
	// with the job's code; a second connection gets 7 again (which the
	// viewer must drop) and 8.
	codes := map[string]struct {
		code      websocket.StatusCode
		reason    string
		reconnect bool
		text      string
	}{
		"c1000": {websocket.StatusNormalClosure, "", false, "Closed: closed by the server"},
		"c1001": {websocket.StatusGoingAway, "server shutting down", true, "server restarting"},
		"c1011": {websocket.StatusInternalError, "upstream unavailable: kafka: client has run out of available brokers", true, "upstream (Kafka) unavailable"},
		"c4400": {4400, `tail: "x" is not a number of lines`, false, `Closed: bad request — tail: "x" is not a number of lines`},
		"c4403": {4403, "job: user ann may not tail job c4403", false, "Closed: the token does not allow this job — job: user ann may not tail job c4403"},
		"c4408": {4408, "session reached its maximum duration; reconnect with cursor", true, "session reached its maximum duration"},
		"c1013": {websocket.StatusTryAgainLater, "this server is at its connection limit (10000): try again later", true, "the server is full: trying again later"},
		"c4429": {4429, "too many connections for user 127.0.0.1 (limit 10): close other tails", false, "Closed: too many connections: close other tails, then connect again — too many connections for user 127.0.0.1 (limit 10): close other tails"},
	}
	srv := newScripted(t, func(job string, n int) []step {
		c := codes[job]
		if n == 1 {
			return []step{hello(), entries(6, 7), caughtUp(7), closeWith(c.code, c.reason)}
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
			p.waitFor("reconnected", `window.__sockets.length === 2 && document.getElementById('status').dataset.state === 'live'`, liveWithin)
			if states := eval[[]string](p, `window.__states`); !inOrder(states, "live", "reconnecting", "live") {
				t.Errorf("states %v, want live, reconnecting, live", states)
			}
			if got := p.sockets()[1]; !strings.Contains(got, "cursor=7") || strings.Contains(got, "tail=") {
				t.Errorf("reconnected to %s, want cursor=7 and no tail", got)
			}
			p.waitRows(3)
			checkRows(t, p.rows(), []sent{{6, "line at offset 6"}, {7, "line at offset 7"}, {8, "line at offset 8"}})
		})
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
		var saved []byte
		deadline := time.Now().Add(liveWithin)
		for saved == nil {
			files, _ := filepath.Glob(filepath.Join(dir, "dropped-*.txt"))
			if len(files) == 1 {
				saved, _ = os.ReadFile(files[0])
			} else if time.Now().After(deadline) {
				t.Fatalf("no download in %s", dir)
			} else {
				time.Sleep(25 * time.Millisecond)
			}
		}
		wantSaved := "2026-11-21T10:00:00.000000Z line at offset 1\n2026-11-21T10:00:00.000000Z line at offset 2\n" +
			"# 412 lines skipped: the browser fell behind\n2026-11-21T10:00:00.000000Z line at offset 415\n"
		if string(saved) != wantSaved {
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
