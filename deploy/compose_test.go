package deploy_test

import (
	"maps"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
)

const (
	healthy   = types.ServiceConditionHealthy
	completed = types.ServiceConditionCompletedSuccessfully
)

// isOneShot reports whether a service runs once and exits (the init services).
func isOneShot(name string) bool { return strings.HasPrefix(name, "init-") }

func TestComposeServices(t *testing.T) {
	base := []string{
		"kafka", "etcd", "elasticsearch", "kibana", "redis",
		"init-topics", "init-etcd", "init-kibana", "sample-writer",
		"agent", "transfer", "livetail",
	}
	tests := map[string]struct {
		profiles []string
		want     []string
		absent   []string
	}{
		"default":    {want: base, absent: []string{"prometheus", "grafana"}},
		"monitoring": {profiles: []string{"monitoring"}, want: append(slices.Clone(base), "prometheus", "grafana")},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			p := loadProject(t, tt.profiles...)
			got := p.ServiceNames()
			for _, s := range tt.want {
				if !slices.Contains(got, s) {
					t.Errorf("service %q is missing (have %v)", s, got)
				}
			}
			for _, s := range tt.absent {
				if slices.Contains(got, s) {
					t.Errorf("service %q runs without the monitoring profile", s)
				}
			}
			for _, s := range got {
				if !slices.Contains(tt.want, s) {
					t.Errorf("service %q is not known to this test: add it to the table", s)
				}
			}
		})
	}
}

func TestComposeGoServicesBuildFromRepo(t *testing.T) {
	p := loadProject(t)
	root := repoRoot(t)
	stages := dockerfileStages(t)
	for _, name := range goServices {
		t.Run(name, func(t *testing.T) {
			s := service(t, p, name)
			if s.Build == nil {
				t.Fatalf("%s has no build section", name)
			}
			if got := filepath.Clean(s.Build.Context); got != root {
				t.Errorf("%s build context = %q, want the repository root %q", name, got, root)
			}
			if df := s.Build.Dockerfile; df != "" && filepath.Base(df) != "Dockerfile" {
				t.Errorf("%s dockerfile = %q, want the repository's Dockerfile", name, df)
			}
			if s.Build.Target != name {
				t.Errorf("%s build target = %q, want %q", name, s.Build.Target, name)
			}
			if _, ok := stages[s.Build.Target]; !ok {
				t.Errorf("%s: the Dockerfile has no stage %q (stages: %v)", name, s.Build.Target, slices.Sorted(maps.Keys(stages)))
			}
			if s.User == "0" || s.User == "root" || strings.HasPrefix(s.User, "0:") {
				t.Errorf("%s runs as %q; the images run as a non-root user", name, s.User)
			}
		})
	}
}

func TestComposeHealthChecks(t *testing.T) {
	p := loadProject(t, "monitoring")
	for _, name := range p.ServiceNames() {
		s := p.Services[name]
		if isOneShot(name) {
			if s.Restart != "" && s.Restart != types.RestartPolicyNo {
				t.Errorf("one-shot service %s has restart %q, want \"no\"", name, s.Restart)
			}
			continue
		}
		hc := s.HealthCheck
		if hc == nil || hc.Disable || len(hc.Test) < 2 || hc.Test[0] == "NONE" {
			t.Errorf("service %s has no health check", name)
			continue
		}
		if hc.Test[0] != "CMD" && hc.Test[0] != "CMD-SHELL" {
			t.Errorf("service %s: health check test %q, want CMD or CMD-SHELL", name, hc.Test)
		}
		if hc.Interval == nil || hc.Retries == nil {
			t.Errorf("service %s: health check without interval or retries", name)
		}
	}
}

func TestComposeGoServicesHealthCheckTheirPort(t *testing.T) {
	p := loadProject(t)
	for _, name := range goServices {
		s := service(t, p, name)
		_, port := hostPort(t, listenAddr(t, s))
		test := strings.Join(s.HealthCheck.Test, " ")
		u := regexp.MustCompile(`https?://[^\s"']+`).FindString(test)
		if u == "" {
			t.Errorf("%s: health check %q calls no URL", name, test)
			continue
		}
		parsed, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		if _, hp := hostPort(t, parsed.Host); hp != port {
			t.Errorf("%s: health check calls port %d, the service listens on %d", name, hp, port)
		}
		if parsed.Path != "/readyz" && parsed.Path != "/healthz" {
			t.Errorf("%s: health check calls %s, want /readyz or /healthz", name, parsed.Path)
		}
		if !strings.HasPrefix(test, "CMD wget ") {
			t.Errorf("%s: health check %q: the Alpine-based images have busybox wget (and no shell is needed)", name, test)
		}
	}
}

func TestComposeDependsOn(t *testing.T) {
	p := loadProject(t, "monitoring")
	want := map[string]map[string]string{
		"agent":       {"etcd": healthy, "kafka": healthy, "init-topics": completed, "init-etcd": completed},
		"transfer":    {"kafka": healthy, "elasticsearch": healthy, "init-topics": completed},
		"livetail":    {"kafka": healthy, "redis": healthy, "init-topics": completed},
		"kibana":      {"elasticsearch": healthy},
		"init-topics": {"kafka": healthy},
		"init-etcd":   {"etcd": healthy},
		"init-kibana": {"kibana": healthy},
		"grafana":     {"prometheus": healthy},
	}
	for svc, deps := range want {
		s := service(t, p, svc)
		for dep, cond := range deps {
			got, ok := s.DependsOn[dep]
			if !ok {
				t.Errorf("%s does not depend on %s", svc, dep)
				continue
			}
			if got.Condition != cond {
				t.Errorf("%s depends on %s with condition %q, want %q", svc, dep, got.Condition, cond)
			}
		}
	}
	// Every dependency waits for health or completion, never just a start.
	for _, name := range p.ServiceNames() {
		for dep, d := range p.Services[name].DependsOn {
			ds, ok := p.Services[dep]
			if !ok {
				t.Errorf("%s depends on %s, which is not a service", name, dep)
				continue
			}
			switch {
			case isOneShot(dep) && d.Condition != completed:
				t.Errorf("%s depends on one-shot %s with condition %q, want %q", name, dep, d.Condition, completed)
			case !isOneShot(dep) && d.Condition != healthy:
				t.Errorf("%s depends on %s with condition %q, want %q", name, dep, d.Condition, healthy)
			case d.Condition == healthy && ds.HealthCheck == nil:
				t.Errorf("%s waits for %s to be healthy, which has no health check", name, dep)
			}
		}
	}
}

// listenAddr is the address a Go service serves /metrics on: its
// --metrics-addr.
func listenAddr(tb testing.TB, s types.ServiceConfig) string {
	tb.Helper()
	name := "LOGPIPE_METRICS_ADDR"
	v, ok := env(s, name)
	if !ok {
		tb.Fatalf("%s does not set %s", s.Name, name)
	}
	return v
}

// listenFlag is the flag behind listenAddr.
func listenFlag(string) string { return "metrics-addr" }

func TestComposePortsOnLoopback(t *testing.T) {
	p := loadProject(t, "monitoring")
	for _, name := range p.ServiceNames() {
		for _, port := range p.Services[name].Ports {
			if port.HostIP != "127.0.0.1" {
				t.Errorf("%s publishes port %d on %q, want 127.0.0.1", name, port.Target, port.HostIP)
			}
			if port.Published == "" {
				t.Errorf("%s publishes port %d on a random host port", name, port.Target)
			}
		}
	}
}

// TestComposeGoServicesPorts checks that each Go service listens on all
// interfaces inside its container, on the port its binary uses by default,
// and that the same port is published on the host: a client on the host
// uses the binary's default address.
func TestComposeGoServicesPorts(t *testing.T) {
	p := loadProject(t)
	for _, name := range goServices {
		t.Run(name, func(t *testing.T) {
			s := service(t, p, name)
			host, port := hostPort(t, listenAddr(t, s))
			if host != "0.0.0.0" && host != "" {
				t.Errorf("%s listens on %q inside its container; want 0.0.0.0 so that the published port reaches it", name, host)
			}
			def, ok := flagsOf(t, name)[listenFlag(name)]
			if !ok {
				t.Fatalf("%s has no --%s flag", name, listenFlag(name))
			}
			if _, defPort := hostPort(t, def); defPort != port {
				t.Errorf("%s listens on port %d; its --%s default is %q", name, port, listenFlag(name), def)
			}
			var published bool
			for _, pc := range s.Ports {
				if pc.Target == port {
					published = true
					if pc.Published != strconv.FormatUint(uint64(port), 10) {
						t.Errorf("%s publishes container port %d as host port %s; want the same port", name, port, pc.Published)
					}
				}
			}
			if !published {
				t.Errorf("%s does not publish its port %d", name, port)
			}
		})
	}
}

// TestComposeEnvMatchesFlags checks every LOGPIPE_* variable of a Go service
// against the flags of its binary, and that the addresses they name are
// compose services.
func TestComposeEnvMatchesFlags(t *testing.T) {
	p := loadProject(t)
	for _, name := range goServices {
		t.Run(name, func(t *testing.T) {
			s := service(t, p, name)
			flags := flagsOf(t, name)
			var n int
			for _, k := range slices.Sorted(maps.Keys(s.Environment)) {
				if !strings.HasPrefix(k, "LOGPIPE_") {
					t.Errorf("%s: environment variable %s is not a LOGPIPE_ flag variable", name, k)
					continue
				}
				n++
				if _, ok := flags[envFlag(k)]; !ok {
					t.Errorf("%s: %s matches no flag --%s of %s (flags: %v)", name, k, envFlag(k), name, slices.Sorted(maps.Keys(flags)))
				}
			}
			if n == 0 {
				t.Errorf("%s sets no LOGPIPE_ variable", name)
			}
		})
	}
}

// TestComposeAddressesNameServices checks that the backends the Go services
// are pointed at are compose services on the ports those services listen on.
func TestComposeAddressesNameServices(t *testing.T) {
	p := loadProject(t)
	kafkaInternal := kafkaListeners(t, service(t, p, "kafka"))["INTERNAL"]
	if kafkaInternal == "" {
		t.Fatal("kafka advertises no INTERNAL listener")
	}
	wantAddr := map[string]string{
		"LOGPIPE_KAFKA_BROKERS":  kafkaInternal,
		"LOGPIPE_ETCD_ENDPOINTS": "etcd:2379",
		"LOGPIPE_ES_ADDRESSES":   "http://elasticsearch:9200",
		"LOGPIPE_REDIS_ADDR":     "redis:6379",
	}
	required := map[string][]string{
		"agent":    {"LOGPIPE_KAFKA_BROKERS", "LOGPIPE_ETCD_ENDPOINTS"},
		"transfer": {"LOGPIPE_KAFKA_BROKERS", "LOGPIPE_ES_ADDRESSES"},
		"livetail": {"LOGPIPE_KAFKA_BROKERS", "LOGPIPE_REDIS_ADDR"},
	}
	for svc, vars := range required {
		s := service(t, p, svc)
		for _, v := range vars {
			got, ok := env(s, v)
			if !ok {
				t.Errorf("%s does not set %s", svc, v)
				continue
			}
			if got != wantAddr[v] {
				t.Errorf("%s: %s=%q, want %q", svc, v, got, wantAddr[v])
			}
		}
	}
	if v, _ := env(service(t, p, "livetail"), "LOGPIPE_LIMITER"); v != "redis" {
		t.Errorf("livetail: LOGPIPE_LIMITER=%q, want redis (replicas share the per-user count)", v)
	}
	// The backends listen where the services look for them.
	etcdCmd := strings.Join(service(t, p, "etcd").Command, " ")
	if !strings.Contains(etcdCmd, "--listen-client-urls=http://0.0.0.0:2379") {
		t.Errorf("etcd command %q does not listen for clients on port 2379", etcdCmd)
	}
	if !strings.Contains(etcdCmd, "--advertise-client-urls=http://etcd:2379") {
		t.Errorf("etcd command %q does not advertise http://etcd:2379", etcdCmd)
	}
}

// kafkaListeners parses KAFKA_ADVERTISED_LISTENERS: listener name → host:port.
func kafkaListeners(tb testing.TB, s types.ServiceConfig) map[string]string {
	tb.Helper()
	v, ok := env(s, "KAFKA_ADVERTISED_LISTENERS")
	if !ok {
		tb.Fatal("kafka has no KAFKA_ADVERTISED_LISTENERS")
	}
	out := map[string]string{}
	for _, l := range strings.Split(v, ",") {
		name, addr, ok := strings.Cut(strings.TrimSpace(l), "://")
		if !ok {
			tb.Fatalf("KAFKA_ADVERTISED_LISTENERS: bad listener %q", l)
		}
		out[name] = addr
	}
	return out
}

// TestComposeKafka checks the KRaft single node: the listener for the host is
// advertised as 127.0.0.1 on the published port, and the internal one on the
// service name.
func TestComposeKafka(t *testing.T) {
	p := loadProject(t)
	s := service(t, p, "kafka")
	for _, k := range []string{"KAFKA_PROCESS_ROLES", "KAFKA_NODE_ID", "KAFKA_CONTROLLER_QUORUM_VOTERS", "KAFKA_CONTROLLER_LISTENER_NAMES", "CLUSTER_ID", "KAFKA_LOG_DIRS"} {
		if _, ok := env(s, k); !ok {
			t.Errorf("kafka does not set %s", k)
		}
	}
	if v, _ := env(s, "KAFKA_PROCESS_ROLES"); !strings.Contains(v, "controller") || !strings.Contains(v, "broker") {
		t.Errorf("KAFKA_PROCESS_ROLES=%q, want broker and controller (KRaft, one node)", v)
	}
	ls := kafkaListeners(t, s)
	host, port := hostPort(t, ls["EXTERNAL"])
	if host != "127.0.0.1" && host != "localhost" {
		t.Errorf("EXTERNAL listener advertised as %q, want 127.0.0.1", ls["EXTERNAL"])
	}
	var published bool
	for _, pc := range s.Ports {
		if pc.Published == strconv.FormatUint(uint64(port), 10) && pc.Target == port {
			published = true
		}
	}
	if !published {
		t.Errorf("kafka advertises %s to the host but does not publish port %d there", ls["EXTERNAL"], port)
	}
	if h, _ := hostPort(t, ls["INTERNAL"]); h != "kafka" {
		t.Errorf("INTERNAL listener advertised as %q, want the service name kafka", ls["INTERNAL"])
	}
	dataDir, _ := env(s, "KAFKA_LOG_DIRS")
	if !hasNamedVolumeAt(s, dataDir) {
		t.Errorf("kafka keeps its data in %s, which is not a named volume", dataDir)
	}
}

// hasNamedVolumeAt reports whether a named volume is mounted at target.
func hasNamedVolumeAt(s types.ServiceConfig, target string) bool {
	for _, v := range s.Volumes {
		if v.Type == types.VolumeTypeVolume && v.Source != "" && filepath.Clean(v.Target) == filepath.Clean(target) {
			return true
		}
	}
	return false
}

func TestComposeVolumes(t *testing.T) {
	p := loadProject(t)
	agent := service(t, p, "agent")
	stateDir, ok := env(agent, "LOGPIPE_STATE_DIR")
	if !ok {
		t.Fatal("agent does not set LOGPIPE_STATE_DIR")
	}
	tests := map[string]string{
		"agent":         stateDir,
		"etcd":          "/var/lib/etcd",
		"elasticsearch": "/usr/share/elasticsearch/data",
	}
	for svc, dir := range tests {
		if !hasNamedVolumeAt(service(t, p, svc), dir) {
			t.Errorf("%s: no named volume at %s", svc, dir)
		}
	}
	if cmd := strings.Join(service(t, p, "etcd").Command, " "); !strings.Contains(cmd, "--data-dir=/var/lib/etcd") {
		t.Errorf("etcd command %q does not keep its data in /var/lib/etcd", cmd)
	}
	// The agent tails a host directory, read-only.
	var hostDir bool
	for _, v := range agent.Volumes {
		if v.Type == types.VolumeTypeBind {
			hostDir = true
			if !v.ReadOnly {
				t.Errorf("agent mounts %s read-write; it only reads logs", v.Source)
			}
		}
	}
	if !hostDir {
		t.Error("agent mounts no host log directory")
	}
}

// TestComposeInitMatchesServices checks that the one-shot services set up
// what the services use: the agent's key, the topics, the data view.
func TestComposeInitMatchesServices(t *testing.T) {
	p := loadProject(t)
	agentName, _ := env(service(t, p, "agent"), "LOGPIPE_NAME")
	if agentName == "" {
		t.Fatal("agent does not set LOGPIPE_NAME")
	}
	initEtcd := service(t, p, "init-etcd")
	if v, _ := env(initEtcd, "AGENT_NAME"); v != agentName {
		t.Errorf("init-etcd puts the config of agent %q, the agent is %q", v, agentName)
	}
	cfg, _ := env(initEtcd, "CONFIG_FILE")
	if src := bindSource(initEtcd, cfg); src != repoFile(t, "configs", "agent-config.json") {
		t.Errorf("init-etcd reads %s from %q, want configs/agent-config.json", cfg, src)
	}

	transfer := service(t, p, "transfer")
	index, _ := env(transfer, "LOGPIPE_ES_INDEX")
	if v, _ := env(service(t, p, "init-kibana"), "DATA_VIEW"); v != index {
		t.Errorf("init-kibana creates a data view of %q, transfer writes to %q", v, index)
	}

	topics, _ := env(service(t, p, "init-topics"), "TOPICS")
	created := strings.Fields(topics)
	for _, v := range []string{"LOGPIPE_KAFKA_TOPICS", "LOGPIPE_DLQ_TOPIC"} {
		val, _ := env(transfer, v)
		for _, topic := range strings.Split(val, ",") {
			if !slices.Contains(created, topic) {
				t.Errorf("transfer uses topic %q (%s), init-topics creates %v", topic, v, created)
			}
		}
	}
	if v, _ := env(service(t, p, "init-topics"), "PARTITIONS"); v != "6" {
		t.Errorf("init-topics creates %s partitions, want 6", v)
	}
	for _, svc := range []string{"init-topics", "init-etcd", "init-kibana"} {
		s := service(t, p, svc)
		if len(s.Entrypoint) < 2 {
			t.Errorf("%s has no script entrypoint", svc)
			continue
		}
		script := s.Entrypoint[len(s.Entrypoint)-1]
		src := bindSource(s, filepath.Dir(script))
		if src == "" {
			t.Errorf("%s runs %s, which no volume provides", svc, script)
			continue
		}
		if !strings.HasPrefix(src, repoFile(t, "configs")+string(filepath.Separator)) && src != repoFile(t, "configs") {
			t.Errorf("%s runs a script from %s, want configs/", svc, src)
		}
	}
}

// bindSource is the host path bind-mounted at target, or "".
func bindSource(s types.ServiceConfig, target string) string {
	for _, v := range s.Volumes {
		if v.Type == types.VolumeTypeBind && filepath.Clean(v.Target) == filepath.Clean(target) {
			return filepath.Clean(v.Source)
		}
	}
	return ""
}
