package proc

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The starters below are for the bench harnesses (bench/), which have no
// testing.TB: they return errors, and the caller stops what they started.

// readyWait bounds how long a started service may take to answer /readyz.
const readyWait = time.Minute

// BuildCommand builds the repository's command name (agent, transfer,
// livetail or devstack) into dir and returns the executable's path. The go
// command runs in the current directory, which must be inside the
// repository.
func BuildCommand(dir, name string) (string, error) {
	fmt.Fprintf(os.Stderr, "building %s...\n", name)
	bin := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", bin, "github.com/logpipe/logpipe/"+name)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building %s (run inside the repository): %w", name, err)
	}
	return bin, nil
}

// StartAgent starts the agent binary bin as agent name, on etcd and the
// Kafka brokers, with its state in stateDir, its metrics on a port the
// kernel picks, and extra flags. It returns once the agent's /readyz
// answers 200, with its metrics address; on error, the agent is stopped.
func StartAgent(bin, name, etcd, kafka, stateDir string, extra ...string) (p *Process, metrics string, err error) {
	args := append([]string{
		"--name", name, "--etcd-endpoints", etcd, "--kafka-brokers", kafka,
		"--state-dir", stateDir, "--metrics-addr", "127.0.0.1:0",
	}, extra...)
	p, err = Launch("agent", exec.Command(bin, args...))
	if err != nil {
		return nil, "", err
	}
	if metrics, err = p.Address("metrics", readyWait); err == nil {
		err = WaitReady(metrics)
	}
	if err != nil {
		p.Kill()
		return nil, "", fmt.Errorf("agent: %w\n%s", err, p.Output())
	}
	return p, metrics, nil
}

// StartLivetail starts the livetail binary bin on the Kafka brokers, with
// its HTTP and metrics listeners on ports the kernel picks, and extra
// flags. It returns once /readyz answers 200, with both addresses; on
// error, livetail is stopped.
func StartLivetail(bin, kafka string, extra ...string) (p *Process, http, metrics string, err error) {
	args := append([]string{"--kafka-brokers", kafka, "--listen", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0"}, extra...)
	p, err = Launch("livetail", exec.Command(bin, args...))
	if err != nil {
		return nil, "", "", err
	}
	if http, err = p.Address("http", readyWait); err == nil {
		if metrics, err = p.Address("metrics", readyWait); err == nil {
			err = WaitReady(http)
		}
	}
	if err != nil {
		p.Kill()
		return nil, "", "", fmt.Errorf("livetail: %w\n%s", err, p.Output())
	}
	return p, http, metrics, nil
}

// WaitReady returns once http://addr/readyz answers 200, or an error
// after a minute.
func WaitReady(addr string) error {
	var last string
	for deadline := time.Now().Add(readyWait); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			last = err.Error()
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return nil
		}
		last = resp.Status
	}
	return fmt.Errorf("not ready at %s within %v: %s", addr, readyWait, last)
}

// Metric returns the value of the metric without labels name from
// http://addr/metrics; ok is false when it cannot be read.
func Metric(addr, name string) (v float64, ok bool) {
	v, ok = Metrics(addr, name)[name]
	return v, ok
}

// Metrics returns the values of the metrics without labels names, read
// from http://addr/metrics in one request (a scrape costs the process
// allocations of its own); a metric that cannot be read is missing.
func Metrics(addr string, names ...string) map[string]float64 {
	vs := make(map[string]float64, len(names))
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return vs
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, found := strings.Cut(sc.Text(), " ")
		if !found || !slices.Contains(names, name) {
			continue
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			vs[name] = v
		}
	}
	return vs
}

// RSS returns the resident and peak resident memory of process pid in
// bytes (VmRSS and VmHWM of /proc/<pid>/status), or 0, 0 when it cannot be
// read.
func RSS(pid int) (cur, peak int64) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) >= 2 {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			switch f[0] {
			case "VmRSS:":
				cur = n << 10
			case "VmHWM:":
				peak = n << 10
			}
		}
	}
	return cur, peak
}

// CPUSeconds is the user and system CPU time of process pid so far; 0
// when it cannot be read.
func CPUSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ is 100 on Linux
}

// LoadAvg is the machine's load average over 1, 5 and 15 minutes, such
// as "0.52 0.61 0.70"; "?" when it cannot be read.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// SaveProfile saves to file the profile that http://addr/debug/pprof/path
// serves (path with its query, such as "profile?seconds=3"; the process
// runs with --pprof). A CPU profile takes as long as its seconds say.
func SaveProfile(addr, path, file string) error {
	resp, err := http.Get("http://" + addr + "/debug/pprof/" + path)
	if err != nil {
		return fmt.Errorf("profile %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile %s: %s answered %s", path, addr, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("profile %s: %w", path, err)
	}
	return f.Close()
}
