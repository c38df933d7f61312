package api

import (
	"encoding/json"
	"net/http"
	"slices"
	"sort"

	"github.com/logpipe/logpipe/livetail/internal/auth"
	"github.com/logpipe/logpipe/livetail/internal/hub"
	"github.com/logpipe/logpipe/livetail/internal/session"
)

// JobsHandler serves GET /api/v1/jobs: a JSON array of the jobs seen
// recently ({"job", "partition", "partitions", "last_seen"}) and of the
// configured ones (without last_seen until seen), sorted by name. The request
// is authenticated as a tail is (a missing or bad token: 401) and only the
// jobs the identity may tail are listed.
func JobsHandler(h *hub.Hub, hist session.History, configured []string, authn auth.Authenticator) http.Handler {
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
		jobs := slices.DeleteFunc(h.Jobs(), func(j hub.Job) bool { return !id.Allows(j.Job) })
		seen := make(map[string]bool, len(jobs))
		for _, j := range jobs {
			seen[j.Job] = true
		}
		for _, name := range configured {
			if !seen[name] && id.Allows(name) {
				seen[name] = true
				jobs = append(jobs, hub.Job{Job: name, Partition: hist.Home(name)})
			}
		}
		sortJobs(jobs)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if r.Method == http.MethodHead {
			return
		}
		_ = json.NewEncoder(w).Encode(jobs)
	})
}

func sortJobs(jobs []hub.Job) {
	sort.Slice(jobs, func(a, b int) bool { return jobs[a].Job < jobs[b].Job })
}
