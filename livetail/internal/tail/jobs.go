package tail

import (
	"encoding/json"
	"net/http"
	"sort"

	"github.com/logpipe/logpipe/livetail/internal/hub"
)

// JobsHandler serves GET /api/v1/jobs: a JSON array of the jobs seen
// recently ({"job", "partition", "last_seen"}) and of the configured ones
// (without last_seen until seen), sorted by name.
func JobsHandler(h *hub.Hub, hist History, configured []string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
			return
		}
		jobs := h.Jobs()
		seen := make(map[string]bool, len(jobs))
		for _, j := range jobs {
			seen[j.Job] = true
		}
		for _, name := range configured {
			if !seen[name] {
				seen[name] = true
				jobs = append(jobs, hub.Job{Job: name, Partition: hist.Partition(name)})
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
