// Package web serves livetail's browser viewer at GET /: static files
// embedded in the binary. The viewer speaks only the WebSocket API of
// /api/v1/tail and the jobs list of /api/v1/jobs.
package web

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// Handler serves the viewer's files; "/" is static/index.html.
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil { // static is embedded at build time
		panic(err)
	}
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}
