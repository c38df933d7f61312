package proc

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

// builds holds the binaries Build made in this test binary.
var builds struct {
	mu    sync.Mutex
	dir   string // made on first use, removed by Main
	byPkg map[string]*build
	bases map[string]string // base name → the package built under it in dir
}

type build struct {
	once sync.Once
	path string
	err  error
}

// Build builds the main package pkg (an import path, such as
// "github.com/logpipe/logpipe/agent") once per test binary, however many
// tests ask for it, and returns the executable's path. The go command runs
// in the test's directory, inside the go.work workspace. The binaries land
// side by side in one directory, as make build's bin/ does (devstack --all
// runs the services it finds beside itself); a second package with the same
// base name goes in a directory of its own.
func Build(tb testing.TB, pkg string) string {
	tb.Helper()
	builds.mu.Lock()
	if builds.byPkg == nil {
		builds.byPkg, builds.bases = map[string]*build{}, map[string]string{}
	}
	b, ok := builds.byPkg[pkg]
	if !ok {
		b = &build{}
		builds.byPkg[pkg] = b
	}
	n := len(builds.byPkg)
	builds.mu.Unlock()

	b.once.Do(func() { b.path, b.err = goBuild(pkg, n) })
	if b.err != nil {
		tb.Fatal(b.err)
	}
	return b.path
}

// goBuild builds pkg, the n-th package asked for.
func goBuild(pkg string, n int) (string, error) {
	base := path.Base(pkg)
	builds.mu.Lock()
	if builds.dir == "" {
		dir, err := os.MkdirTemp("", "logpipe-test-bin-")
		if err != nil {
			builds.mu.Unlock()
			return "", fmt.Errorf("building %s: %w", pkg, err)
		}
		builds.dir = dir
	}
	dir := builds.dir
	if other, taken := builds.bases[base]; taken && other != pkg {
		dir = filepath.Join(dir, strconv.Itoa(n))
	} else {
		builds.bases[base] = pkg
	}
	builds.mu.Unlock()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("building %s: %w", pkg, err)
	}
	bin := filepath.Join(dir, base)
	// go test puts its own go command first in PATH. Without symbol tables
	// the link takes half the time; tracebacks still have file and line.
	cmd := exec.Command("go", "build", "-buildvcs=false", "-ldflags=-s -w", "-o", bin, pkg)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin, nil
}

// RemoveBuilds removes the binaries Build made. Main calls it; a TestMain
// of its own calls it after m.Run.
func RemoveBuilds() {
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if builds.dir != "" {
		os.RemoveAll(builds.dir)
		builds.dir, builds.byPkg, builds.bases = "", nil, nil
	}
}

// Main is a TestMain for packages that start processes:
//
//	func TestMain(m *testing.M) { proc.Main(m) }
//
// It runs the tests, fails the run if goroutines leaked (goleak, with
// opts, which must not include goleak.Cleanup), removes what Build built
// and exits.
func Main(m *testing.M, opts ...goleak.Option) {
	goleak.VerifyTestMain(m, append(opts, goleak.Cleanup(func(code int) {
		RemoveBuilds()
		os.Exit(code)
	}))...)
}

// Tool returns the path of the command name that a test drives (etcdctl,
// kcat, curl), and fails the test, naming its Debian package pkg, when it
// is not installed.
func Tool(tb testing.TB, name, pkg string) string {
	tb.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		tb.Fatalf("%s not found: `make test-deps` installs it (Debian package %s)", name, pkg)
	}
	return path
}

// Output runs cmd to its end with stdin as its input and returns its
// stdout; it fails the test, with cmd's stderr, when cmd fails.
func Output(tb testing.TB, cmd *exec.Cmd, stdin string) string {
	tb.Helper()
	cmd.Stdin = strings.NewReader(stdin)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("%s: %v; stderr %q", strings.Join(cmd.Args, " "), err, stderr.String())
	}
	return string(out)
}
