package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/logpipe/logpipe/livetail/internal/auth"
	"github.com/logpipe/logpipe/livetail/internal/catalogue"
	"github.com/logpipe/logpipe/livetail/internal/hub"
	"github.com/logpipe/logpipe/livetail/internal/session"
)

type seenList []hub.Job

func (s seenList) Jobs() []hub.Job { return s }

type catalogueList []catalogue.Job

func (c catalogueList) Jobs() []catalogue.Job { return c }

// homeOnly is a session.History whose only use here is Home.
type homeOnly struct{ session.History }

func (homeOnly) Home(string) int32 { return 7 }

// onlyJobs is an Authenticator whose identity may tail the given patterns.
type onlyJobs []string

func (o onlyJobs) Authenticate(*http.Request) (auth.Identity, error) {
	return auth.Identity{User: "u", Jobs: o}, nil
}

// TestJobsList: the jobs endpoint lists the catalogue's jobs with their
// rate, what the replica saw itself, and the configured jobs, once each;
// partitions are joined and the newest sighting names the partition; a
// token limited to some jobs sees only those.
func TestJobsList(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	cat := catalogueList{
		{Job: "web", Partition: 2, Partitions: []int32{2}, LastSeen: t0, LinesPerMin: 120},
		{Job: "foreign", Partition: 4, Partitions: []int32{1, 4}, LastSeen: t0.Add(-time.Hour), LinesPerMin: 0.5},
	}
	seen := seenList{
		{Job: "web", Partition: 5, Partitions: []int32{2, 5}, LastSeen: t0.Add(time.Second)},
		{Job: "local", Partition: 0, Partitions: []int32{0}, LastSeen: t0},
	}
	rate := func(r float64) *float64 { return &r }
	tests := map[string]struct {
		cat   Catalogue
		authn auth.Authenticator
		want  []Job
	}{
		"all": {cat, nil, []Job{
			{Job: "configured", Partition: 7},
			{Job: "foreign", Partition: 4, Partitions: []int32{1, 4}, LastSeen: t0.Add(-time.Hour), LinesPerMin: rate(0.5)},
			{Job: "local", Partition: 0, Partitions: []int32{0}, LastSeen: t0},
			{Job: "web", Partition: 5, Partitions: []int32{2, 5}, LastSeen: t0.Add(time.Second), LinesPerMin: rate(120)},
		}},
		"no catalogue": {nil, nil, []Job{
			{Job: "configured", Partition: 7},
			{Job: "local", Partition: 0, Partitions: []int32{0}, LastSeen: t0},
			{Job: "web", Partition: 5, Partitions: []int32{2, 5}, LastSeen: t0.Add(time.Second)},
		}},
		"limited token": {cat, onlyJobs{"f*", "configured"}, []Job{
			{Job: "configured", Partition: 7},
			{Job: "foreign", Partition: 4, Partitions: []int32{1, 4}, LastSeen: t0.Add(-time.Hour), LinesPerMin: rate(0.5)},
		}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			h := JobsHandler(seen, homeOnly{}, tt.cat, []string{"configured", "web"}, tt.authn)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/jobs", nil))
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			var got []Job
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			g, _ := json.Marshal(got)
			w, _ := json.Marshal(tt.want)
			if string(g) != string(w) {
				t.Fatalf("jobs\n%s\nwant\n%s", g, w)
			}
		})
	}
}

// TestJobsFields: the field names of the contract.
func TestJobsFields(t *testing.T) {
	r := 1.5
	b, _ := json.Marshal(Job{Job: "a", Partition: 1, Partitions: []int32{1}, LastSeen: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), LinesPerMin: &r})
	want := `{"job":"a","partition":1,"partitions":[1],"last_seen":"2026-01-02T03:04:05Z","lines_per_min":1.5}`
	if string(b) != want {
		t.Fatalf("%s, want %s", b, want)
	}
}
