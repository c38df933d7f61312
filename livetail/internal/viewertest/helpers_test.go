package viewertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/logpipe/logpipe/common/record"
	"github.com/logpipe/logpipe/devstack/proc"
	"github.com/logpipe/logpipe/devstack/stack"
)

// chromiumPath is where Debian's chromium package puts the browser.
const chromiumPath = "/usr/bin/chromium"

// ---- a livetail process ----

// within bounds the waits for livetail to start or stop: far more than it
// takes on an idle machine, so that a loaded one does not fail a test.
const within = 2 * time.Minute

// livetail is the livetail binary run for a test, behind a relay: Addr, the
// viewer's address, stays the same when livetail restarts (on a new port),
// as a browser page keeps its URL.
type livetail struct {
	t     testing.TB
	args  []string
	relay *proc.Relay
	Addr  string

	mu sync.Mutex
	p  *proc.Process // nil while stopped
}

// startLivetail runs livetail on the Kafka of s, reading s's "logs" topic,
// with the extra flags until the test ends.
func startLivetail(t testing.TB, s *stack.Stack, extra ...string) *livetail {
	t.Helper()
	relay := proc.NewRelay(t)
	l := &livetail{t: t, relay: relay, Addr: relay.Addr()}
	l.args = append([]string{
		"--listen", "127.0.0.1:0",
		"--metrics-addr", "127.0.0.1:0",
		"--kafka-brokers", strings.Join(s.KafkaAddrs(), ","),
		"--kafka-topic", s.Topic("logs"),
		"--log-level", "info",
		"--upstream-backoff-min", "50ms",
		"--upstream-backoff-max", "100ms",
	}, extra...)
	l.start()
	return l
}

// start runs the process, waits until /readyz answers 200 and points the
// relay at it.
func (l *livetail) start() {
	t := l.t
	t.Helper()
	p := proc.Start(t, proc.Build(t, "github.com/logpipe/logpipe/livetail"), l.args...)
	addr := p.Addr(t, "http")
	deadline := time.Now().Add(within)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("livetail not ready within %v (last: %v)", within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	l.mu.Lock()
	l.p = p
	l.mu.Unlock()
	l.relay.To(addr)
}

// stop takes the address off the network (connections refused) and stops
// livetail with SIGTERM, which closes every session with 1001; it is a
// no-op when livetail is not running.
func (l *livetail) stop() {
	l.mu.Lock()
	p := l.p
	l.p = nil
	l.mu.Unlock()
	if p == nil {
		return
	}
	l.relay.To("")
	if !p.Terminate(proc.StopGrace) {
		l.t.Errorf("livetail did not stop within %v of SIGTERM", proc.StopGrace)
	}
}

// URL is the viewer's address with query q.
func (l *livetail) URL(q string) string { return "http://" + l.Addr + "/" + q }

// ---- Kafka ----

// newKafka starts devstack's Kafka alone, of the kind of backends asked
// for (stack.Embedded or stack.Real), with three partitions. On the shared
// real backends the test's topics have names of their own: s.Topic("logs").
func newKafka(t testing.TB, kind string) *stack.Stack {
	t.Helper()
	return stack.New(t, stack.Options{Backends: kind, Without: []string{stack.Etcd, stack.ES}, Partitions: 3})
}

// producer writes records to the stack's "logs" topic as the agent does:
// key = job, but with sarama's default (hash) partitioner.
type producer struct {
	p     sarama.SyncProducer
	topic string
}

// sent is one produced line.
type sent struct {
	Offset int64
	Line   string
}

func newProducer(t testing.TB, s *stack.Stack) *producer {
	t.Helper()
	cfg := sarama.NewConfig()
	cfg.Producer.Return.Successes = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Retry.Max = 10
	cfg.Producer.Retry.Backoff = 50 * time.Millisecond
	p, err := sarama.NewSyncProducer(s.KafkaAddrs(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return &producer{p: p, topic: s.Topic("logs")}
}

// produce writes lines for job and returns them with their offsets.
func (p *producer) produce(t testing.TB, job string, lines ...string) []sent {
	t.Helper()
	msgs := make([]*sarama.ProducerMessage, len(lines))
	for i, l := range lines {
		rec := record.Record{
			Timestamp: time.Now(),
			Message:   l,
			Job:       job,
			Host:      record.Host{Name: "node-a"},
			Agent:     record.Agent{Name: "node-a"},
			Log:       record.Log{File: record.File{Path: "/var/log/app/" + job + ".log"}, Offset: int64(i * 100)},
			Labels:    map[string]string{"env": "test"},
		}
		msgs[i] = &sarama.ProducerMessage{Topic: p.topic, Key: sarama.StringEncoder(job), Value: sarama.ByteEncoder(rec.AppendJSON(nil))}
	}
	if err := p.p.SendMessages(msgs); err != nil {
		t.Fatalf("producing: %v", err)
	}
	out := make([]sent, len(msgs))
	for i, m := range msgs {
		out[i] = sent{Offset: m.Offset, Line: lines[i]}
	}
	return out
}

// numbered returns n lines "<prefix> <i>" for i from first.
func numbered(prefix string, first, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s %d", prefix, first+i)
	}
	return out
}

// ---- the browser ----

// probe runs in every page before its own scripts: it records each
// WebSocket the page opens (its address in __sockets, when it was made in
// __opened), each close (when and with which code, in __closed, noted
// before the page's own onclose runs) and each state the status element
// shows.
const probe = `(() => {
  window.__sockets = [];
  window.__opened = [];
  window.__closed = [];
  window.__states = [];
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(url, protocols) {
      super(url, protocols);
      window.__sockets.push(String(url));
      window.__opened.push(performance.now());
      this.addEventListener('close', (e) => window.__closed.push({ at: performance.now(), code: e.code }));
    }
  };
  document.addEventListener('DOMContentLoaded', () => {
    const st = document.getElementById('status');
    if (!st) return;
    const note = () => {
      const s = st.dataset.state;
      if (window.__states[window.__states.length - 1] !== s) window.__states.push(s);
    };
    new MutationObserver(note).observe(st, { attributes: true, attributeFilter: ['data-state'] });
    note();
  });
})();`

// newBrowser starts a headless Chromium for the test.
func newBrowser(t testing.TB) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("the browser tests need Debian's chromium at %s: `make test` installs it (%v)", chromiumPath, err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-smooth-scrolling", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	// Start the browser now, so that its start-up is not charged to the
	// first page's timeout.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("starting chromium: %v", err)
	}
	t.Cleanup(func() {
		if err := chromedp.Cancel(ctx); err != nil && !errors.Is(err, context.Canceled) {
			t.Logf("closing chromium: %v", err)
		}
		cancel()
		cancelAlloc()
	})
	return ctx
}

// tab is one page of the browser.
type tab struct {
	t   testing.TB
	ctx context.Context
}

// openTab opens the viewer at url in a new tab of the browser.
func openTab(t testing.TB, browser context.Context, url string, scripts ...string) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	p := &tab{t: t, ctx: ctx}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800)); err != nil {
		t.Fatalf("opening a tab: %v", err)
	}
	for _, src := range append([]string{probe}, scripts...) {
		if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: src}); err != nil {
			t.Fatalf("installing a script before the page's own: %v", err)
		}
	}
	// Tabs of one browser run side by side: each behaves as if it had the
	// focus (the clipboard, for one, wants it).
	if _, err := chromedp.Call(ctx, emulation.SetFocusEmulationEnabled, emulation.SetFocusEmulationEnabledParams{Enabled: true}); err != nil {
		t.Fatalf("emulating focus: %v", err)
	}
	p.do(chromedp.Navigate(url))
	return p
}

// in returns p reporting to t, for a subtest.
func (p *tab) in(t testing.TB) *tab {
	c := *p
	c.t = t
	return &c
}

// press types the key of r as a keyboard does: a keyDown that carries the
// text (so that a page that cancels the keydown gets no input) and a keyUp.
func press(r rune) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		var down, up *input.DispatchKeyEventParams
		text := ""
		for _, e := range kb.Encode(r) {
			switch e.Type {
			case kb.KeyDown:
				down = e
			case kb.KeyUp:
				up = e
			case kb.KeyChar:
				text = e.Text
			}
		}
		down.Text, down.UnmodifiedText = text, text
		for _, e := range []*input.DispatchKeyEventParams{down, up} {
			if _, err := cdp.Call(ctx, t, input.DispatchKeyEvent, *e); err != nil {
				return err
			}
		}
		return nil
	})
}

// wheelUp turns the mouse wheel up over the log, as far as it goes, and
// waits until the view is at the top.
func (p *tab) wheelUp() {
	p.t.Helper()
	c := eval[[]float64](p, `(() => { const r = document.getElementById('log').getBoundingClientRect();
		return [r.x + r.width / 2, r.y + r.height / 2]; })()`)
	// The protocol wants deltaX even when it is 0, which the typed
	// parameters leave out.
	p.do(chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		return t.Call(ctx, "Input.dispatchMouseEvent", map[string]any{
			"type": "mouseWheel", "x": c[0], "y": c[1], "deltaX": 0, "deltaY": -1e6,
		}, nil)
	}))
	p.waitFor("the view at the top", `document.getElementById('log').scrollTop === 0`, liveWithin)
}

// do runs actions with a time limit.
func (p *tab) do(actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, within)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("browser: %v\n%s", err, p.describe())
	}
}

// eval evaluates a JavaScript expression and decodes its JSON value into T.
func eval[T any](p *tab, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, within)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

// waitFor polls a JavaScript condition until it is true.
func (p *tab) waitFor(what, cond string, limit time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(limit)
	for !eval[bool](p, "!!("+cond+")") {
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: not within %s\n%s", what, limit, p.describe())
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// state is what the status element shows.
type state struct {
	State, Code, Text string
}

func (p *tab) status() state {
	p.t.Helper()
	return eval[state](p, `(() => { const s = document.getElementById('status');
		return { State: s.dataset.state, Code: s.dataset.code || '', Text: s.textContent.trim().replace(/\s+/g, ' ') }; })()`)
}

// row is a line on the page.
type row struct {
	Offset int64
	Line   string
	Hidden bool
	Class  string
	Marks  []string
}

func (p *tab) rows() []row {
	p.t.Helper()
	return eval[[]row](p, `[...document.querySelectorAll('#log .row[data-offset]')].map(r => ({
		Offset: Number(r.dataset.offset),
		Line: r.querySelector('.msg').textContent,
		Hidden: r.hidden,
		Class: r.className,
		Marks: [...r.querySelectorAll('.msg mark')].map(m => m.textContent),
	}))`)
}

func (p *tab) sockets() []string {
	p.t.Helper()
	return eval[[]string](p, `window.__sockets`)
}

// describe sums the page up for a failure message.
func (p *tab) describe() string {
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[json.RawMessage](`({
		url: location.href,
		status: document.getElementById('status')?.textContent.trim().replace(/\s+/g, ' '),
		states: window.__states,
		sockets: window.__sockets,
		rows: document.querySelectorAll('#log .row').length,
		scroll: (l => l && { top: l.scrollTop, height: l.scrollHeight, client: l.clientHeight })(document.getElementById('log')),
		following: document.getElementById('follow')?.getAttribute('aria-pressed'),
		last: [...document.querySelectorAll('#log .row .msg, #log .marker')].slice(-3).map(r => r.textContent),
	})`))
	if err != nil {
		return fmt.Sprintf("(page state unavailable: %v)", err)
	}
	return "page: " + string(v)
}

// screenshot saves a PNG of the page, width × height pixels, in the light
// or dark scheme, to the test's artifact directory.
func (p *tab) screenshot(name string, width, height int64, scheme string) string {
	p.t.Helper()
	if _, err := chromedp.Call(p.ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
	}); err != nil {
		p.t.Fatalf("emulating %s: %v", scheme, err)
	}
	p.do(chromedp.EmulateViewport(width, height))
	// Let a frame render at the new size.
	eval[bool](p, `new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))`)
	png, err := chromedp.Run(p.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		p.t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(artifactDir(p.t), name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("screenshot: %s", path)
	return path
}

// artifactDir is LOGPIPE_ARTIFACTS/<test> when that is set, else the
// test's artifact directory (kept by go test -artifacts).
func artifactDir(t testing.TB) string {
	t.Helper()
	if base := os.Getenv("LOGPIPE_ARTIFACTS"); base != "" {
		dir := filepath.Join(base, strings.ReplaceAll(t.Name(), "/", "_"))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	return t.ArtifactDir()
}
