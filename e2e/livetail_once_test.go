package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/logpipe/logpipe/devstack/proc"
	"github.com/logpipe/logpipe/devstack/stack"
)

// TestLivetailOnceAcrossKills: a live tail session of a job is open while
// 20,000 lines are appended to its file over about 4 s and the agent is
// SIGKILLed three times at arbitrary moments, each time sending again the
// lines Kafka had acknowledged after its last save of offsets. First the
// premise: Kafka holds more records than lines. Then the session has
// received every line exactly once, in order, with no dropped frame, and
// livetail skipped every record beyond one per line.
func TestLivetailOnceAcrossKills(t *testing.T) {
	stack.ForBackends(t, func(t *testing.T, kind string) {
		const n = 20000
		// A long --save-delay makes every kill leave hundreds of lines to
		// send again (see resendSaveDelay), which is what this test is
		// about.
		r := startOnce(t, kind, true, "--save-delay", resendSaveDelay)
		// A client buffer larger than all the lines of the test: however
		// slowly a loaded machine lets the client read, it is never a slow
		// client whose lines are dropped.
		lt := proc.Start(t, binary(t, "livetail"), "--kafka-brokers", strings.Join(r.st.KafkaAddrs(), ","), "--kafka-topic", r.topic,
			"--listen", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--client-buffer", "100000")
		waitReady(t, "livetail", lt.Addr(t, "http"))
		s := openSession(t, lt.Addr(t, "http"), "once")

		r.write(t, n, 4*time.Second, map[*restartable]int{r.agent: 3})
		// One more line once the kills are over: the agent sends it after
		// every line it sent again, so when it has arrived, so has every
		// record of the job before it.
		appendLines(t, r.path, []string{onceLine(n)})
		want := make([]string, n+1)
		for i := range want {
			want[i] = onceLine(i)
		}
		eventually(t, "the session has the last line", func() error {
			lines, err := s.snapshot()
			switch {
			case err != nil:
				return nil // reported below
			case len(lines) > 0 && lines[len(lines)-1] == want[n]:
				return nil
			}
			return fmt.Errorf("%d of %d lines", len(lines), n+1)
		})
		// The last line has arrived, and the agent is not killed again:
		// Kafka holds every record of the job it will get.
		copies, _ := kafkaCopies(t, r.st.KafkaAddrs(), r.topic, r.st.Partitions(), n+1)
		records, twice := 0, 0
		for i, c := range copies {
			if c == 0 {
				t.Fatalf("line %d is not in Kafka", i)
			}
			records += c
			if c > 1 {
				twice++
			}
		}
		if records <= n+1 {
			t.Fatalf("Kafka holds %d records for %d lines: the agent's three kills sent no line again, so the test proves nothing", records, n+1)
		}
		lines, err := s.snapshot()
		if err != nil {
			t.Fatalf("the session ended: %v", err)
		}
		if !slices.Equal(lines, want) {
			t.Errorf("session: %d lines, want %d, first difference %s", len(lines), len(want), firstDiff(lines, want))
		}
		if d := s.droppedFrames(); len(d) > 0 {
			t.Errorf("%d dropped frames, the first %s", len(d), d[0])
		}
		if t.Failed() {
			return
		}
		// livetail read every record of Kafka, and skipped each beyond
		// one per line as a resend.
		metrics := lt.Addr(t, "metrics")
		var consumed, skipped float64
		eventually(t, "every record past one per line skipped", func() error {
			m, err := scrape(metrics)
			if err != nil {
				return err
			}
			consumed, skipped = m["livetail_records_consumed_total"], m["livetail_resent_lines_skipped_total"]
			if consumed != float64(records) || skipped != float64(records-(n+1)) {
				return fmt.Errorf("%v records consumed and %v skipped; Kafka holds %d records of %d lines", consumed, skipped, records, n+1)
			}
			return nil
		})
		t.Logf("%s: %d lines, %d records in Kafka (%d lines sent twice or more): %v skipped as resent, each line shown once", kind, n+1, records, twice, skipped)
		if code := lt.Stop(t); code != 0 {
			t.Errorf("livetail exited %d after SIGTERM", code)
		}
	})
}

// liveSession is one live tail of a job, read until the test ends; it does not
// reconnect.
type liveSession struct {
	mu      sync.Mutex
	lines   []string
	dropped []string
	err     error // why it ended, if it did
}

// openSession opens a live tail of job on livetail at addr and returns
// once livetail has sent caught_up: from there on, every line written to
// the job is sent live.
func openSession(t testing.TB, addr, job string) *liveSession {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	dctx, dcancel := context.WithTimeout(ctx, within)
	conn, _, err := websocket.Dial(dctx, "ws://"+addr+"/api/v1/tail?job="+job, nil)
	dcancel()
	if err != nil {
		cancel()
		t.Fatalf("tail of job %s at %s: %v", job, addr, err)
	}
	conn.SetReadLimit(16 << 20)
	s := &liveSession{}
	caughtUp, ended := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(ended)
		defer conn.CloseNow()
		s.read(ctx, conn, caughtUp)
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	select {
	case <-caughtUp:
	case <-ended:
		_, err := s.snapshot()
		t.Fatalf("the tail of job %s ended before caught_up: %v", job, err)
	case <-time.After(within):
		t.Fatalf("no caught_up from livetail within %v", within)
	}
	return s
}

func (s *liveSession) read(ctx context.Context, conn *websocket.Conn, caughtUp chan<- struct{}) {
	for {
		_, data, err := conn.Read(ctx)
		if err != nil {
			s.mu.Lock()
			s.err = err
			s.mu.Unlock()
			return
		}
		var f struct {
			Type    string `json:"type"`
			Entries []struct {
				Line string `json:"line"`
			} `json:"entries"`
		}
		if err := json.Unmarshal(data, &f); err != nil {
			s.mu.Lock()
			s.err = fmt.Errorf("frame %q: %w", data, err)
			s.mu.Unlock()
			return
		}
		s.mu.Lock()
		switch f.Type {
		case "caught_up":
			if caughtUp != nil {
				close(caughtUp)
				caughtUp = nil
			}
		case "dropped":
			s.dropped = append(s.dropped, string(data))
		case "entries":
			for _, e := range f.Entries {
				s.lines = append(s.lines, e.Line)
			}
		}
		s.mu.Unlock()
	}
}

// snapshot returns the lines received so far, and why the session ended
// if it did.
func (s *liveSession) snapshot() ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.lines), s.err
}

func (s *liveSession) droppedFrames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.dropped)
}

// scrape reads the counters and gauges without labels of a /metrics page.
func scrape(addr string) (map[string]float64, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			out[name] = v
		}
	}
	return out, sc.Err()
}
