package session

// maxSources bounds the source files one session remembers to skip resent
// lines (see sources): about 200 KiB at most.
const maxSources = 4096

// sources remembers, per source file (hub.Entry.Src), the highest
// log.offset a session has sent, so that the session skips a line the
// agent sent twice (killed between Kafka's acknowledgement and its next
// save of offsets, it sends again from the saved offset): the resend is a
// new Kafka record, at a later Kafka offset, with the same source and an
// offset at or below one already sent.
//
// It holds at most maxSources sources in two generations of half as many:
// when the current one is full it becomes the old one and the oldest is
// forgotten; a source found in the old generation moves to the current
// one. The sources least recently seen are thus forgotten first. A session
// that has only records without a source position (other producers)
// allocates nothing.
type sources struct {
	cur, old map[uint64]*int64 // per source, its highest offset sent
	// The source of the last line, which most often is the next line's
	// too: such a line costs no lookup. Each other line looks its source
	// up, which moves it to the current generation if needed.
	last   uint64
	lastHi *int64
}

// resent reports whether the line of src at pos was sent already: pos at
// or below the highest offset of src sent. Otherwise it records pos as
// src's highest.
func (s *sources) resent(src uint64, pos int64) bool {
	hi := s.lastHi
	if src != s.last || hi == nil {
		hi = s.cur[src]
		if hi == nil {
			if hi = s.old[src]; hi != nil {
				delete(s.old, src)
			} else {
				hi = new(int64)
				*hi = pos - 1
			}
			s.put(src, hi)
		}
		s.last, s.lastHi = src, hi
	}
	if pos <= *hi {
		return true
	}
	*hi = pos
	return false
}

// put adds src to the current generation, which first becomes the old one
// when full.
func (s *sources) put(src uint64, hi *int64) {
	if s.cur == nil {
		s.cur, s.old = map[uint64]*int64{}, map[uint64]*int64{}
	}
	if len(s.cur) >= maxSources/2 {
		clear(s.old)
		s.cur, s.old = s.old, s.cur
	}
	s.cur[src] = hi
}

// len returns the number of sources remembered.
func (s *sources) len() int { return len(s.cur) + len(s.old) }
