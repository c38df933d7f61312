// Package proc runs programs for tests and the bench harnesses: logpipe's
// binaries, built once per test binary, and tools such as redis-server.
// The harnesses, which have no testing.TB, use its starters (harness.go):
// BuildCommand, StartAgent, StartLivetail, WaitReady, Metrics, RSS and
// CPUSeconds. No binary links it: it imports testing.
//
//	bin := proc.Build(t, "github.com/logpipe/logpipe/agent")
//	agent := proc.Start(t, bin, "--metrics-addr", "127.0.0.1:0", ...)
//	metrics := agent.Addr(t, "metrics")   // the port the kernel picked
//	agent.WaitFor(t, "config applied", time.Minute)
//	agent.Kill()                          // SIGKILL, as a crash would
//
// A process's output, stdout and stderr, is kept with each line prefixed by
// the process's name, and shown in the test log when the test fails (and
// written whole under $LOGPIPE_ARTIFACTS when that is set). When the test
// ends, a process still running gets SIGTERM and, if it has not exited
// within StopGrace, SIGKILL.
//
// No test picks a port for a process: it passes 127.0.0.1:0 and Addr reads
// back the address the process printed (logging.Listening, or devstack's
// endpoint lines), so that no other test can take the port in between. A
// client that must keep one address while the process behind it restarts
// (a browser page) goes through a Relay, whose socket the test holds until
// it ends; a Relay without a target is also an address that refuses
// connections.
//
// Packages that call Build use Main as their TestMain: it removes the
// binaries at the end and checks for leaked goroutines.
package proc

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

var (
	// StopGrace is how long a process has to exit after SIGTERM before it
	// gets SIGKILL, at the end of a test and in Stop.
	StopGrace = 30 * time.Second
	// AddrWait bounds how long Addr waits for a process to print an
	// address. Processes print it within a second; the bound is for a
	// machine under heavy load.
	AddrWait = 2 * time.Minute
	// waitDelay bounds how long output is read after a process exited,
	// when a child of it still holds its stdout or stderr.
	waitDelay = 10 * time.Second
)

// ErrExited is returned (wrapped) by Await and Address when the process
// ended before printing what they wait for.
var ErrExited = errors.New("exited")

// Process is a running (or ended) program with its output kept.
type Process struct {
	name string
	cmd  *exec.Cmd
	out  *output
	done chan struct{} // closed once the process exited and its output is read
}

// Launch starts cmd, keeping its output; name prefixes the output lines
// ("" means the base name of cmd.Path). cmd.Stdout and cmd.Stderr are
// proc's. Nothing stops the process but the caller: tests use Start or
// StartCmd, which stop it when the test ends; Launch is for programs that
// have no testing.TB, such as benchmark harnesses.
func Launch(name string, cmd *exec.Cmd) (*Process, error) {
	if name == "" {
		name = filepath.Base(cmd.Path)
	}
	p := &Process{name: name, cmd: cmd, out: newOutput(), done: make(chan struct{})}
	stdout, stderr := p.out.stream(false), p.out.stream(true)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if cmd.WaitDelay == 0 {
		cmd.WaitDelay = waitDelay
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() {
		_ = cmd.Wait() // the exit status is in cmd.ProcessState
		stdout.flush()
		stderr.flush()
		close(p.done)
	}()
	return p, nil
}

// Start starts bin with args for the test and stops it when the test ends
// (SIGTERM, then SIGKILL after StopGrace); the output is in the test log if
// the test fails.
func Start(tb testing.TB, bin string, args ...string) *Process {
	tb.Helper()
	return StartCmd(tb, "", exec.Command(bin, args...))
}

// StartCmd is Start for a command prepared by the caller (environment,
// directory, process group); name is as in Launch.
func StartCmd(tb testing.TB, name string, cmd *exec.Cmd) *Process {
	tb.Helper()
	p, err := Launch(name, cmd)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if !p.Terminate(StopGrace) {
			tb.Logf("%s did not exit within %v of SIGTERM: killed", p.name, StopGrace)
		}
		if tb.Failed() {
			p.report(tb)
		}
	})
	return p
}

// Name is the prefix of the process's output lines.
func (p *Process) Name() string { return p.name }

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited and its output is read.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ExitCode is the exit status, or -1 while the process runs or when a
// signal ended it.
func (p *Process) ExitCode() int {
	if !p.Exited() {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// Signal sends sig to the process; it does nothing once the process exited.
func (p *Process) Signal(sig os.Signal) error {
	if p.Exited() {
		return nil
	}
	err := p.cmd.Process.Signal(sig)
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	return err
}

// Kill ends the process with SIGKILL, as a crash would, and waits until it
// has exited.
func (p *Process) Kill() {
	_ = p.Signal(syscall.SIGKILL)
	<-p.done
}

// Terminate sends SIGTERM and waits up to grace for the process to exit;
// then it sends SIGKILL and waits. It reports whether the process exited
// within grace (true also when it had exited before).
func (p *Process) Terminate(grace time.Duration) bool {
	if p.Exited() {
		return true
	}
	_ = p.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return true
	case <-t.C:
		p.Kill()
		return false
	}
}

// Stop sends SIGTERM, waits for the process to exit and returns its exit
// status. A process that does not exit within StopGrace gets SIGKILL and
// fails the test.
func (p *Process) Stop(tb testing.TB) int {
	tb.Helper()
	if !p.Terminate(StopGrace) {
		tb.Errorf("%s did not exit within %v of SIGTERM: killed", p.name, StopGrace)
	}
	return p.ExitCode()
}

// Wait waits until the process exits by itself and returns its exit
// status; it fails the test if that takes longer than within.
func (p *Process) Wait(tb testing.TB, within time.Duration) int {
	tb.Helper()
	t := time.NewTimer(within)
	defer t.Stop()
	select {
	case <-p.done:
		return p.ExitCode()
	case <-t.C:
		tb.Fatalf("%s still running after %v", p.name, within)
		return -1
	}
}

// Output is everything the process printed so far, each line prefixed with
// "<name> | ". Of a very long output it keeps the beginning and the end.
// stdout and stderr are read from two pipes: the order of their lines
// relative to each other is the order in which they were read.
func (p *Process) Output() string { return p.out.text(p.name+" | ", false) }

// Stdout is what the process printed on its standard output, without
// prefixes.
func (p *Process) Stdout() string { return p.out.text("", true) }

// Await waits up to timeout for an output line that pattern matches and
// returns it. pattern is a *regexp.Regexp or a string, which matches the
// lines that contain it. Lines printed before the call count.
func (p *Process) Await(pattern any, timeout time.Duration) (string, error) {
	match, what := matcher(pattern)
	return p.await(func(line string) (string, bool) { return line, match(line) }, what, timeout)
}

// WaitFor is Await that fails the test instead of returning an error.
func (p *Process) WaitFor(tb testing.TB, pattern any, timeout time.Duration) string {
	tb.Helper()
	line, err := p.Await(pattern, timeout)
	if err != nil {
		tb.Fatal(err)
	}
	return line
}

// Address waits up to timeout for the process to print the address of the
// listener called name, and returns it ("127.0.0.1:43127"). It understands
// the line logging.Listening writes (listener=<name> addr=<address>) and
// lines that start with name followed by an address or a URL, such as
// devstack's "kafka     127.0.0.1:9092 (topics ...)".
func (p *Process) Address(name string, timeout time.Duration) (string, error) {
	return p.await(func(line string) (string, bool) { return addrIn(line, name) }, "the address of "+name, timeout)
}

// Addr is Address with AddrWait, failing the test instead of returning an
// error.
func (p *Process) Addr(tb testing.TB, name string) string {
	tb.Helper()
	addr, err := p.Address(name, AddrWait)
	if err != nil {
		tb.Fatal(err)
	}
	return addr
}

func (p *Process) await(match func(string) (string, bool), what string, timeout time.Duration) (string, error) {
	found, cancel := p.out.watch(match)
	defer cancel()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case r := <-found:
		return r, nil
	case <-p.done:
		select {
		case r := <-found: // the last lines are read before done is closed
			return r, nil
		default:
		}
		return "", fmt.Errorf("%s %w (%v) before printing %s", p.name, ErrExited, p.cmd.ProcessState, what)
	case <-t.C:
		return "", fmt.Errorf("%s did not print %s within %v", p.name, what, timeout)
	}
}

// reportTail is how much of the output a failed test's log shows.
const reportTail = 32 << 10

// report puts the end of the output in the test log, and all of it in a
// file under $LOGPIPE_ARTIFACTS when that is set.
func (p *Process) report(tb testing.TB) {
	out := p.Output()
	if dir := os.Getenv("LOGPIPE_ARTIFACTS"); dir != "" {
		dir = filepath.Join(dir, strings.ReplaceAll(tb.Name(), "/", "_"))
		file := filepath.Join(dir, fmt.Sprintf("%s-%d.log", p.name, p.Pid()))
		if err := os.MkdirAll(dir, 0o755); err == nil && os.WriteFile(file, []byte(out), 0o644) == nil {
			tb.Logf("%s output: %s", p.name, file)
		}
	}
	if len(out) > reportTail {
		cut := len(out) - reportTail
		if nl := strings.IndexByte(out[cut:], '\n'); nl >= 0 {
			cut += nl + 1
		}
		out = fmt.Sprintf("[first %d bytes left out]\n%s", cut, out[cut:])
	}
	tb.Logf("%s output (%v):\n%s", p.name, p.cmd.ProcessState, out)
}

// matcher turns an Await pattern into a line matcher and a description.
func matcher(pattern any) (func(string) bool, string) {
	switch pat := pattern.(type) {
	case string:
		return func(line string) bool { return strings.Contains(line, pat) }, fmt.Sprintf("%q", pat)
	case *regexp.Regexp:
		return pat.MatchString, "a line matching " + pat.String()
	default:
		panic(fmt.Sprintf("proc: pattern %T: want a string or a *regexp.Regexp", pattern))
	}
}
