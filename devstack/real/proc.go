package real

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
)

// StopGrace is how long a JVM has to stop after SIGTERM before it is killed.
const StopGrace = 20 * time.Second

// A failed start reports the first problemLines lines of the JVM's output
// that look like errors, and its last tailLines lines.
const (
	problemLines = 6
	tailLines    = 12
)

// jvm is one running Java child process.
type jvm struct {
	name   string
	cmd    *exec.Cmd
	stdin  *os.File // the write end of its standard input: closed, it exits
	out    *output
	exited chan struct{} // closed when the process has exited
	err    error         // its exit status, set before exited is closed

	ready    atomic.Bool // set once it serves: an exit then is news
	stopping atomic.Bool // set by stop: an exit is expected
}

// startJVM starts java with args. Its output is appended to logPath and
// each line is passed to onLine (if not nil) as it comes.
func startJVM(name, java string, args []string, logPath string, log logrus.FieldLogger, onLine func(string)) (*jvm, error) {
	out, err := newOutput(logPath, onLine)
	if err != nil {
		return nil, fmt.Errorf("%s log file: %w", name, err)
	}
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		out.Close()
		return nil, err
	}
	cmd := exec.Command(java, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdinR, out, out
	// A process group of its own: a terminal's Ctrl-C reaches the Go
	// program alone, which stops the JVM once. Pdeathsig kills the JVM if
	// the Go program dies; the JVM's main also exits when its standard
	// input ends, which covers the same case without depending on which
	// thread started it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	fmt.Fprintf(out, "---- devstack: starting %s at %s\n", name, time.Now().Format(time.RFC3339))
	if err := cmd.Start(); err != nil {
		stdinR.Close()
		stdinW.Close()
		out.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	stdinR.Close()
	j := &jvm{name: name, cmd: cmd, stdin: stdinW, out: out, exited: make(chan struct{})}
	go func() {
		j.err = cmd.Wait()
		close(j.exited)
		if j.ready.Load() && !j.stopping.Load() {
			// During a start the caller reports it; later nobody else would.
			log.WithField("log", logPath).Errorf("%s exited by itself (%v)", name, j.err)
		}
	}()
	log.WithFields(logrus.Fields{"pid": cmd.Process.Pid, "log": logPath}).Debugf("%s started", name)
	return j, nil
}

// PID is the process id.
func (j *jvm) PID() int { return j.cmd.Process.Pid }

// failed is the error for a JVM that did not start: why, then the first
// lines of its output that look like errors and its last lines.
func (j *jvm) failed(why string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", j.name, why)
	if p := j.out.Problems(); len(p) > 0 {
		fmt.Fprintf(&b, "; its first errors:\n  %s\n", strings.Join(p, "\n  "))
	} else {
		b.WriteString(";\n")
	}
	fmt.Fprintf(&b, "the last lines of %s:\n  %s", j.out.path, strings.Join(j.out.Tail(), "\n  "))
	return errors.New(b.String())
}

// stop sends SIGTERM, kills the process if it has not exited after grace,
// and waits for it.
func (j *jvm) stop(grace time.Duration, log logrus.FieldLogger) {
	j.stopping.Store(true)
	select {
	case <-j.exited:
	default:
		_ = j.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-j.exited:
		case <-time.After(grace):
			log.Warnf("%s did not stop within %v of SIGTERM: killed", j.name, grace)
			_ = j.cmd.Process.Kill()
			<-j.exited
		}
	}
	j.stdin.Close()
	fmt.Fprintf(j.out, "---- devstack: %s exited (%v)\n", j.name, j.err)
	j.out.Close()
}

// output is a JVM's standard output and error: appended to a file, split
// into lines for onLine, and the last lines kept for error messages.
type output struct {
	path   string
	onLine func(string)

	mu       sync.Mutex
	f        *os.File
	partial  []byte   // the start of a line not yet ended
	tail     []string // the last tailLines lines
	problems []string // the first problemLines lines that look like errors
	inUse    []string // the first lines that say that an address is in use
}

func newOutput(path string, onLine func(string)) (*output, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	return &output{path: path, onLine: onLine, f: f}, nil
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.f != nil {
		_, _ = o.f.Write(p) // a full disk must not stop the JVM
	}
	o.partial = append(o.partial, p...)
	for {
		i := bytes.IndexByte(o.partial, '\n')
		if i < 0 {
			break
		}
		line := strings.TrimRight(string(o.partial[:i]), "\r")
		o.partial = o.partial[i+1:]
		if len(o.tail) == tailLines {
			o.tail = append(o.tail[:0], o.tail[1:]...)
		}
		o.tail = append(o.tail, line)
		if len(o.problems) < problemLines && looksLikeError(line) {
			o.problems = append(o.problems, line)
		}
		if len(o.inUse) < problemLines && strings.Contains(line, "Address already in use") {
			o.inUse = append(o.inUse, line)
		}
		if o.onLine != nil {
			o.onLine(line)
		}
	}
	if len(o.partial) > 64<<10 { // no newline in sight: keep memory bounded
		o.partial = o.partial[:0]
	}
	return len(p), nil
}

// looksLikeError reports whether a line of a JVM's output starts an error
// report: a log line at level ERROR or FATAL, or an exception, but not a
// stack frame.
func looksLikeError(line string) bool {
	if line == "" || line[0] == '\t' || line[0] == ' ' || strings.HasPrefix(line, "Caused by:") {
		return false
	}
	return strings.Contains(line, " ERROR ") || strings.Contains(line, " FATAL ") || strings.Contains(line, "[ERROR]") ||
		strings.Contains(line, "Exception: ") || strings.Contains(line, "Error: ")
}

// Tail is the last lines written.
func (o *output) Tail() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.tail)
}

// Problems are the first lines written that look like errors.
func (o *output) Problems() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.problems)
}

// InUse are the first lines written that say that an address is in use.
func (o *output) InUse() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.inUse)
}

func (o *output) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.f == nil {
		return nil
	}
	err := o.f.Close()
	o.f = nil
	return err
}
