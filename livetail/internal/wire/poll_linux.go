package wire

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// peers is the process's poller of watched connections.
var peers poller

// poller waits, in one goroutine, for the watched sockets to become
// readable (epoll), and has each one read by its watch. The goroutine
// waits for the poll set itself to become readable through the runtime's
// own poller (an epoll descriptor is readable while it has events), so it
// parks like any goroutine waiting for a socket, holding no thread. Each
// socket is armed for one event (EPOLLONESHOT) and armed again once its
// read is done. A socket's events carry its watch's number, not its
// descriptor's, and the poll set is changed only through the connection
// (RawConn.Control), which keeps the descriptor from being closed
// meanwhile: once the connection closed it, the system has dropped it from
// the set, and its number may name another socket.
//
// The goroutine runs while any connection is watched: add starts it, and
// remove of the last one stops it (closing the poll set) and waits for it.
type poller struct {
	mu      sync.Mutex
	watches map[uint64]*watch // by number
	next    uint64            // the number of the next watch
	set     *os.File          // the epoll descriptor; nil: no loop runs
	epfd    int               // set's descriptor
	done    chan struct{}     // closed when the running loop stopped
}

// errPoller is an error of the poller's system calls.
var errPoller = errors.New("poller")

// event is what a watch's socket is armed for, and its number.
func event(id uint64) *unix.EpollEvent {
	return &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(id), Pad: int32(id >> 32)}
}

// ctl changes w's socket in the poll set.
func (p *poller) ctl(w *watch, op int) error {
	var opErr error
	if err := w.c.nc.raw.Control(func(fd uintptr) {
		opErr = unix.EpollCtl(p.epfd, op, int(fd), event(w.id))
	}); err != nil {
		return err // closed
	}
	if opErr != nil {
		return fmt.Errorf("%w: %w", errPoller, opErr)
	}
	return nil
}

func (p *poller) add(w *watch) error {
	p.mu.Lock()
	if p.set == nil {
		if err := p.start(); err != nil {
			p.mu.Unlock()
			return err
		}
	}
	p.next++
	w.id = p.next
	p.watches[w.id] = w
	err := p.ctl(w, unix.EPOLL_CTL_ADD)
	var done chan struct{}
	if err != nil {
		done = p.drop(w)
	}
	p.mu.Unlock()
	if done != nil {
		<-done
	}
	return err
}

// rearm watches w's socket for its next event.
func (p *poller) rearm(w *watch) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.watches[w.id] != w {
		return fmt.Errorf("%w: rearming a socket no longer watched", errPoller)
	}
	return p.ctl(w, unix.EPOLL_CTL_MOD)
}

// remove stops watching w; the last one stops the loop.
func (p *poller) remove(w *watch) {
	p.mu.Lock()
	if p.watches[w.id] != w {
		p.mu.Unlock()
		return
	}
	p.ctl(w, unix.EPOLL_CTL_DEL) // fails once the socket is closed, which dropped it
	done := p.drop(w)
	p.mu.Unlock()
	if done != nil {
		<-done
	}
}

// drop forgets w; when it was the last, it stops the loop and returns what
// is closed once it stopped. p.mu is held.
func (p *poller) drop(w *watch) (done chan struct{}) {
	delete(p.watches, w.id)
	if len(p.watches) > 0 {
		return nil
	}
	p.set.Close() // the loop's wait ends
	done, p.set = p.done, nil
	return done
}

// start makes the poll set and starts the loop; p.mu is held.
func (p *poller) start() error {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err == nil {
		err = unix.SetNonblock(epfd, true)
	}
	if err != nil {
		return fmt.Errorf("%w: %w", errPoller, err)
	}
	set := os.NewFile(uintptr(epfd), "epoll")
	raw, err := set.SyscallConn()
	if err != nil {
		set.Close()
		return fmt.Errorf("%w: %w", errPoller, err)
	}
	if p.watches == nil {
		p.watches = map[uint64]*watch{}
	}
	p.set, p.epfd, p.done = set, epfd, make(chan struct{})
	go p.loop(raw, epfd, p.done)
	return nil
}

// loop hands each event to its watch until the poll set is closed.
func (p *poller) loop(set syscall.RawConn, epfd int, done chan struct{}) {
	defer close(done)
	evs := make([]unix.EpollEvent, 128)
	for {
		var n int
		err := set.Read(func(uintptr) bool {
			var err error
			n, err = unix.EpollWait(epfd, evs, 0)
			return n > 0 || (err != nil && err != unix.EINTR)
		})
		if err != nil {
			return // the poll set was closed
		}
		// Under the lock: remove, which takes it, then waits for the
		// reads started here.
		p.mu.Lock()
		for _, ev := range evs[:max(n, 0)] {
			if w := p.watches[uint64(uint32(ev.Fd))|uint64(uint32(ev.Pad))<<32]; w != nil {
				w.readable()
			}
		}
		p.mu.Unlock()
	}
}

// readNow reads what the socket holds without waiting: errNoData when it
// holds nothing.
func readNow(raw syscall.RawConn, p []byte) (int, error) {
	var n int
	var errno error
	err := raw.Read(func(fd uintptr) bool {
		for {
			n, errno = syscall.Read(int(fd), p)
			if errno != syscall.EINTR {
				return true // done: do not wait
			}
		}
	})
	switch {
	case err != nil:
		return 0, err
	case errno == syscall.EAGAIN:
		return 0, errNoData
	case errno != nil:
		return 0, errno
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}
