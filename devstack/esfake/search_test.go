package esfake_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// searchFixture holds six log lines around testNow (10:00:00 UTC).
func searchFixture(t *testing.T) *testEnv {
	t.Helper()
	env := newTestServer(t, nil)
	status, m := esResult(t)(env.es.Indices.Create("app", env.es.Indices.Create.WithBody(strings.NewReader(`{
	  "mappings": {"properties": {
	    "@timestamp": {"type": "date"},
	    "level": {"type": "keyword"},
	    "message": {"type": "text"},
	    "status": {"type": "long"},
	    "latency": {"type": "float"},
	    "host": {"properties": {"name": {"type": "keyword"}}},
	    "ip": {"type": "ip"},
	    "ok": {"type": "boolean"}
	  }}}`))))
	if status != http.StatusOK {
		t.Fatalf("create index: %d %v", status, m)
	}
	ids := []string{"d1", "d2", "d3", "d4", "d5", "d6"}
	docs := map[string]string{
		"d1": `{"@timestamp":"2026-11-21T09:50:00Z","level":"info","message":"GET /api/users 200","status":200,"latency":0.5,"host":{"name":"a"},"ip":"10.0.0.1","ok":true}`,
		"d2": `{"@timestamp":"2026-11-21T09:56:00Z","level":"error","message":"POST /api/orders 500 Internal Server Error","status":500,"latency":2.5,"host":{"name":"b"},"ip":"10.0.0.2","ok":false}`,
		"d3": `{"@timestamp":"2026-11-21T09:57:30Z","level":"warn","message":"GET /api/orders 404","status":404,"latency":0.1,"host":{"name":"a"},"ip":"192.168.1.5","ok":false}`,
		"d4": `{"@timestamp":"2026-11-21T09:58:00Z","level":"error","message":"GET /health 503","status":503,"latency":5,"host":{"name":"c"},"ip":"10.0.1.9","ok":false}`,
		"d5": `{"@timestamp":"2026-11-21T09:59:59.999Z","level":"info","message":"get /API/users 200","status":"200","latency":0.25,"host.name":"b","ok":"true"}`,
		"d6": `{"@timestamp":"2026-11-20T23:00:00Z","level":"debug","message":"cache warmup","host":{"name":"a"},"ok":true}`,
	}
	res := env.runBulk(t, "app", "create", ids, docs)
	if len(res.ok) != len(ids) {
		t.Fatalf("fixture: %v %v", res.failed, res.errs)
	}
	return env
}

func TestCountAndSearchQueries(t *testing.T) {
	env := searchFixture(t)
	tests := map[string]struct {
		query string
		want  []string // in _doc order
	}{
		"match_all":                    {`{"match_all":{}}`, []string{"d1", "d2", "d3", "d4", "d5", "d6"}},
		"term keyword":                 {`{"term":{"level":"error"}}`, []string{"d2", "d4"}},
		"term keyword object form":     {`{"term":{"level":{"value":"error"}}}`, []string{"d2", "d4"}},
		"term keyword is exact":        {`{"term":{"level":"ERROR"}}`, nil},
		"term case_insensitive":        {`{"term":{"level":{"value":"ERROR","case_insensitive":true}}}`, []string{"d2", "d4"}},
		"term on text is not analyzed": {`{"term":{"message":"GET"}}`, nil},
		"term on text token":           {`{"term":{"message":"get"}}`, []string{"d1", "d3", "d4", "d5"}},
		"match text":                   {`{"match":{"message":"Users"}}`, []string{"d1", "d5"}},
		"match text or":                {`{"match":{"message":"health warmup"}}`, []string{"d4", "d6"}},
		"match text and":               {`{"match":{"message":{"query":"GET orders","operator":"and"}}}`, []string{"d3"}},
		"match keyword exact":          {`{"match":{"host.name":"b"}}`, []string{"d2", "d5"}},
		"match long":                   {`{"match":{"status":"200"}}`, []string{"d1", "d5"}},
		"terms":                        {`{"terms":{"level":["warn","debug"]}}`, []string{"d3", "d6"}},
		"terms long":                   {`{"terms":{"status":[404,503]}}`, []string{"d3", "d4"}},
		"range long":                   {`{"range":{"status":{"gte":500}}}`, []string{"d2", "d4"}},
		"range long open":              {`{"range":{"status":{"gt":200,"lt":500}}}`, []string{"d3"}},
		"range float":                  {`{"range":{"latency":{"gt":1}}}`, []string{"d2", "d4"}},
		"range date rfc3339":           {`{"range":{"@timestamp":{"gte":"2026-11-21T09:56:00Z","lt":"2026-11-21T09:58:00Z"}}}`, []string{"d2", "d3"}},
		"range date math":              {`{"range":{"@timestamp":{"gte":"now-5m"}}}`, []string{"d2", "d3", "d4", "d5"}},
		"range date rounding":          {`{"range":{"@timestamp":{"gte":"now/d"}}}`, []string{"d1", "d2", "d3", "d4", "d5"}},
		"range date lte rounds up":     {`{"range":{"@timestamp":{"lte":"2026-11-20"}}}`, []string{"d6"}},
		"range date gt rounds up":      {`{"range":{"@timestamp":{"gt":"2026-11-21T09:59:59Z"}}}`, nil},
		"range date epoch millis":      {`{"range":{"@timestamp":{"gte":1795255080000}}}`, []string{"d4", "d5"}},
		"range date with zone":         {`{"range":{"@timestamp":{"gte":"2026-11-21T10:57:00","time_zone":"+01:00"}}}`, []string{"d3", "d4", "d5"}},
		"term date":                    {`{"term":{"@timestamp":"2026-11-21T09:56:00Z"}}`, []string{"d2"}},
		"term ip":                      {`{"term":{"ip":"10.0.0.2"}}`, []string{"d2"}},
		"term ip cidr":                 {`{"term":{"ip":"10.0.0.0/8"}}`, []string{"d1", "d2", "d4"}},
		"term boolean":                 {`{"term":{"ok":true}}`, []string{"d1", "d5", "d6"}},
		"bool must filter":             {`{"bool":{"must":[{"term":{"level":"error"}}],"filter":{"range":{"status":{"gte":503}}}}}`, []string{"d4"}},
		"bool should":                  {`{"bool":{"should":[{"term":{"host.name":"a"}},{"term":{"host.name":"b"}}]}}`, []string{"d1", "d2", "d3", "d5", "d6"}},
		"bool should with filter":      {`{"bool":{"filter":[{"term":{"level":"info"}}],"should":[{"term":{"host.name":"zzz"}}]}}`, []string{"d1", "d5"}},
		"bool minimum_should_match":    {`{"bool":{"should":[{"term":{"level":"info"}},{"term":{"host.name":"b"}},{"term":{"ok":true}}],"minimum_should_match":2}}`, []string{"d1", "d5"}},
		"bool minimum_should_match %":  {`{"bool":{"should":[{"term":{"level":"info"}},{"term":{"host.name":"b"}},{"term":{"ok":true}}],"minimum_should_match":"100%"}}`, []string{"d5"}},
		"bool must_not":                {`{"bool":{"must_not":{"term":{"ok":true}}}}`, []string{"d2", "d3", "d4"}},
		"bool nested":                  {`{"bool":{"filter":[{"exists":{"field":"ip"}}],"must_not":[{"term":{"ip":"10.0.0.0/8"}}]}}`, []string{"d3"}},
		"exists":                       {`{"exists":{"field":"status"}}`, []string{"d1", "d2", "d3", "d4", "d5"}},
		"exists object":                {`{"exists":{"field":"host"}}`, []string{"d1", "d2", "d3", "d4", "d5", "d6"}},
		"exists unmapped":              {`{"exists":{"field":"nope"}}`, nil},
		"ids":                          {`{"ids":{"values":["d2","d6","zz"]}}`, []string{"d2", "d6"}},
		"term _id":                     {`{"term":{"_id":"d3"}}`, []string{"d3"}},
		"terms _id":                    {`{"terms":{"_id":["d3","d1"]}}`, []string{"d1", "d3"}},
		"prefix":                       {`{"prefix":{"level":"e"}}`, []string{"d2", "d4"}},
		"constant_score":               {`{"constant_score":{"filter":{"term":{"level":"warn"}}}}`, []string{"d3"}},
		"match_none":                   {`{"match_none":{}}`, nil},
		"unmapped field":               {`{"term":{"nope":"x"}}`, nil},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			status, m := esResult(t)(env.es.Count(env.es.Count.WithIndex("app"),
				env.es.Count.WithBody(strings.NewReader(`{"query":`+tc.query+`}`))))
			if status != http.StatusOK || dig(m, "count") != float64(len(tc.want)) {
				t.Errorf("_count: %d %v, want count %d", status, m, len(tc.want))
			}
			status, ids, m := env.search(t, "app", `{"query":`+tc.query+`,"sort":["_doc"]}`)
			if status != http.StatusOK || !slices.Equal(ids, tc.want) {
				t.Errorf("_search: %d ids %v, want %v (%v)", status, ids, tc.want, m)
			}
			if dig(m, "hits", "total", "value") != float64(len(tc.want)) || dig(m, "hits", "total", "relation") != "eq" {
				t.Errorf("total = %v", dig(m, "hits", "total"))
			}
		})
	}
}

func TestSearchSortAndPaging(t *testing.T) {
	env := searchFixture(t)
	ms := func(s string) float64 {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return float64(tm.UnixMilli())
	}
	tests := map[string]struct {
		body      string
		want      []string
		firstSort []any // sort values of the first hit, if checked
	}{
		"timestamp desc":        {`{"sort":[{"@timestamp":"desc"}],"size":3}`, []string{"d5", "d4", "d3"}, []any{ms("2026-11-21T09:59:59.999Z")}},
		"timestamp desc page 2": {`{"sort":[{"@timestamp":{"order":"desc"}}],"size":2,"from":3}`, []string{"d2", "d1"}, nil},
		"past the end":          {`{"sort":["@timestamp"],"from":10}`, nil, nil},
		"status missing last":   {`{"sort":[{"status":"asc"}],"size":10}`, []string{"d1", "d5", "d3", "d2", "d4", "d6"}, []any{float64(200)}},
		"status missing first":  {`{"sort":[{"status":{"order":"desc","missing":"_first"}}]}`, []string{"d6", "d4", "d2", "d3", "d1", "d5"}, []any{float64(9223372036854775807)}},
		"two keys":              {`{"sort":[{"host.name":"asc"},{"@timestamp":"desc"}]}`, []string{"d3", "d1", "d6", "d5", "d2", "d4"}, []any{"a", ms("2026-11-21T09:57:30Z")}},
		"search_after":          {fmt.Sprintf(`{"sort":[{"@timestamp":"asc"}],"search_after":[%d]}`, int64(ms("2026-11-21T09:56:00Z"))), []string{"d3", "d4", "d5"}, nil},
		"unmapped_type":         {`{"sort":[{"nope":{"order":"asc","unmapped_type":"long"}},"_doc"]}`, []string{"d1", "d2", "d3", "d4", "d5", "d6"}, nil},
		"score":                 {`{"query":{"match":{"message":"GET users"}}}`, []string{"d1", "d5", "d3", "d4"}, nil},
		"default size is 10":    {`{}`, []string{"d1", "d2", "d3", "d4", "d5", "d6"}, nil},
		"size 0":                {`{"size":0}`, nil, nil},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			status, ids, m := env.search(t, "app", tc.body)
			if status != http.StatusOK || !slices.Equal(ids, tc.want) {
				t.Fatalf("%d ids %v, want %v (%v)", status, ids, tc.want, m)
			}
			if tc.firstSort != nil {
				if got := dig(m, "hits", "hits", "0", "sort"); fmt.Sprint(got) != fmt.Sprint(tc.firstSort) {
					t.Errorf("sort values %v, want %v", got, tc.firstSort)
				}
				if dig(m, "hits", "hits", "0", "_score") != nil || dig(m, "hits", "max_score") != nil {
					t.Errorf("sorted hits have scores: %v", m)
				}
			}
			if dig(m, "hits", "total", "value") != float64(6) && !strings.Contains(name, "search_after") && !strings.Contains(tc.body, "query") {
				t.Errorf("total = %v, want 6", dig(m, "hits", "total"))
			}
		})
	}
}

func TestSearchOptionsAndErrors(t *testing.T) {
	env := searchFixture(t)

	_, _, m := env.search(t, "app", `{"track_total_hits":false,"size":1}`)
	if _, has := dig(m, "hits").(map[string]any)["total"]; has {
		t.Errorf("track_total_hits false still reports a total: %v", m)
	}
	_, _, m = env.search(t, "app", `{"track_total_hits":2,"size":0}`)
	if dig(m, "hits", "total", "value") != float64(2) || dig(m, "hits", "total", "relation") != "gte" {
		t.Errorf("track_total_hits 2: %v", dig(m, "hits", "total"))
	}
	status, m := esResult(t)(env.es.Search(env.es.Search.WithIndex("app"), env.es.Search.WithRestTotalHitsAsInt(true), env.es.Search.WithSize(1)))
	if status != http.StatusOK || dig(m, "hits", "total") != float64(6) {
		t.Errorf("rest_total_hits_as_int: %v", m)
	}
	status, m = esResult(t)(env.es.Search(env.es.Search.WithIndex("app"), env.es.Search.WithSort("status:desc"), env.es.Search.WithSize(1)))
	if status != http.StatusOK || dig(m, "hits", "hits", "0", "_id") != "d4" {
		t.Errorf("sort parameter: %v", m)
	}

	for _, target := range []string{"ap*", "app,nomatch-*", "_all", "*"} {
		_, ids, m := env.search(t, target, `{"size":100}`)
		if len(ids) != 6 {
			t.Errorf("search %s: %d hits: %v", target, len(ids), m)
		}
	}
	status, ids, m := env.search(t, "nomatch-*", `{}`)
	if status != http.StatusOK || len(ids) != 0 || dig(m, "_shards", "total") != float64(0) {
		t.Errorf("pattern without match: %d %v", status, m)
	}

	errorsTests := map[string]struct {
		index, body string
		status      float64
		rootType    string
		reasonHas   string
	}{
		"sort on text":       {"app", `{"sort":["message"]}`, 400, "illegal_argument_exception", "Fielddata is disabled on [message]"},
		"sort on unmapped":   {"app", `{"sort":["nope"]}`, 400, "query_shard_exception", "No mapping found for [nope] in order to sort on"},
		"bad number":         {"app", `{"query":{"term":{"status":"abc"}}}`, 400, "query_shard_exception", `For input string: "abc"`},
		"window too large":   {"app", `{"from":9995,"size":10}`, 400, "illegal_argument_exception", "Result window is too large"},
		"missing index":      {"app,missing", `{}`, 404, "index_not_found_exception", "no such index [missing]"},
		"bad date":           {"app", `{"query":{"range":{"@timestamp":{"gte":"yesterday"}}}}`, 400, "parse_exception", "failed to parse date field [yesterday]"},
		"prefix on long":     {"app", `{"query":{"prefix":{"status":"2"}}}`, 400, "query_shard_exception", "Can only use prefix queries on keyword and text fields"},
		"unknown body key":   {"app", `{"querry":{}}`, 400, "parsing_exception", "Unknown key for a START_OBJECT in [querry]"},
		"two queries in one": {"app", `{"query":{"term":{"a":"b"},"match":{"c":"d"}}}`, 400, "parsing_exception", "malformed query"},
		"source filtering":   {"app", `{"_source":["level"]}`, 400, "illegal_argument_exception", "_source filtering"},
	}
	for name, tc := range errorsTests {
		t.Run(name, func(t *testing.T) {
			status, _, m := env.search(t, tc.index, tc.body)
			if float64(status) != tc.status || dig(m, "status") != tc.status {
				t.Fatalf("status %d, want %v: %v", status, tc.status, m)
			}
			if got := dig(m, "error", "root_cause", "0", "type"); got != tc.rootType {
				t.Errorf("root cause %v, want %s: %v", got, tc.rootType, m)
			}
			if reason := fmt.Sprint(dig(m, "error", "root_cause", "0", "reason")); !strings.Contains(reason, tc.reasonHas) {
				t.Errorf("reason %q, want it to contain %q", reason, tc.reasonHas)
			}
		})
	}
	status, m = esResult(t)(env.es.Search(env.es.Search.WithIndex("app", "missing"), env.es.Search.WithIgnoreUnavailable(true)))
	if status != http.StatusOK || dig(m, "hits", "total", "value") != float64(6) {
		t.Errorf("ignore_unavailable: %d %v", status, m)
	}
}
