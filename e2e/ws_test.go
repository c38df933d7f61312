package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// tailClient follows one job on livetail the way the viewer does: it starts
// with since=, and after any disconnect reconnects with cursor= and the
// cursor of the last frame that carried one (entries, caught_up, dropped),
// as livetail handed it out, so that it should see every line once, in
// order.
type tailClient struct {
	addr, job string

	mu         sync.Mutex
	lines      []string
	cursor     string          // the last cursor livetail handed out
	last       map[int32]int64 // per partition, the offset of the last line received
	dups       int
	reconnects int
	closes     []string // close codes and reasons seen
	sessions   []string // per session: how it started and the first offset it got
	dropped    []string // dropped frames: lines livetail announced it left out
}

// run follows the job until ctx ends.
func (c *tailClient) run(ctx context.Context) {
	for ctx.Err() == nil {
		err := c.session(ctx)
		c.mu.Lock()
		c.closes = append(c.closes, fmt.Sprint(websocket.CloseStatus(err), " ", err))
		c.reconnects++
		c.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (c *tailClient) session(ctx context.Context) error {
	q := url.Values{"job": {c.job}}
	c.mu.Lock()
	if c.cursor != "" {
		q.Set("cursor", c.cursor)
	} else {
		q.Set("since", "1h")
	}
	c.sessions = append(c.sessions, q.Encode())
	session := len(c.sessions) - 1
	first := true
	c.mu.Unlock()
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	conn, _, err := websocket.Dial(dctx, "ws://"+c.addr+"/api/v1/tail?"+q.Encode(), nil)
	cancel()
	if err != nil {
		return err
	}
	defer conn.CloseNow()
	conn.SetReadLimit(16 << 20)
	for {
		_, data, err := conn.Read(ctx)
		if err != nil {
			return err
		}
		var f struct {
			Type    string `json:"type"`
			Entries []struct {
				Partition int32  `json:"partition"`
				Offset    int64  `json:"offset"`
				Line      string `json:"line"`
			} `json:"entries"`
			Cursor string `json:"cursor"`
		}
		if err := json.Unmarshal(data, &f); err != nil {
			return fmt.Errorf("frame %q: %w", data, err)
		}
		if f.Type == "dropped" {
			c.mu.Lock()
			c.dropped = append(c.dropped, string(data))
			c.mu.Unlock()
		}
		c.mu.Lock()
		if first && len(f.Entries) > 0 {
			c.sessions[session] += fmt.Sprintf(" first entry %d:%d", f.Entries[0].Partition, f.Entries[0].Offset)
			first = false
		}
		for _, e := range f.Entries {
			if last, ok := c.last[e.Partition]; ok && e.Offset <= last {
				c.dups++
				continue
			}
			if c.last == nil {
				c.last = map[int32]int64{}
			}
			c.lines = append(c.lines, e.Line)
			c.last[e.Partition] = e.Offset
		}
		if f.Cursor != "" {
			c.cursor = f.Cursor
		}
		c.mu.Unlock()
	}
}

// report says what livetail announced it left out, as ": N dropped
// frames, the first ..."; "" when nothing.
func (c *tailClient) report() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.dropped) == 0 {
		return ""
	}
	return fmt.Sprintf(": %d dropped frames, the first %s", len(c.dropped), c.dropped[0])
}

// state says where the client stands, for a failure message: its last
// line and offset, and how its sessions ended.
func (c *tailClient) state() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	last := "none"
	if n := len(c.lines); n > 0 {
		last = fmt.Sprintf("%q, cursor %s", c.lines[n-1], c.cursor)
	}
	return fmt.Sprintf("last line %s, %d duplicates skipped, sessions %q, ended: %q", last, c.dups, c.sessions, c.closes)
}

func (c *tailClient) snapshot() (lines []string, dups, reconnects int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.lines...), c.dups, c.reconnects
}
