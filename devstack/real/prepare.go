package real

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
)

// project holds the Maven projects, the Java mains and Kafka's log4j2
// configuration.
//
//go:embed kafka opensearch
var project embed.FS

// CacheEnv names the environment variable that overrides CacheDir.
const CacheEnv = "LOGPIPE_CACHE_DIR"

// ErrTools is returned by Prepare when java, javac or mvn is missing.
var ErrTools = errors.New("real backends need java, javac and mvn on the PATH (Debian: openjdk-17-jdk-headless and maven; make test-deps installs them)")

// Dist is a prepared set of jars and compiled mains, ready to start.
type Dist struct {
	Dir               string // the cache folder holding kafka/ and opensearch/
	Java              string // the java command
	KafkaVersion      string // Apache Kafka's version, such as 4.1.1
	OpenSearchVersion string // OpenSearch's version, such as 2.19.6
}

func (d Dist) kafkaClassPath() string {
	return filepath.Join(d.Dir, "kafka", "classes") + ":" + filepath.Join(d.Dir, "kafka", "lib", "*")
}

func (d Dist) kafkaLog4j() string {
	return filepath.Join(d.Dir, "src", "kafka", "log4j2.properties")
}

func (d Dist) openSearchClassPath() string {
	return filepath.Join(d.Dir, "opensearch", "classes") + ":" + filepath.Join(d.Dir, "opensearch", "lib", "*")
}

// CacheDir is where Prepare keeps its folders: $LOGPIPE_CACHE_DIR, else
// logpipe in the user's cache folder ($XDG_CACHE_HOME or ~/.cache).
func CacheDir() (string, error) {
	if d := os.Getenv(CacheEnv); d != "" {
		return filepath.Abs(d)
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("real backends: no cache folder: set %s: %w", CacheEnv, err)
	}
	return filepath.Join(d, "logpipe"), nil
}

// Prepare returns the jars and mains of this version of the package,
// fetching and compiling them first if the cache does not hold them yet.
// That takes Maven (offline first, from its local repository, then from
// Maven Central) and javac, and several seconds; later calls only check
// the cache. Several processes may prepare at once: one does the work and
// the others wait for it.
func Prepare(ctx context.Context, log logrus.FieldLogger) (Dist, error) {
	if log == nil {
		log = discard()
	}
	var tools [3]string
	for i, name := range []string{"java", "javac", "mvn"} {
		p, err := exec.LookPath(name)
		if err != nil {
			return Dist{}, fmt.Errorf("%w: %s not found", ErrTools, name)
		}
		tools[i] = p
	}
	java, javac, mvn := tools[0], tools[1], tools[2]
	root, err := CacheDir()
	if err != nil {
		return Dist{}, err
	}
	key, err := projectKey()
	if err != nil {
		return Dist{}, err
	}
	d := Dist{
		Dir:               filepath.Join(root, "devstack-real", key),
		Java:              java,
		KafkaVersion:      pomProperty("kafka", "kafka.version"),
		OpenSearchVersion: pomProperty("opensearch", "opensearch.version"),
	}
	done := filepath.Join(d.Dir, "complete")
	if _, err := os.Stat(done); err == nil {
		return d, nil
	}
	if err := os.MkdirAll(filepath.Dir(d.Dir), 0o755); err != nil {
		return Dist{}, fmt.Errorf("real backends: cache folder: %w", err)
	}
	unlock, err := lockFile(ctx, d.Dir+".lock")
	if err != nil {
		return Dist{}, err
	}
	defer unlock()
	if _, err := os.Stat(done); err == nil {
		return d, nil // another process prepared it while this one waited
	}
	start := time.Now()
	log.WithField("dir", d.Dir).Info("real backends: fetching Kafka and OpenSearch jars with Maven (once)")
	tmp, err := os.MkdirTemp(filepath.Dir(d.Dir), key+".tmp-")
	if err != nil {
		return Dist{}, fmt.Errorf("real backends: cache folder: %w", err)
	}
	defer os.RemoveAll(tmp) // gone after the rename below
	if err := build(ctx, tmp, mvn, javac); err != nil {
		return Dist{}, err
	}
	if err := os.WriteFile(filepath.Join(tmp, "complete"), nil, 0o644); err != nil {
		return Dist{}, err
	}
	_ = os.RemoveAll(d.Dir) // an incomplete folder left by a killed run
	if err := os.Rename(tmp, d.Dir); err != nil {
		return Dist{}, fmt.Errorf("real backends: cache folder: %w", err)
	}
	log.WithFields(logrus.Fields{"dir": d.Dir, "took": time.Since(start).Round(time.Millisecond)}).Info("real backends: jars ready")
	return d, nil
}

// build writes the embedded project into dir/src, fetches the jars of each
// part into dir/PART/lib and compiles its main into dir/PART/classes.
func build(ctx context.Context, dir, mvn, javac string) error {
	src := filepath.Join(dir, "src")
	if err := os.CopyFS(src, project); err != nil {
		return fmt.Errorf("real backends: writing the Maven projects: %w", err)
	}
	for _, part := range []string{"kafka", "opensearch"} {
		lib := filepath.Join(dir, part, "lib")
		args := []string{"-B", "-q", "-f", filepath.Join(src, part, "pom.xml"),
			"dependency:copy-dependencies", "-DoutputDirectory=" + lib}
		// Offline first: Maven's local repository may hold every jar already.
		if _, err := run(ctx, mvn, append([]string{"-o"}, args...)...); err != nil {
			if out, err := run(ctx, mvn, args...); err != nil {
				return fmt.Errorf("real backends: fetching Kafka and OpenSearch jars with Maven failed: %s; is Maven Central reachable?", mavenError(out, err))
			}
		}
		var sources []string
		err := filepath.WalkDir(filepath.Join(src, part, "src"), func(p string, e fs.DirEntry, err error) error {
			if err == nil && strings.HasSuffix(p, ".java") {
				sources = append(sources, p)
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("real backends: Java sources: %w", err)
		}
		args = append([]string{"-nowarn", "-encoding", "UTF-8", "-d", filepath.Join(dir, part, "classes"),
			"-cp", filepath.Join(lib, "*")}, sources...)
		if out, err := run(ctx, javac, args...); err != nil {
			return fmt.Errorf("real backends: compiling the %s main with javac failed: %v: %s", part, err, lastLines(out, 10))
		}
	}
	return nil
}

// run runs a command and returns its combined output.
func run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

// mavenError is the first error line of Maven's output, or err.
func mavenError(out []byte, err error) string {
	for line := range strings.Lines(string(out)) {
		if l := strings.TrimSpace(line); strings.HasPrefix(l, "[ERROR]") && len(l) > len("[ERROR] ") {
			return strings.TrimSpace(strings.TrimPrefix(l, "[ERROR]"))
		}
	}
	if s := strings.TrimSpace(lastLines(out, 1)); s != "" {
		return s
	}
	return err.Error()
}

// lastLines is the last n lines of out.
func lastLines(out []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// projectKey is a hash of the embedded files, naming the cache folder.
func projectKey() (string, error) {
	var paths []string
	err := fs.WalkDir(project, ".", func(p string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			paths = append(paths, p)
		}
		return err
	})
	if err != nil {
		return "", err
	}
	slices.Sort(paths)
	h := sha256.New()
	for _, p := range paths {
		b, err := project.ReadFile(p)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", p, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// pomProperty is the value of <name> in part/pom.xml's properties.
func pomProperty(part, name string) string {
	b, err := project.ReadFile(part + "/pom.xml")
	if err != nil {
		panic(err) // embedded: cannot be missing
	}
	m := regexp.MustCompile(`<` + regexp.QuoteMeta(name) + `>([^<]+)</`).FindSubmatch(b)
	if m == nil {
		panic(fmt.Sprintf("%s/pom.xml has no property %s", part, name))
	}
	return string(m[1])
}

// lockFile takes an exclusive lock on path, waiting for other processes
// until ctx ends, and returns its release.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("real backends: cache lock: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("real backends: cache lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("real backends: waiting for another process preparing %s: %w", filepath.Dir(path), context.Cause(ctx))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func discard() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}
