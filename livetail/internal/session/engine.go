// Package session runs livetail's sessions: one live tail of one or more
// jobs on one connection, from the history the client asks for (the last N
// lines, everything since a time, or everything after a cursor) to the
// live lines, with no gap and no duplicate between them. It also serves
// pages of earlier lines (Earlier).
//
// History older than Kafka's retention comes from the archive (the search
// index, Archive) when the engine has one, joined to Kafka's at its oldest
// offset.
//
// History is read from Kafka while the session's hub subscription queues
// the live lines from offsets taken under the hub's lock; history is read
// up to those offsets, then the queue is caught up with (reading from
// Kafka again what it dropped meanwhile). A session keeps, per partition,
// the last offset sent and the cursor position, and skips lines the agent
// sent twice. Once caught up, the session has no goroutine of its own
// while it waits: short-lived pumps write its frames when there is
// something to do (live.go). How frames are written is package wire's job;
// who may open a session, package api's.
package session

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/logpipe/logpipe/livetail/internal/hub"
	"github.com/logpipe/logpipe/livetail/internal/wire"
)

const (
	// maxFrameBytes bounds an entries frame (a single larger entry still goes alone).
	maxFrameBytes = 1 << 20
	// maxCatchUpRounds bounds how often a session chases the live stream
	// with more history before it accepts drops.
	maxCatchUpRounds = 8
)

// Session end causes, besides wire.ErrPeerGone.
var (
	ErrShutdown   = errors.New("server shutting down")
	ErrMaxSession = errors.New("session reached its maximum duration; reconnect with cursor")
	ErrExpired    = errors.New("token expired: reconnect with a fresh token and the cursor")
)

// UpstreamError is a failure to read Kafka.
type UpstreamError struct{ Err error }

func (e UpstreamError) Error() string { return "upstream unavailable: " + e.Err.Error() }
func (e UpstreamError) Unwrap() error { return e.Err }

// ParamError is a bad request parameter: the session is closed with 4400
// and the error's text, which names the parameter.
type ParamError struct {
	Param  string
	Reason string
}

func (e *ParamError) Error() string { return e.Param + ": " + e.Reason }

// Mode says where a session's history starts.
type Mode int

// Modes, from the query parameters tail, since and cursor.
const (
	ModeLive   Mode = iota // no history: live lines only
	ModeTail               // the job's last Tail lines
	ModeSince              // lines written at Since or later
	ModeCursor             // lines after the positions of Cursor
)

// Params are what a session serves: the jobs (one to ten, distinct, in the
// order the client gave them), where its history starts, and the lines it
// keeps.
type Params struct {
	Jobs   []string
	Mode   Mode
	Tail   int
	Since  time.Time
	Cursor []Position
	Grep   *regexp.Regexp // nil: every line
}

// History is what sessions read from Kafka (package upstream implements it).
type History interface {
	// Partitions returns the topic's number of partitions.
	Partitions() int
	// Home returns the partition DESIGN.md's partitioner gives job.
	Home(job string) int32
	// Candidates returns the partitions standard producers put job's
	// records on, the home partition first.
	Candidates(job string) []int32
	// Bounds returns the oldest retained offset and the next offset of p.
	Bounds(ctx context.Context, p int32) (oldest, newest int64, err error)
	// OffsetAt returns the first offset of p written at t or later.
	OffsetAt(ctx context.Context, p int32, t time.Time) (int64, error)
	// Read calls fn with the entries of p in [from, to) whose job is one of
	// jobs, in offset order, and with nil now and then while it scans (to
	// ping the client).
	Read(ctx context.Context, p int32, from, to int64, jobs []string, fn func(*hub.Entry) error) error
	// RefreshPartitions looks the topic's partitions up in Kafka and
	// returns once those added to the topic are in the hub.
	RefreshPartitions(ctx context.Context) error
}

// OldestTimes is implemented by a History that can tell cheaply when the
// oldest record Kafka retains on a partition was written (hello's
// history_from).
type OldestTimes interface {
	// OldestTime returns the timestamp of p's oldest retained record;
	// zero when p is empty.
	OldestTime(ctx context.Context, p int32) (time.Time, error)
}

// Conn is the connection a session writes to (*wire.Conn); the session is
// its only writer. Its writes time out by themselves: the session writes
// without a deadline of its own.
type Conn interface {
	Write(b []byte) error
	Ping(ctx context.Context) error
}

// Engine is what a process's sessions share. Set every field before the
// first session.
type Engine struct {
	Hub          *hub.Hub
	History      History
	PingInterval time.Duration
	BatchSize    int   // entries per frame
	MaxScan      int64 // records one session's history reads scan at most
	Pace         *wire.Pacer
	Sent         prometheus.Counter // entries written to clients
	Resent       prometheus.Counter // lines the agent sent twice, skipped
	// Place is the job placement hook: the partitions of the log topic
	// where job's lines were seen lately by others than this process (the
	// jobs catalogue). A session reads history from them and has them
	// consumed instead of the partitioners' candidates (see Partitions);
	// none (nil, or nothing for the job): the candidates.
	Place func(job string) []int32
	// Archive holds the records Kafka no longer retains (the search
	// index); nil: none, history starts at Kafka's oldest record.
	Archive Archive

	pings wire.Pings // pings the live sessions' clients
}

// Partitions returns the stream's home partition and the partitions its
// history is read from and that are consumed for it (its deps): the union
// of what each of its jobs needs.
//
// For each job, placement comes first: when the placement hook (Place, the
// jobs catalogue) knows where the job's lines are, the job's deps are
// those partitions, not the partitioners' other candidates; only for a job
// it does not know are they the partitions standard producers put its
// lines on (the candidates). To either are added the partitions where this
// process saw the job, and to the union those of the cursor.
//
// home is the first job's partition under DESIGN.md's partitioner when it
// is among the deps, else the first partition the hook places that job on,
// so that caught_up's offset is of a partition the session reads.
// A bare offset as cursor (of a single-partition client) is taken as one
// of the partition where the jobs' lines are when that is one partition,
// else of home.
//
// A cursor may name a partition this process does not follow yet: one
// added to the topic that another replica, or Kafka, knew of first. The
// topic's partitions are then looked up at once, and only a partition
// Kafka does not have either is refused (a ParamError); any other error is
// a failure to ask Kafka.
func (e *Engine) Partitions(ctx context.Context, p *Params) (home int32, deps []int32, err error) {
	if unknown(p.Cursor, e.Hub.Partitions()) {
		if err := e.History.RefreshPartitions(ctx); err != nil && unknown(p.Cursor, e.Hub.Partitions()) {
			return 0, nil, fmt.Errorf("looking up the partitions the cursor names: %w", err)
		}
	}
	n := e.Hub.Partitions()
	var known []int32 // where the jobs' lines are, as far as anyone knows
	for i, job := range p.Jobs {
		jobHome, jobDeps, jobKnown := e.jobPartitions(job, n)
		if i == 0 {
			home = jobHome
		}
		for _, q := range jobDeps {
			deps = appendNew(deps, q)
		}
		for _, q := range jobKnown {
			known = appendNew(known, q)
		}
	}
	for i, c := range p.Cursor {
		switch {
		case c.Partition == HomePartition && len(known) == 1:
			p.Cursor[i].Partition = known[0]
		case c.Partition == HomePartition:
			p.Cursor[i].Partition = home
		case int(c.Partition) >= n:
			return 0, nil, &ParamError{Param: "cursor", Reason: fmt.Sprintf("partition %d does not exist (the topic has %d)", c.Partition, n)}
		default:
			deps = appendNew(deps, c.Partition)
		}
	}
	slices.Sort(deps)
	return home, deps, nil
}

// jobPartitions returns one job's home partition (see Partitions), the
// partitions its history is read from, and those where its lines are known
// to be (placed by the hook, or seen by this process).
func (e *Engine) jobPartitions(job string, n int) (home int32, deps, known []int32) {
	placed := e.placed(job, n)
	if len(placed) > 0 {
		deps = slices.Clone(placed)
	} else {
		deps = slices.Clone(e.History.Candidates(job))
	}
	known = slices.Clone(placed)
	for _, s := range e.Hub.JobPartitions(job) {
		known = appendNew(known, s.Partition)
		deps = appendNew(deps, s.Partition)
	}
	home = e.History.Home(job)
	if !slices.Contains(deps, home) && len(placed) > 0 {
		home = placed[0] // the candidates, home first, are the deps unless placed
	}
	return home, deps, known
}

// placed returns the partitions below n that the placement hook gives for
// job, in its order; nil without a hook or when it does not know the job.
func (e *Engine) placed(job string, n int) []int32 {
	if e.Place == nil {
		return nil
	}
	var out []int32
	for _, q := range e.Place(job) {
		if q >= 0 && int(q) < n {
			out = appendNew(out, q)
		}
	}
	return out
}

// appendNew appends q to s unless s holds it already.
func appendNew(s []int32, q int32) []int32 {
	if slices.Contains(s, q) {
		return s
	}
	return append(s, q)
}

// unknown reports whether cursor names a partition at or beyond n.
func unknown(cursor []Position, n int) bool {
	return slices.ContainsFunc(cursor, func(c Position) bool { return int(c.Partition) >= n })
}
