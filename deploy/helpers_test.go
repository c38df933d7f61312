package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"gopkg.in/yaml.v3"

	"github.com/logpipe/logpipe/devstack/proc"
)

// The Go services of docker-compose.yml, which are also the binaries and the
// Dockerfile targets.
var goServices = []string{"agent", "transfer", "livetail"}

// repoRoot is the repository root: the directory above this module.
func repoRoot(tb testing.TB) string {
	tb.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		tb.Fatal("cannot find the test's source file")
	}
	return filepath.Dir(filepath.Dir(file))
}

// repoFile is the path of a file in the repository.
func repoFile(tb testing.TB, elem ...string) string {
	tb.Helper()
	return filepath.Join(append([]string{repoRoot(tb)}, elem...)...)
}

func readRepoFile(tb testing.TB, elem ...string) []byte {
	tb.Helper()
	data, err := os.ReadFile(repoFile(tb, elem...))
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

// loadProject loads docker-compose.yml the way `docker compose` does, with the
// given profiles active and an empty environment (so the defaults in the
// file apply, whatever the shell running the test has set).
func loadProject(tb testing.TB, profiles ...string) *types.Project {
	tb.Helper()
	return loadFiles(tb, []string{"docker-compose.yml"}, profiles)
}

// loadFiles loads the compose files (relative to the repository's root),
// each over the ones before it, as `docker compose -f a -f b` does.
func loadFiles(tb testing.TB, files, profiles []string) *types.Project {
	tb.Helper()
	root := repoRoot(tb)
	paths := make([]string, len(files))
	for i, f := range files {
		paths[i] = filepath.Join(root, f)
	}
	opts, err := cli.NewProjectOptions(paths,
		cli.WithWorkingDirectory(root),
		cli.WithProfiles(profiles),
		cli.WithInterpolation(true),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		tb.Fatalf("compose options: %v", err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		tb.Fatalf("loading %v with profiles %v: %v", files, profiles, err)
	}
	return p
}

// service returns a service of p, failing the test when it is missing.
func service(tb testing.TB, p *types.Project, name string) types.ServiceConfig {
	tb.Helper()
	s, ok := p.Services[name]
	if !ok {
		tb.Fatalf("docker-compose.yml has no service %q (has %v)", name, p.ServiceNames())
	}
	return s
}

// env returns the value of a service's environment variable and whether it is set.
func env(s types.ServiceConfig, name string) (string, bool) {
	v, ok := s.Environment[name]
	if !ok || v == nil {
		return "", false
	}
	return *v, true
}

// hostPort splits "host:port" and parses the port.
func hostPort(tb testing.TB, addr string) (string, uint32) {
	tb.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		tb.Fatalf("address %q: %v", addr, err)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		tb.Fatalf("address %q: port: %v", addr, err)
	}
	return host, uint32(n)
}

// --- binaries and their flags -------------------------------------------------

// binary builds ./<name> of the repository (agent, transfer, livetail) once
// per test run and returns the executable's path.
func binary(tb testing.TB, name string) string {
	tb.Helper()
	return proc.Build(tb, "github.com/logpipe/logpipe/"+name)
}

var (
	flagsMu    sync.Mutex
	flagsCache = map[string]map[string]string{}
)

// flagsOf returns the flags of a binary, parsed from its --help: each flag's
// name and its default ("" when the help shows none).
func flagsOf(tb testing.TB, name string) map[string]string {
	tb.Helper()
	flagsMu.Lock()
	if f, ok := flagsCache[name]; ok {
		flagsMu.Unlock()
		return f
	}
	flagsMu.Unlock()

	bin := binary(tb, name)
	cmd := exec.Command(bin, "--help")
	cmd.Env = withoutLogpipeEnv(os.Environ())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 0 {
			tb.Fatalf("%s --help: %v (want exit status 0)\n%s", name, err, out.String())
		}
	}
	flags := parseHelpFlags(out.String())
	if len(flags) == 0 {
		tb.Fatalf("%s --help lists no flags:\n%s", name, out.String())
	}
	flagsMu.Lock()
	flagsCache[name] = flags
	flagsMu.Unlock()
	return flags
}

func withoutLogpipeEnv(environ []string) []string {
	return slices.DeleteFunc(slices.Clone(environ), func(kv string) bool {
		return strings.HasPrefix(kv, "LOGPIPE_")
	})
}

var (
	// helpFlag matches the first line of a flag in conf.Usage's output (and
	// in the standard flag package's): "  --name value" or "  -name".
	helpFlag = regexp.MustCompile(`^\s{1,4}--?([a-z0-9][a-z0-9-]*)(\s|$)`)
	// helpDefault matches the default in a flag's description: (default "x"; ...
	helpDefault = regexp.MustCompile(`\(default ("(?:[^"\\]|\\.)*")`)
)

// parseHelpFlags returns the flags listed in a --help text, each with its
// default when the text shows one.
func parseHelpFlags(help string) map[string]string {
	flags := map[string]string{}
	current := ""
	sc := bufio.NewScanner(strings.NewReader(help))
	for sc.Scan() {
		line := sc.Text()
		if m := helpFlag.FindStringSubmatch(line); m != nil {
			current = m[1]
			flags[current] = ""
			continue
		}
		if m := helpDefault.FindStringSubmatch(line); m != nil && current != "" {
			if v, err := strconv.Unquote(m[1]); err == nil {
				flags[current] = v
			}
		}
	}
	return flags
}

// envFlag maps LOGPIPE_KAFKA_BROKERS to kafka-brokers.
func envFlag(name string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(name, "LOGPIPE_"), "_", "-"))
}

// yamlKeys returns the top-level keys of a YAML mapping.
func yamlKeys(tb testing.TB, data []byte) []string {
	tb.Helper()
	var m map[string]any
	if err := yaml.Unmarshal(data, &m); err != nil {
		tb.Fatalf("YAML: %v", err)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// --- PromQL -------------------------------------------------------------------

var (
	promStrings  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	promMatchers = regexp.MustCompile(`\{[^}]*\}`)
	promRanges   = regexp.MustCompile(`\[[^\]]*\]`)
	promGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promIdent    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	promKeywords = map[string]bool{
		"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
		"and": true, "or": true, "unless": true, "bool": true, "offset": true, "inf": true, "nan": true,
	}
)

// promMetrics returns the metric names a PromQL expression selects.
func promMetrics(expr string) []string {
	e := promStrings.ReplaceAllString(expr, `""`)
	e = promMatchers.ReplaceAllString(e, " ")
	e = promRanges.ReplaceAllString(e, " ")
	e = promGrouping.ReplaceAllString(e, " ")
	var names []string
	for _, loc := range promIdent.FindAllStringIndex(e, -1) {
		name := e[loc[0]:loc[1]]
		if loc[0] > 0 && (e[loc[0]-1] == '$' || e[loc[0]-1] >= '0' && e[loc[0]-1] <= '9' || e[loc[0]-1] == '.') {
			continue // a variable or part of a number such as 1e3
		}
		rest := strings.TrimLeft(e[loc[1]:], " \t\n")
		if strings.HasPrefix(rest, "(") || promKeywords[strings.ToLower(name)] {
			continue // a function, an aggregation or a keyword
		}
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	return names
}
