package e2e

import (
	"cmp"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/logpipe/logpipe/common/record"
)

// jobsWriter appends lines to the agent jobs' files and produces the
// foreign job's keyless lines with kcat, every interval (default 100 ms),
// in the background: on the partitions on, in turn, or where kcat's
// partitioner puts them when on is empty.
type jobsWriter struct {
	dir, foreign, brokers, topic string
	jobs                         []string
	on                           []int32
	every                        time.Duration

	mu      sync.Mutex
	written map[string][]string // by job
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	err     error
}

func (w *jobsWriter) start(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	if w.written == nil {
		w.written = map[string][]string{}
	}
	w.wg.Go(func() {
		if err := w.run(ctx); err != nil {
			w.mu.Lock()
			w.err = err
			w.mu.Unlock()
		}
	})
}

// stop ends the writing and returns the lines written so far, all jobs;
// a second call only counts. start may be called again after it.
func (w *jobsWriter) stop(t *testing.T) int {
	t.Helper()
	w.cancel()
	w.wg.Wait()
	w.mu.Lock()
	err := w.err
	w.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	return w.count()
}

// lines returns the lines of job written so far, in order.
func (w *jobsWriter) lines(job string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.written[job])
}

// count returns the lines written so far, all jobs.
func (w *jobsWriter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, l := range w.written {
		n += len(l)
	}
	return n
}

// run writes 5 lines of each job every interval until ctx ends.
func (w *jobsWriter) run(ctx context.Context) error {
	tick := time.NewTicker(cmp.Or(w.every, 100*time.Millisecond))
	defer tick.Stop()
	for i := 0; ; i++ {
		for _, job := range w.jobs {
			lines := make([]string, 5)
			for k := range lines {
				lines[k] = fmt.Sprintf("%s line %d.%d", job, i, k)
			}
			if err := appendFile(filepath.Join(w.dir, job+".log"), lines); err != nil {
				return err
			}
			w.add(job, lines)
		}
		var in strings.Builder
		lines := make([]string, 5)
		for k := range lines {
			lines[k] = fmt.Sprintf("%s line %d.%d", w.foreign, i, k)
			r := record.Record{Timestamp: time.Now().UTC(), Message: lines[k], Job: w.foreign}
			in.Write(r.AppendJSON(nil))
			in.WriteByte('\n')
		}
		// No -K: the records have no key, the job is in the value only.
		args := []string{"-b", w.brokers, "-t", w.topic, "-P"}
		if len(w.on) > 0 {
			args = append(args, "-p", fmt.Sprint(w.on[i%len(w.on)]))
		}
		cmd := exec.Command("kcat", args...)
		cmd.Stdin = strings.NewReader(in.String())
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("kcat: %v: %s", err, out)
		}
		w.add(w.foreign, lines)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func (w *jobsWriter) add(job string, lines []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.written[job] = append(w.written[job], lines...)
}
