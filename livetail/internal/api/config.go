package api

import (
	"encoding/json"
	"net/http"
)

// ViewerConfig is GET /api/v1/config's answer: what the viewer needs to
// know of the server. It holds no secret.
type ViewerConfig struct {
	KibanaURL string `json:"kibana_url,omitempty"` // --kibana-url; "": no Kibana links
	Archive   bool   `json:"archive"`              // an index is configured for history past Kafka's retention
	MaxJobs   int    `json:"max_jobs"`             // the most jobs one tail may ask for
	ESIndex   string `json:"es_index"`             // the data stream transfer writes (--es-index)
}

// ConfigHandler serves GET /api/v1/config: c as JSON, to anyone (no
// authentication: it holds no secret).
func ConfigHandler(c ViewerConfig) http.Handler {
	body, _ := json.Marshal(c) // cannot fail: strings, a bool and an int
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(append(body, '\n'))
	})
}
