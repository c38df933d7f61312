package backends

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/logpipe/logpipe/devstack/esfake"
)

// esShutdownLimit bounds how long Close waits for requests in progress.
const esShutdownLimit = 2 * time.Second

// esServer serves an esfake.Server over HTTP.
type esServer struct {
	fake *esfake.Server
	ln   net.Listener
	srv  *http.Server
	wg   sync.WaitGroup
}

// startES starts esfake on addr; with sec, over HTTPS behind basic auth.
func startES(addr string, sec *Security) (*esServer, error) {
	ln, err := listen(addr)
	if err != nil {
		return nil, err
	}
	fake := esfake.New()
	var h http.Handler = fake
	var serveOn net.Listener = ln
	if sec != nil {
		h = sec.ESHandler(fake)
		serveOn = tls.NewListener(ln, sec.serverTLS(false))
	}
	s := &esServer{
		fake: fake,
		ln:   ln,
		srv:  &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second},
	}
	s.wg.Go(func() { _ = s.srv.Serve(serveOn) })
	return s, nil
}

// Addr is the listen address, such as 127.0.0.1:9200.
func (s *esServer) Addr() string { return s.ln.Addr().String() }

// URL is the base URL, such as http://127.0.0.1:9200.
func (s *esServer) URL() string { return "http://" + s.Addr() }

// Close lets requests in progress finish for a moment, then closes every
// connection and waits for the server to stop.
func (s *esServer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), esShutdownLimit)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = s.srv.Close()
	}
	s.wg.Wait()
	return err
}
