// Command bench measures the agent from file to Kafka-acknowledged and, in
// the same run and against the same broker, Debian's kcat producing the same
// file with the same compression (lz4) and acks (all): kcat is the ceiling.
//
//	go run ./bench/agent              # 500,000 lines of 200 bytes
//	go run ./bench/agent -lines 1000000 -line-bytes 200
//
// It starts the devstack backends in this process (etcd and the kfake
// broker), builds and runs the agent binary, and prints a table: lines/s,
// MiB/s of the file, the agent's share of kcat's rate, and the agent's
// resident memory (sampled during the run, and its peak).
package main

import (
	"bufio"
	"cmp"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/logpipe/logpipe/common/keys"
	"github.com/logpipe/logpipe/devstack/backends"
	"github.com/logpipe/logpipe/devstack/proc"
)

func main() {
	lines := flag.Int("lines", 500000, "lines in the file")
	lineBytes := flag.Int("line-bytes", 200, "bytes per line, newline included")
	agentArgs := flag.String("agent-args", "", "extra agent flags, space-separated")
	agentBin := flag.String("agent-bin", "", "agent binary to measure (default: build ./agent), to compare builds under the same conditions")
	kcatArgs := flag.String("kcat-args", "", "extra kcat flags, space-separated (e.g. -X linger.ms=20)")
	rounds := flag.Int("rounds", 3, "rounds of kcat then agent; best and median are reported")
	flag.Parse()
	if err := run(*agentBin, *lines, *lineBytes, max(*rounds, 1), strings.Fields(*agentArgs), strings.Fields(*kcatArgs)); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type result struct {
	dur      time.Duration
	rssMin   int64
	rssMax   int64
	rssPeak  int64
	hasRSS   bool
	fileSize int64
	lines    int
}

func (r result) row(name string, ceiling float64) string {
	lps := float64(r.lines) / r.dur.Seconds()
	mibs := float64(r.fileSize) / (1 << 20) / r.dur.Seconds()
	share := "-"
	if ceiling > 0 {
		share = fmt.Sprintf("%.0f%%", 100*lps/ceiling)
	}
	mem := "-"
	if r.hasRSS {
		mem = fmt.Sprintf("%d–%d MiB (peak %d MiB)", r.rssMin>>20, r.rssMax>>20, r.rssPeak>>20)
	}
	return fmt.Sprintf("| %-22s | %10.0f | %7.1f | %7s | %7.2fs | %-36s |", name, lps, mibs, share, r.dur.Seconds(), mem)
}

func run(bin string, nLines, lineBytes, rounds int, extra, kcatExtra []string) error {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		return fmt.Errorf("kcat not found (Debian package kcat; `make test` installs it): %w", err)
	}
	work, err := os.MkdirTemp("", "agent-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	fmt.Fprintf(os.Stderr, "writing %d lines of %d bytes...\n", nLines, lineBytes)
	file := filepath.Join(work, "bench.log")
	size, err := writeFile(file, nLines, lineBytes)
	if err != nil {
		return err
	}
	if bin == "" {
		if bin, err = proc.BuildCommand(work, "agent"); err != nil {
			return err
		}
	}

	ctx := context.Background()
	s, err := backends.Start(ctx, backends.Options{Without: []string{backends.ES}, Topics: []string{"logs", "bench.kcat"}})
	if err != nil {
		return err
	}
	defer s.Close()
	cli, err := clientv3.New(clientv3.Config{Endpoints: s.EtcdEndpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer cli.Close()

	var kcats, agents []result
	for round := range rounds {
		fmt.Fprintf(os.Stderr, "round %d: kcat...\n", round+1)
		kc, err := runKcat(kcat, s.KafkaAddrs()[0], file, kcatExtra)
		if err != nil {
			return err
		}
		kc.fileSize, kc.lines = size, nLines
		kcats = append(kcats, kc)
		fmt.Fprintf(os.Stderr, "round %d: agent...\n", round+1)
		ag, err := runAgent(ctx, bin, s, cli, file, nLines, filepath.Join(work, fmt.Sprint("state", round)), fmt.Sprint("bench-", round), extra)
		if err != nil {
			return err
		}
		ag.fileSize, ag.lines = size, nLines
		agents = append(agents, ag)
	}

	fmt.Printf("file: %d lines of %d bytes, %.1f MiB; broker: kfake (in-process); lz4, acks=all, idempotent, one key; %d rounds, kcat and agent alternating\n\n",
		nLines, lineBytes, float64(size)/(1<<20), rounds)
	fmt.Println("| run                    |    lines/s |   MiB/s | of kcat |     time | agent RSS: min–max during run (peak) |")
	fmt.Println("|------------------------|------------|---------|---------|----------|--------------------------------------|")
	for i := range kcats {
		fmt.Println(kcats[i].row(fmt.Sprintf("kcat, round %d", i+1), 0))
		fmt.Println(agents[i].row(fmt.Sprintf("agent, round %d", i+1), kcats[i].rate()))
	}
	bk, ba := best(kcats), best(agents)
	mk, ma := median(kcats), median(agents)
	fmt.Println(bk.row("kcat, best", 0))
	fmt.Println(ba.row("agent, best", bk.rate()))
	fmt.Println(mk.row("kcat, median", 0))
	fmt.Println(ma.row("agent, median", mk.rate()))
	return nil
}

func (r result) rate() float64 { return float64(r.lines) / r.dur.Seconds() }

func best(rs []result) result {
	b := rs[0]
	for _, r := range rs[1:] {
		if r.dur < b.dur {
			b = r
		}
	}
	return b
}

func median(rs []result) result {
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b result) int { return cmp.Compare(a.dur, b.dur) })
	return s[len(s)/2]
}

// runKcat produces the file with kcat: idempotent, acks=all, lz4, one key.
func runKcat(kcat, broker, file string, extra []string) (result, error) {
	args := append([]string{"-P", "-q", "-b", broker, "-t", "bench.kcat", "-k", "bench", "-z", "lz4",
		"-X", "acks=all", "-X", "enable.idempotence=true"}, extra...)
	start := time.Now()
	cmd := exec.Command(kcat, append(args, "-l", file)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return result{}, fmt.Errorf("kcat: %v: %s", err, out)
	}
	return result{dur: time.Since(start)}, nil
}

// runAgent starts an agent with a fresh state directory, gives it the
// file in its config and times until Kafka acknowledged every line.
func runAgent(ctx context.Context, bin string, s *backends.Stack, cli *clientv3.Client, file string, nLines int, state, name string, extra []string) (result, error) {
	prof := os.Getenv("BENCH_CPU_PROFILE")
	args := append([]string{"--log-format", "json"}, extra...)
	if prof != "" {
		args = append(args, "--pprof")
	}
	agent, addr, err := proc.StartAgent(bin, name, s.EtcdEndpoints()[0], s.KafkaAddrs()[0], state, args...)
	if err != nil {
		return result{}, err
	}
	defer agent.Kill()
	var profiling sync.WaitGroup
	defer profiling.Wait() // before the agent is killed
	if prof != "" {
		profiling.Go(func() {
			if err := proc.SaveProfile(addr, "profile?seconds=3", prof); err != nil {
				fmt.Fprintln(os.Stderr, "CPU profile:", err)
			}
		})
	}
	cfg := fmt.Sprintf(`[{"path":%q,"from":"beginning","job":"bench"}]`, file)
	start := time.Now()
	if _, err := cli.Put(ctx, keys.AgentConfig(name), cfg); err != nil {
		return result{}, err
	}
	ag := result{hasRSS: true, rssMin: 1 << 62}
	deadline := start.Add(10 * time.Minute)
	for {
		acked, _ := proc.Metric(addr, "agent_lines_acked_total")
		cur, peak := proc.RSS(agent.Pid())
		if cur > 0 {
			ag.rssMin, ag.rssMax, ag.rssPeak = min(ag.rssMin, cur), max(ag.rssMax, cur), peak
		}
		if int(acked) >= nLines {
			ag.dur = time.Since(start)
			return ag, nil
		}
		if time.Now().After(deadline) {
			return result{}, fmt.Errorf("agent acknowledged %v of %d lines in 10 minutes", acked, nLines)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// writeFile writes n numbered lines of size bytes each (newline included).
func writeFile(path string, n, size int) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	pad := strings.Repeat("abcdefghij", size/10+1)
	for i := range n {
		head := "2026-11-21T10:00:00.000Z INFO bench line " + strconv.Itoa(i) + " "
		body := head + pad
		if len(body) > size-1 {
			body = body[:size-1]
		}
		w.WriteString(body)
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		return 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), f.Close()
}
