package api

import (
	"encoding/json"
	"net/http"
	"slices"
	"sort"
	"time"

	"github.com/logpipe/logpipe/livetail/internal/auth"
	"github.com/logpipe/logpipe/livetail/internal/catalogue"
	"github.com/logpipe/logpipe/livetail/internal/hub"
	"github.com/logpipe/logpipe/livetail/internal/session"
)

// SeenJobs lists the jobs this replica's own consumers saw (*hub.Hub).
type SeenJobs interface{ Jobs() []hub.Job }

// Catalogue lists the jobs of the jobs catalogue (*catalogue.Catalogue).
type Catalogue interface{ Jobs() []catalogue.Job }

// Job is one job of GET /api/v1/jobs.
type Job struct {
	Job string `json:"job"`
	// Partition is where the job's latest line was seen (for a configured
	// job never seen, where the default partitioner puts it).
	Partition int32 `json:"partition"`
	// Partitions are every partition the job's lines were seen on.
	Partitions []int32   `json:"partitions,omitempty"`
	LastSeen   time.Time `json:"last_seen,omitzero"`
	// LinesPerMin is the job's recent rate from the catalogue, absent for
	// a job the catalogue does not hold.
	LinesPerMin *float64 `json:"lines_per_min,omitempty"`
}

// JobsHandler serves GET /api/v1/jobs: a JSON array of the jobs of the
// catalogue (cat, nil when there is none), merged with those this replica
// saw itself (seen) and the configured ones (without last_seen until
// seen), sorted by name. The request is authenticated as a tail is (a
// missing or bad token: 401) and only the jobs the identity may tail are
// listed.
func JobsHandler(seen SeenJobs, hist session.History, cat Catalogue, configured []string, authn auth.Authenticator) http.Handler {
	if authn == nil {
		authn = auth.None{}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
			return
		}
		id, err := authn.Authenticate(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="livetail"`)
			w.Header().Set("Cache-Control", "no-store")
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var fromCat []catalogue.Job
		if cat != nil {
			fromCat = cat.Jobs()
		}
		jobs := mergeJobs(fromCat, seen.Jobs(), configured, hist.Home)
		jobs = slices.DeleteFunc(jobs, func(j Job) bool { return !id.Allows(j.Job) })
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if r.Method == http.MethodHead {
			return
		}
		_ = json.NewEncoder(w).Encode(jobs)
	})
}

// mergeJobs lists every job of the catalogue, of what this replica saw and
// of the configured ones once, sorted by name: partitions are joined, the
// newest last_seen wins and names the partition.
func mergeJobs(fromCat []catalogue.Job, seen []hub.Job, configured []string, home func(string) int32) []Job {
	byName := make(map[string]*Job, len(fromCat)+len(seen))
	for _, c := range fromCat {
		rate := c.LinesPerMin
		byName[c.Job] = &Job{Job: c.Job, Partition: c.Partition, Partitions: slices.Clone(c.Partitions),
			LastSeen: c.LastSeen, LinesPerMin: &rate}
	}
	for _, h := range seen {
		j := byName[h.Job]
		if j == nil {
			byName[h.Job] = &Job{Job: h.Job, Partition: h.Partition, Partitions: slices.Clone(h.Partitions), LastSeen: h.LastSeen}
			continue
		}
		if h.LastSeen.After(j.LastSeen) {
			j.LastSeen, j.Partition = h.LastSeen, h.Partition
		}
		for _, p := range h.Partitions {
			if !slices.Contains(j.Partitions, p) {
				j.Partitions = append(j.Partitions, p)
			}
		}
		slices.Sort(j.Partitions)
	}
	for _, name := range configured {
		if byName[name] == nil {
			byName[name] = &Job{Job: name, Partition: home(name)}
		}
	}
	out := make([]Job, 0, len(byName))
	for _, j := range byName {
		out = append(out, *j)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Job < out[b].Job })
	return out
}
