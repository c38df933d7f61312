package deploy_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"maps"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/logpipe/logpipe/common/collect"
	"github.com/logpipe/logpipe/common/conf"
)

func TestConfigYAMLKeysAreFlags(t *testing.T) {
	for _, bin := range []string{"agent", "transfer", "livetail", "devstack"} {
		t.Run(bin, func(t *testing.T) {
			file := bin + ".yaml"
			keys := yamlKeys(t, readRepoFile(t, "configs", file))
			if len(keys) == 0 {
				t.Fatalf("configs/%s sets nothing", file)
			}
			// Commented-out settings are meant to be uncommented: they must be flags too.
			commented := regexp.MustCompile(`(?m)^#\s?([a-z][a-z0-9-]*):\s`)
			for _, m := range commented.FindAllStringSubmatch(string(readRepoFile(t, "configs", file)), -1) {
				keys = append(keys, m[1])
			}
			flags := flagsOf(t, bin)
			for _, k := range keys {
				if _, ok := flags[k]; !ok || k == conf.ConfigFlag {
					t.Errorf("configs/%s: key %q is not a flag of %s (flags: %v)", file, k, bin, slices.Sorted(maps.Keys(flags)))
				}
			}
		})
	}
}

func TestAgentConfigJSON(t *testing.T) {
	cfg, err := collect.Parse(readRepoFile(t, "configs", "agent-config.json"))
	if err != nil {
		t.Fatalf("configs/agent-config.json: %v", err)
	}
	if len(cfg) == 0 {
		t.Fatal("configs/agent-config.json has no entries")
	}
	// Every path is inside a directory mounted into the agent's container.
	agent := service(t, loadProject(t), "agent")
	var mounts []string
	for _, v := range agent.Volumes {
		mounts = append(mounts, filepath.Clean(v.Target))
	}
	var multiline bool
	for i, e := range cfg {
		dir := path.Dir(e.Path)
		if !slices.Contains(mounts, dir) {
			t.Errorf("entry %d: path %s is not in a directory mounted into the agent (mounts: %v)", i+1, e.Path, mounts)
		}
		multiline = multiline || e.Multiline != nil
	}
	if !multiline {
		t.Error("no entry shows a multiline config")
	}
}

// TestIndexTemplate checks configs/index-template.json, the body of
// PUT _index_template/<name>: a data stream template for logs-logpipe-default,
// above the built-in logs-*-* template, with the record's mappings.
func TestIndexTemplate(t *testing.T) {
	var tmpl struct {
		IndexPatterns []string       `json:"index_patterns"`
		DataStream    map[string]any `json:"data_stream"`
		Priority      int            `json:"priority"`
		Template      struct {
			Mappings struct {
				DynamicTemplates []map[string]struct {
					PathMatch string         `json:"path_match"`
					Mapping   map[string]any `json:"mapping"`
				} `json:"dynamic_templates"`
				Properties map[string]json.RawMessage `json:"properties"`
			} `json:"mappings"`
		} `json:"template"`
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(readRepoFile(t, "configs", "index-template.json"), &raw); err != nil {
		t.Fatalf("configs/index-template.json: %v", err)
	}
	if err := json.Unmarshal(readRepoFile(t, "configs", "index-template.json"), &tmpl); err != nil {
		t.Fatalf("configs/index-template.json: %v", err)
	}
	for k := range raw {
		if !slices.Contains([]string{"index_patterns", "data_stream", "priority", "template", "_meta", "composed_of", "ignore_missing_component_templates", "version"}, k) {
			t.Errorf("unknown top-level key %q", k)
		}
	}
	var matches bool
	for _, p := range tmpl.IndexPatterns {
		if ok, _ := path.Match(p, "logs-logpipe-default"); ok {
			matches = true
		}
	}
	if !matches {
		t.Errorf("index_patterns %v do not match logs-logpipe-default", tmpl.IndexPatterns)
	}
	if tmpl.DataStream == nil {
		t.Error("data_stream is not enabled")
	}
	if tmpl.Priority <= 100 {
		t.Errorf("priority %d: want above 100, the built-in logs-*-* template's", tmpl.Priority)
	}

	types := map[string]string{}
	flattenMappings(t, "", tmpl.Template.Mappings.Properties, types)
	want := map[string]string{
		"@timestamp":      "date",
		"message":         "text",
		"job":             "keyword",
		"host.name":       "keyword",
		"agent.name":      "keyword",
		"log.file.path":   "keyword",
		"log.offset":      "long",
		"log.flags":       "keyword",
		"kafka.topic":     "keyword",
		"kafka.partition": "integer",
		"kafka.offset":    "long",
		"event.ingested":  "date",
		"json":            "flattened", // one field for any JSON: no type of one job rejects another's lines
	}
	for field, typ := range want {
		if got := types[field]; got != typ {
			t.Errorf("mapping of %s: type %q, want %q", field, got, typ)
		}
	}
	// Labels: any label name, as keyword (flattened, or an object whose
	// dynamic fields a dynamic template maps to keyword).
	switch types["labels"] {
	case "flattened":
	case "object":
		var ok bool
		for _, dt := range tmpl.Template.Mappings.DynamicTemplates {
			for _, d := range dt {
				if d.PathMatch == "labels.*" && d.Mapping["type"] == "keyword" {
					ok = true
				}
			}
		}
		if !ok {
			t.Error("labels is an object but no dynamic template maps labels.* to keyword")
		}
	default:
		t.Errorf("mapping of labels: type %q, want flattened or object", types["labels"])
	}
}

// flattenMappings records the type of every field under props, by dotted name.
func flattenMappings(tb testing.TB, prefix string, props map[string]json.RawMessage, out map[string]string) {
	tb.Helper()
	for name, raw := range props {
		var f struct {
			Type       string                     `json:"type"`
			Properties map[string]json.RawMessage `json:"properties"`
		}
		if err := json.Unmarshal(raw, &f); err != nil {
			tb.Fatalf("mapping of %s%s: %v", prefix, name, err)
		}
		typ := f.Type
		if typ == "" {
			typ = "object"
		}
		out[prefix+name] = typ
		flattenMappings(tb, prefix+name+".", f.Properties, out)
	}
}

// TestPrometheusTargets checks that Prometheus scrapes each Go service by its
// compose name on the port it serves /metrics on.
func TestPrometheusTargets(t *testing.T) {
	var cfg struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(readRepoFile(t, "configs", "prometheus.yml"), &cfg); err != nil {
		t.Fatalf("configs/prometheus.yml: %v", err)
	}
	p := loadProject(t, "monitoring")
	scraped := map[string]bool{}
	for _, sc := range cfg.ScrapeConfigs {
		if sc.MetricsPath != "" && sc.MetricsPath != "/metrics" {
			t.Errorf("job %s scrapes %s, the services serve /metrics", sc.JobName, sc.MetricsPath)
		}
		for _, st := range sc.StaticConfigs {
			for _, target := range st.Targets {
				host, port := hostPort(t, target)
				s, ok := p.Services[host]
				if !ok {
					t.Errorf("job %s: target %s is not a compose service", sc.JobName, target)
					continue
				}
				if !slices.Contains(goServices, host) {
					continue
				}
				if _, want := hostPort(t, listenAddr(t, s)); port != want {
					t.Errorf("job %s: target %s, but %s serves /metrics on port %d", sc.JobName, target, host, want)
				}
				scraped[host] = true
			}
		}
	}
	for _, svc := range goServices {
		if !scraped[svc] {
			t.Errorf("Prometheus does not scrape %s", svc)
		}
	}
	prom := service(t, p, "prometheus")
	if src := bindSource(prom, "/etc/prometheus/prometheus.yml"); src != repoFile(t, "configs", "prometheus.yml") {
		t.Errorf("prometheus reads its config from %q, want configs/prometheus.yml", src)
	}
}

// knownMetrics are the metrics the dashboard may query: those in DESIGN.md
// ("Metrics"), the two lag gauges, and Prometheus's own up.
var knownMetrics = map[string]string{
	"agent_lines_read_total":              "agent",
	"agent_lines_acked_total":             "agent",
	"agent_files_tailed":                  "agent",
	"agent_file_lag_bytes":                "agent",
	"transfer_docs_indexed_total":         "transfer",
	"transfer_docs_dlq_total":             "transfer",
	"transfer_bulk_seconds":               "transfer",
	"transfer_consumer_lag":               "transfer",
	"livetail_connections":                "livetail",
	"livetail_pending_messages":           "livetail",
	"livetail_entries_sent_total":         "livetail",
	"livetail_entries_dropped_total":      "livetail",
	"livetail_connections_rejected_total": "livetail",
	"up":                                  "",
}

type dashboard struct {
	UID    string  `json:"uid"`
	Title  string  `json:"title"`
	Panels []panel `json:"panels"`
}

type panel struct {
	ID         int        `json:"id"`
	Type       string     `json:"type"`
	Title      string     `json:"title"`
	Datasource datasource `json:"datasource"`
	Targets    []struct {
		RefID      string     `json:"refId"`
		Expr       string     `json:"expr"`
		Datasource datasource `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // in collapsed rows
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// baseMetric strips a histogram's series suffix.
func baseMetric(name string) string {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if b, ok := strings.CutSuffix(name, suffix); ok {
			if _, known := knownMetrics[b]; known {
				return b
			}
		}
	}
	return name
}

// dashboardMetrics returns, for each metric the dashboard queries, the
// panels that query it.
func dashboardMetrics(tb testing.TB, d dashboard, dsUID string) map[string][]string {
	tb.Helper()
	out := map[string][]string{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 {
				tb.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				ds := tg.Datasource
				if ds.UID == "" {
					ds = p.Datasource
				}
				if ds.UID != dsUID {
					tb.Errorf("panel %q query %s uses datasource %q, the provisioned one is %q", p.Title, tg.RefID, ds.UID, dsUID)
				}
				names := promMetrics(tg.Expr)
				if len(names) == 0 {
					tb.Errorf("panel %q query %s (%q) selects no metric", p.Title, tg.RefID, tg.Expr)
				}
				for _, n := range names {
					out[baseMetric(n)] = append(out[baseMetric(n)], p.Title)
				}
			}
		}
	}
	walk(d.Panels)
	return out
}

func readDashboard(tb testing.TB) dashboard {
	tb.Helper()
	var d dashboard
	if err := json.Unmarshal(readRepoFile(tb, "configs", "grafana", "dashboards", "logpipe.json"), &d); err != nil {
		tb.Fatalf("configs/grafana/dashboards/logpipe.json: %v", err)
	}
	if d.UID == "" || d.Title == "" || len(d.Panels) == 0 {
		tb.Fatalf("dashboard without uid, title or panels")
	}
	return d
}

// provisionedDatasource returns the uid and URL of the provisioned Prometheus datasource.
func provisionedDatasource(tb testing.TB) (uid, rawURL string) {
	tb.Helper()
	var ds struct {
		Datasources []struct {
			UID  string `yaml:"uid"`
			Type string `yaml:"type"`
			URL  string `yaml:"url"`
		} `yaml:"datasources"`
	}
	if err := yaml.Unmarshal(readRepoFile(tb, "configs", "grafana", "provisioning", "datasources", "prometheus.yaml"), &ds); err != nil {
		tb.Fatal(err)
	}
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" {
		tb.Fatalf("want one prometheus datasource, have %+v", ds.Datasources)
	}
	return ds.Datasources[0].UID, ds.Datasources[0].URL
}

func TestGrafanaDashboard(t *testing.T) {
	d := readDashboard(t)
	uid, _ := provisionedDatasource(t)
	used := dashboardMetrics(t, d, uid)
	for name, panels := range used {
		if _, ok := knownMetrics[name]; !ok {
			t.Errorf("panels %q query %s, which no service exports (DESIGN.md, Metrics)", panels, name)
		}
	}
	// What the issue asks the dashboard to show.
	for _, name := range []string{
		"livetail_connections", "livetail_pending_messages",
		"agent_lines_read_total", "agent_lines_acked_total", "livetail_entries_sent_total",
		"transfer_docs_indexed_total", "transfer_docs_dlq_total",
		"agent_file_lag_bytes", "transfer_consumer_lag", "transfer_bulk_seconds",
	} {
		if _, ok := used[name]; !ok {
			t.Errorf("no panel shows %s", name)
		}
	}
}

// TestGrafanaDashboardMetricsAreRegistered checks that each metric the
// dashboard queries is named in the binary that should export it: the
// metric's name, or its name without the binary's prefix (a Namespace),
// appears in the executable.
func TestGrafanaDashboardMetricsAreRegistered(t *testing.T) {
	uid, _ := provisionedDatasource(t)
	used := dashboardMetrics(t, readDashboard(t), uid)
	exes := map[string][]byte{}
	for _, name := range slices.Sorted(maps.Keys(used)) {
		bin := knownMetrics[name]
		if bin == "" {
			continue
		}
		exe, ok := exes[bin]
		if !ok {
			data, err := os.ReadFile(binary(t, bin))
			if err != nil {
				t.Fatal(err)
			}
			exes[bin], exe = data, data
		}
		short := strings.TrimPrefix(name, bin+"_")
		if !bytes.Contains(exe, []byte(name)) && !bytes.Contains(exe, []byte(short)) {
			t.Errorf("the dashboard queries %s, but the %s binary names no such metric (neither %q nor %q)", name, bin, name, short)
		}
	}
}

func TestGrafanaProvisioning(t *testing.T) {
	p := loadProject(t, "monitoring")
	g := service(t, p, "grafana")

	_, dsURL := provisionedDatasource(t)
	u, err := url.Parse(dsURL)
	if err != nil {
		t.Fatal(err)
	}
	host, port := hostPort(t, u.Host)
	prom := service(t, p, host)
	var listens bool
	for _, pc := range prom.Ports {
		listens = listens || pc.Target == port
	}
	if !listens {
		t.Errorf("the datasource URL %s names port %d, which %s does not serve", dsURL, port, host)
	}

	if src := bindSource(g, "/etc/grafana/provisioning"); src != repoFile(t, "configs", "grafana", "provisioning") {
		t.Errorf("grafana's provisioning comes from %q, want configs/grafana/provisioning", src)
	}
	var prov struct {
		Providers []struct {
			Type    string `yaml:"type"`
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	if err := yaml.Unmarshal(readRepoFile(t, "configs", "grafana", "provisioning", "dashboards", "logpipe.yaml"), &prov); err != nil {
		t.Fatal(err)
	}
	if len(prov.Providers) != 1 || prov.Providers[0].Type != "file" {
		t.Fatalf("want one file provider, have %+v", prov.Providers)
	}
	dir := prov.Providers[0].Options.Path
	if src := bindSource(g, dir); src != repoFile(t, "configs", "grafana", "dashboards") {
		t.Errorf("the dashboard provider reads %s, mounted from %q; want configs/grafana/dashboards", dir, src)
	}
	if home, _ := env(g, "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"); home != "" {
		if _, err := os.Stat(filepath.Join(repoFile(t, "configs", "grafana", "dashboards"), strings.TrimPrefix(home, dir))); err != nil || !strings.HasPrefix(home, dir+"/") {
			t.Errorf("home dashboard %s is not one of configs/grafana/dashboards", home)
		}
	}
}

// dockerfileStages returns the Dockerfile's stages: name → instructions.
func dockerfileStages(tb testing.TB) map[string][]string {
	tb.Helper()
	from := regexp.MustCompile(`(?i)^FROM\s+\S+\s+AS\s+(\S+)\s*$`)
	stages := map[string][]string{}
	current := ""
	sc := bufio.NewScanner(bytes.NewReader(readRepoFile(tb, "Dockerfile")))
	var cont string
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if l, ok := strings.CutSuffix(line, `\`); ok {
			cont += l + " "
			continue
		}
		line, cont = cont+line, ""
		if m := from.FindStringSubmatch(line); m != nil {
			current = m[1]
			stages[current] = nil
			continue
		}
		if current != "" {
			stages[current] = append(stages[current], line)
		}
	}
	return stages
}

func TestDockerfile(t *testing.T) {
	stages := dockerfileStages(t)
	for _, name := range goServices {
		t.Run(name, func(t *testing.T) {
			lines, ok := stages[name]
			if !ok {
				t.Fatalf("no stage %q", name)
			}
			var user, entrypoint string
			for _, l := range lines {
				word, rest, _ := strings.Cut(l, " ")
				switch strings.ToUpper(word) {
				case "USER":
					user = strings.TrimSpace(rest)
				case "ENTRYPOINT":
					entrypoint = rest
				case "ENV":
					for _, kv := range strings.Fields(rest) {
						k, _, _ := strings.Cut(kv, "=")
						if strings.HasPrefix(k, "LOGPIPE_") {
							if _, ok := flagsOf(t, name)[envFlag(k)]; !ok {
								t.Errorf("stage %s sets %s, which is no flag of %s", name, k, name)
							}
						}
					}
				}
			}
			uid, _, _ := strings.Cut(user, ":")
			if n, err := strconv.Atoi(uid); user == "" || uid == "root" || (err == nil && n == 0) {
				t.Errorf("stage %s runs as %q, want a non-root user", name, user)
			}
			if !strings.Contains(entrypoint, "/"+name+`"`) {
				t.Errorf("stage %s: entrypoint %s does not run %s", name, entrypoint, name)
			}
			// The binary comes from a build stage that builds ./<name> statically.
			var built bool
			for stage, ls := range stages {
				for _, l := range ls {
					if strings.Contains(l, "go build") && strings.HasSuffix(l, "./"+name) {
						built = true
						if !slices.ContainsFunc(append(stages["build"], ls...), func(s string) bool { return strings.Contains(s, "CGO_ENABLED=0") }) {
							t.Errorf("stage %s builds %s without CGO_ENABLED=0", stage, name)
						}
					}
				}
			}
			if !built {
				t.Errorf("no stage runs go build ./%s", name)
			}
		})
	}
}

// TestDockerignoreKeepsModules checks that the build context has every
// module of go.work: the workspace build fails without any of them.
func TestDockerignoreKeepsModules(t *testing.T) {
	var patterns []string
	for _, l := range strings.Split(string(readRepoFile(t, ".dockerignore")), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, strings.TrimPrefix(strings.TrimSuffix(l, "/"), "/"))
		}
	}
	modules := goWorkModules(t)
	if len(modules) == 0 {
		t.Fatal("go.work uses no module")
	}
	for _, m := range append(modules, "go.work") {
		for _, p := range patterns {
			if ok, _ := path.Match(p, m); ok || p == m {
				t.Errorf(".dockerignore pattern %q leaves %s out of the build context", p, m)
			}
		}
	}
}

// goWorkModules lists the directories in go.work's use directives.
func goWorkModules(tb testing.TB) []string {
	tb.Helper()
	var mods []string
	inUse := false
	for _, l := range strings.Split(string(readRepoFile(tb, "go.work")), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "use ("):
			inUse = true
		case inUse && l == ")":
			inUse = false
		case inUse && l != "":
			mods = append(mods, path.Clean(strings.Fields(l)[0]))
		case strings.HasPrefix(l, "use "):
			mods = append(mods, path.Clean(strings.Fields(l)[1]))
		}
	}
	return mods
}

func TestParseHelpFlags(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	c := conf.DefaultCommon("127.0.0.1:9101")
	c.Register(fs, true)
	fs.String("state-dir", "./data/agent", "where offsets are kept")
	fs.Bool("all", false, "run everything")
	var help bytes.Buffer
	conf.Usage(&help, fs)

	got := parseHelpFlags(help.String())
	want := map[string]string{
		"log-level":     "info",
		"log-format":    "text",
		"kafka-brokers": "127.0.0.1:9092",
		"kafka-topic":   "logs",
		"metrics-addr":  "127.0.0.1:9101",
		"state-dir":     "./data/agent",
		"all":           "false",
	}
	if !maps.Equal(got, want) {
		t.Errorf("parseHelpFlags:\n got %v\nwant %v\nfrom:\n%s", got, want, help.String())
	}
}

func TestPromMetrics(t *testing.T) {
	tests := map[string][]string{
		`sum(livetail_connections)`: {"livetail_connections"},
		`sum by (instance) (rate(agent_lines_read_total[$__rate_interval]))`:             {"agent_lines_read_total"},
		`histogram_quantile(0.99, sum by (le) (rate(transfer_bulk_seconds_bucket[5m])))`: {"transfer_bulk_seconds_bucket"},
		`up{job=~"agent|transfer"}`: {"up"},
		`topk(10, agent_file_lag_bytes) / on (instance) group_left agent_files_tailed > 1e3`: {"agent_file_lag_bytes", "agent_files_tailed"},
		`sum(increase(transfer_docs_dlq_total{reason="x"}[$__range])) or vector(0)`:          {"transfer_docs_dlq_total"},
	}
	for expr, want := range tests {
		if got := promMetrics(expr); !slices.Equal(got, want) {
			t.Errorf("promMetrics(%q) = %v, want %v", expr, got, want)
		}
	}
}
