package real

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// fakeTools puts stand-ins for java, javac and mvn first on the PATH. The
// mvn one counts its runs in the file it returns, fails offline (-o) as
// with an empty local repository, and otherwise creates the output folder
// with a jar in it, or fails as Maven does without network when
// FAKE_MVN_FAIL=1.
func fakeTools(t *testing.T) (calls string) {
	t.Helper()
	bin := t.TempDir()
	calls = filepath.Join(bin, "calls")
	scripts := map[string]string{
		"java": "#!/bin/sh\nexit 0\n",
		"javac": `#!/bin/sh
while [ $# -gt 0 ]; do [ "$1" = -d ] && mkdir -p "$2"; shift; done
`,
		"mvn": `#!/bin/sh
echo "$*" >> "` + calls + `"
for a in "$@"; do [ "$a" = -o ] && { echo "[ERROR] offline: artifact not in the local repository"; exit 1; }; done
if [ "$FAKE_MVN_FAIL" = 1 ]; then
  echo "[INFO] Scanning for projects..."
  echo "[ERROR] Failed to execute goal on project kafka-jars: Could not resolve dependencies: Could not transfer artifact org.apache.kafka:kafka_2.13:pom:4.1.1"
  echo "[ERROR] "
  exit 1
fi
for a in "$@"; do case "$a" in -DoutputDirectory=*) d="${a#-DoutputDirectory=}"; mkdir -p "$d"; touch "$d/x.jar";; esac; done
`,
	}
	for name, script := range scripts {
		if err := os.WriteFile(filepath.Join(bin, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv(CacheEnv, t.TempDir())
	return calls
}

func mvnRuns(t *testing.T, calls string) int {
	t.Helper()
	b, err := os.ReadFile(calls)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

func TestPrepareWithoutTools(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := Prepare(t.Context(), nil)
	if !errors.Is(err, ErrTools) || !strings.Contains(err.Error(), "java not found") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Prepare without java: %v; want one line wrapping ErrTools that names java", err)
	}
}

func TestPrepareMavenFails(t *testing.T) {
	calls := fakeTools(t)
	t.Setenv("FAKE_MVN_FAIL", "1")
	_, err := Prepare(t.Context(), nil)
	want := "real backends: fetching Kafka and OpenSearch jars with Maven failed: Failed to execute goal on project kafka-jars: " +
		"Could not resolve dependencies: Could not transfer artifact org.apache.kafka:kafka_2.13:pom:4.1.1; is Maven Central reachable?"
	if err == nil || err.Error() != want {
		t.Fatalf("Prepare with Maven failing: %v\nwant: %s", err, want)
	}
	if n := mvnRuns(t, calls); n != 2 {
		t.Errorf("mvn ran %d times, want 2 (offline, then online)", n)
	}
	// Nothing half-done is taken for a prepared cache.
	t.Setenv("FAKE_MVN_FAIL", "0")
	d, err := Prepare(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := mvnRuns(t, calls); n != 2+4 {
		t.Errorf("mvn ran %d times in all, want 6: a failed preparation is done again", n)
	}
	if _, err := os.Stat(filepath.Join(d.Dir, "kafka", "lib", "x.jar")); err != nil {
		t.Errorf("the prepared cache lacks Kafka's jars: %v", err)
	}
}

// TestPrepareCaches: the first Prepare fetches and compiles, concurrent
// ones wait for it, later ones only look.
func TestPrepareCaches(t *testing.T) {
	calls := fakeTools(t)
	var wg sync.WaitGroup
	dists := make([]Dist, 3)
	errs := make([]error, 3)
	for i := range dists {
		wg.Go(func() { dists[i], errs[i] = Prepare(t.Context(), nil) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Prepare %d: %v", i, err)
		}
		if dists[i] != dists[0] {
			t.Fatalf("Prepare %d gave %+v, Prepare 0 %+v", i, dists[i], dists[0])
		}
	}
	d := dists[0]
	if n := mvnRuns(t, calls); n != 4 {
		t.Errorf("mvn ran %d times, want 4 (offline, then online, for Kafka and for OpenSearch)", n)
	}
	root, _ := CacheDir()
	if !strings.HasPrefix(d.Dir, filepath.Join(root, "devstack-real")+string(filepath.Separator)) {
		t.Errorf("Dist.Dir %s is not in the cache folder %s", d.Dir, root)
	}
	for _, p := range []string{"kafka/lib/x.jar", "kafka/classes", "opensearch/lib/x.jar", "opensearch/classes",
		"src/kafka/pom.xml", "src/kafka/log4j2.properties", "src/opensearch/pom.xml"} {
		if _, err := os.Stat(filepath.Join(d.Dir, p)); err != nil {
			t.Errorf("prepared cache: %v", err)
		}
	}
	if d.KafkaVersion != "4.1.1" || d.OpenSearchVersion != "2.19.6" {
		t.Errorf("versions %s and %s, want those of the poms, 4.1.1 and 2.19.6", d.KafkaVersion, d.OpenSearchVersion)
	}
	if _, err := Prepare(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if n := mvnRuns(t, calls); n != 4 {
		t.Errorf("mvn ran %d times after a prepared cache, want no more than the 4 before", n)
	}
}
