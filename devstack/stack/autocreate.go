package stack

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// autoCreateSetting is the cluster setting that lets a write create a
// missing index or data stream (Elasticsearch and OpenSearch; esfake has
// no cluster settings, so ForbidAutoCreate needs the real engine).
const autoCreateSetting = "action.auto_create_index"

// ForbidAutoCreate makes the search engine refuse to create, on first
// write, the indices and data streams that pattern (such as
// "logs-logpipe-default-x*") matches, as an operator does with
// action.auto_create_index: writes to such a name that does not exist
// answer 404 index_not_found_exception. It returns allow, which lifts
// the refusal and is also called when the test ends.
//
// The setting is cluster-wide, and the real engine is shared by the tests
// of the run, running in parallel in several processes: the pattern must
// name this stack's own names (Index), it goes in front of the patterns
// already set (other tests' refusals stay), and the setting is read and
// written under a lock file beside EnvBackendsFile.
func (s *Stack) ForbidAutoCreate(tb testing.TB, pattern string) (allow func()) {
	tb.Helper()
	if s.Shared() && !strings.Contains(pattern, s.suffix) {
		tb.Fatalf("stack: ForbidAutoCreate(%q) on the shared engine: the pattern must name this test's own names (%s)", pattern, s.Index("..."))
	}
	entry := "-" + pattern
	s.changeAutoCreate(tb, func(patterns []string) []string {
		return append([]string{entry}, patterns...)
	})
	var once sync.Once
	allow = func() {
		once.Do(func() {
			s.changeAutoCreate(tb, func(patterns []string) []string {
				return slices.DeleteFunc(patterns, func(p string) bool { return p == entry })
			})
		})
	}
	tb.Cleanup(allow)
	return allow
}

// changeAutoCreate reads the persistent action.auto_create_index as a list
// of patterns (the default, true, is "+*"), changes it and writes it back,
// under the lock of the shared engine's cluster settings. A list that
// comes back to "+*" resets the setting to its default.
func (s *Stack) changeAutoCreate(tb testing.TB, change func([]string) []string) {
	tb.Helper()
	unlock, err := s.lockClusterSettings()
	if err != nil {
		tb.Fatal(err)
	}
	defer unlock()

	var current struct {
		Persistent map[string]any `json:"persistent"`
		Transient  map[string]any `json:"transient"`
	}
	if err := s.esCall(http.MethodGet, "/_cluster/settings?flat_settings=true", nil, &current); err != nil {
		tb.Fatal(err)
	}
	if v, ok := current.Transient[autoCreateSetting]; ok {
		tb.Fatalf("stack: the transient cluster setting %s is %v and would hide the persistent one: reset it first", autoCreateSetting, v)
	}
	value := "true"
	if v, ok := current.Persistent[autoCreateSetting]; ok {
		value = fmt.Sprint(v)
	}
	var patterns []string
	switch value {
	case "true":
		patterns = []string{"+*"}
	case "false":
		return // nothing is created on first write anyway
	default:
		patterns = strings.Split(value, ",")
	}
	var next any = strings.Join(change(patterns), ",")
	if next == "+*" {
		next = nil // the default
	}
	body, _ := json.Marshal(map[string]any{"persistent": map[string]any{autoCreateSetting: next}})
	if err := s.esCall(http.MethodPut, "/_cluster/settings", body, nil); err != nil {
		tb.Fatal(err)
	}
}

// clusterSettingsMu serializes changes of the cluster settings within
// this process; lockClusterSettings adds a lock file for the processes
// that share the real engine.
var clusterSettingsMu sync.Mutex

func (s *Stack) lockClusterSettings() (unlock func(), err error) {
	clusterSettingsMu.Lock()
	path := os.Getenv(EnvBackendsFile)
	if !s.Shared() || path == "" {
		return clusterSettingsMu.Unlock, nil
	}
	lock := filepath.Join(filepath.Dir(path), "cluster-settings.lock")
	f, err := os.OpenFile(lock, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		clusterSettingsMu.Unlock()
		return nil, fmt.Errorf("stack: lock file of the shared cluster settings: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		clusterSettingsMu.Unlock()
		return nil, fmt.Errorf("stack: locking %s: %w", lock, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
		clusterSettingsMu.Unlock()
	}, nil
}

// esCall sends a request to the search engine and decodes a 200 answer
// into v (when not nil).
func (s *Stack) esCall(method, path string, body []byte, v any) error {
	req, err := http.NewRequest(method, s.ESURL()+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("stack: %s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("stack: %s %s: %s: %s", method, path, res.Status, b)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			return fmt.Errorf("stack: %s %s: %w", method, path, err)
		}
	}
	return nil
}
