package archive

import "github.com/logpipe/logpipe/livetail/internal/session"

// The session engine reads history past Kafka's retention through it.
var _ session.Archive = (*Archive)(nil)
