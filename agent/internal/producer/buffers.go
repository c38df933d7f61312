package producer

import (
	"slices"
	"sync"
)

// Size classes of the value buffers: eight per doubling from minClass, so
// that a buffer is at most an eighth larger than the record it holds, up to
// maxClass; a larger buffer is not kept.
const (
	minClass     = 256
	maxClass     = 4 << 20
	stepsPerPow2 = 8
)

// classSizes are the capacities of the buffer classes, ascending.
var classSizes = func() []int {
	var s []int
	for base := minClass; base < maxClass; base *= 2 {
		for i := range stepsPerPow2 {
			s = append(s, base+i*base/stepsPerPow2)
		}
	}
	return append(s, maxClass)
}()

// buffers keeps the value buffers of released Messages for reuse, at most
// max bytes of them in all: what the producer holds is bounded by bytes,
// whatever the length of the lines, not by a number of records times the
// largest record each ever carried. When full, it keeps the smaller
// buffers (the most used) and lets the garbage collector have larger ones.
type buffers struct {
	max int64

	mu    sync.Mutex
	free  [][][]byte // per class, used last in first out
	bytes int64      // capacity of the buffers in free
}

func newBuffers(max int64) *buffers {
	return &buffers{max: max, free: make([][][]byte, len(classSizes))}
}

// get returns an empty buffer with room for n bytes.
func (b *buffers) get(n int) []byte {
	c, _ := slices.BinarySearch(classSizes, n)
	if c == len(classSizes) {
		return make([]byte, 0, n) // larger than any class: not kept either
	}
	b.mu.Lock()
	if l := len(b.free[c]); l > 0 {
		buf := b.free[c][l-1]
		b.free[c][l-1] = nil
		b.free[c] = b.free[c][:l-1]
		b.bytes -= int64(cap(buf))
		b.mu.Unlock()
		return buf[:0]
	}
	b.mu.Unlock()
	return make([]byte, 0, classSizes[c])
}

// put keeps buf for reuse if there is room.
func (b *buffers) put(buf []byte) {
	size := cap(buf)
	if size < minClass || size > maxClass {
		return
	}
	// The largest class buf can serve.
	c, exact := slices.BinarySearch(classSizes, size)
	if !exact {
		c--
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.bytes+int64(size) > b.max {
		// Make room by dropping a larger buffer, if any.
		big := len(b.free) - 1
		for big > c && len(b.free[big]) == 0 {
			big--
		}
		if big <= c {
			return
		}
		l := len(b.free[big])
		b.bytes -= int64(cap(b.free[big][l-1]))
		b.free[big][l-1] = nil
		b.free[big] = b.free[big][:l-1]
	}
	b.free[c] = append(b.free[c], buf[:0])
	b.bytes += int64(size)
}

// held is the capacity of the buffers kept.
func (b *buffers) held() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.bytes
}
