package viewertest

import (
	"fmt"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/logpipe/logpipe/common/record"
)

// kcat writes lines for job with kcat and the given librdkafka partitioner.
func kcat(t testing.TB, brokers []string, job, partitioner string, lines ...string) {
	t.Helper()
	var in strings.Builder
	for _, l := range lines {
		rec := record.Record{Timestamp: time.Now(), Message: l, Job: job, Host: record.Host{Name: "node-k"}}
		in.Write(rec.AppendJSON(nil))
		in.WriteByte('\n')
		time.Sleep(time.Millisecond) // distinct times, for the merge by time
	}
	cmd := exec.Command("kcat", "-b", strings.Join(brokers, ","), "-t", "logs", "-k", job, "-P", "-X", "partitioner="+partitioner)
	cmd.Stdin = strings.NewReader(in.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kcat: %v\n%s", err, out)
	}
}

// lineTexts returns the rows' lines.
func lineTexts(rows []row) []string {
	var out []string
	for _, r := range rows {
		out = append(out, r.Line)
	}
	return out
}

// Lines that kcat wrote, with librdkafka's default partitioner and with
// murmur2_random, and that sarama wrote, are all shown: as history and live.
func TestViewerShowsKcatLines(t *testing.T) {
	k := newKafka(t)
	lt := startLivetail(t, k.KafkaAddrs())
	prod := newProducer(t, k)
	browser := newBrowser(t)
	const job = "from-kcat"

	var want []string
	write := func(phase string) {
		for _, by := range []string{"consistent_random", "murmur2_random"} {
			lines := numbered(phase+" "+by, 0, 5)
			kcat(t, k.KafkaAddrs(), job, by, lines...)
			want = append(want, lines...)
		}
		for _, s := range prod.produce(t, job, numbered(phase+" sarama", 0, 5)...) {
			want = append(want, s.Line)
		}
	}
	write("history")
	p := openTab(t, browser, lt.URL("?job="+job+"&tail=100"))
	p.waitLive()
	p.waitRows(len(want))
	write("live")
	p.waitRows(len(want))
	if got := lineTexts(p.rows()); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("the page shows\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// When its token expires the session ends with 4401; the page asks the
// embedding page for a fresh token (window.livetailToken) and resumes with
// its cursor: no line missing, none twice.
func TestViewerRenewsExpiredToken(t *testing.T) {
	const secret = "viewer-test-secret"
	k := newKafka(t)
	lt := startLivetail(t, k.KafkaAddrs(), "--auth", "jwt", "--jwt-secret", secret)
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
	k := newKafka(t)
	lt := startLivetail(t, k.KafkaAddrs())
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
}
