package kafkasec

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Prober explains, for a readiness check, why Kafka clients fail while
// running: it runs Check at most once per Every (default 5s) and keeps the
// answer in between, so that a readiness endpoint polled often does not
// dial the brokers each time.
type Prober struct {
	Brokers []string
	Config  *Config
	Every   time.Duration

	mu  sync.Mutex
	at  time.Time
	err *Error
}

// Refusal is Check's *Error when the brokers refuse the credential or the
// certificate, nil when they take it or cannot be reached.
func (p *Prober) Refusal(ctx context.Context) *Error {
	p.mu.Lock()
	defer p.mu.Unlock()
	every := p.Every
	if every <= 0 {
		every = 5 * time.Second
	}
	if !p.at.IsZero() && time.Since(p.at) < every {
		return p.err
	}
	p.at, p.err = time.Now(), nil
	var refused *Error
	if err := Check(ctx, p.Brokers, p.Config); errors.As(err, &refused) {
		p.err = refused
	}
	return p.err
}
