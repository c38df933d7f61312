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
// parks like any goroutine waiting for a socket, holding no thread. A
// socket is watched through a duplicate of its descriptor, so that the
// number the poller knows it by is not reused while it is watched,
// whenever the connection closes its own. Each socket is armed for one
// event (EPOLLONESHOT) and armed again once its read is done.
//
// The goroutine runs while any connection is watched: add starts it, and
// remove of the last one stops it (closing the poll set) and waits for it.
type poller struct {
	mu      sync.Mutex
	watches map[int32]*watch // by the duplicate's number
	set     *os.File         // the epoll descriptor; nil: no loop runs
	epfd    int              // set's descriptor
	done    chan struct{}    // closed when the running loop stopped
}

// errPoller is an error of the poller's system calls.
var errPoller = errors.New("poller")

// events are the events a watched socket is armed for.
const events = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT

func (p *poller) add(w *watch) error {
	var fd int
	var dupErr error
	if err := w.c.nc.raw.Control(func(s uintptr) {
		fd, dupErr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return err
	}
	if dupErr != nil {
		return fmt.Errorf("%w: duplicating a socket: %w", errPoller, dupErr)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.set == nil {
		if err := p.start(); err != nil {
			unix.Close(fd)
			return err
		}
	}
	w.fd = fd
	p.watches[int32(fd)] = w
	ev := unix.EpollEvent{Events: events, Fd: int32(fd)}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		delete(p.watches, int32(fd))
		unix.Close(fd)
		return fmt.Errorf("%w: adding a socket: %w", errPoller, err)
	}
	return nil
}

// rearm watches w's socket for its next event.
func (p *poller) rearm(w *watch) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.watches[int32(w.fd)] != w {
		return fmt.Errorf("%w: rearming a socket no longer watched", errPoller)
	}
	ev := unix.EpollEvent{Events: events, Fd: int32(w.fd)}
	return unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, w.fd, &ev)
}

// remove stops watching w; the last one stops the loop.
func (p *poller) remove(w *watch) {
	p.mu.Lock()
	if p.watches[int32(w.fd)] != w {
		p.mu.Unlock()
		return
	}
	delete(p.watches, int32(w.fd))
	unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, w.fd, nil)
	unix.Close(w.fd)
	var done chan struct{}
	if len(p.watches) == 0 {
		p.set.Close() // the loop's wait ends
		done, p.set = p.done, nil
	}
	p.mu.Unlock()
	if done != nil {
		<-done
	}
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
		p.watches = map[int32]*watch{}
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
			if w := p.watches[ev.Fd]; w != nil {
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
