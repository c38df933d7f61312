package archive

import (
	"context"
	"testing"

	"github.com/logpipe/logpipe/livetail/internal/hub"
)

// TestContext: the lines around a line in its own source file generation,
// in log.offset order, whatever else the partition holds between them; the
// job's lines by Kafka offset for a line without a source position.
func TestContext(t *testing.T) {
	ix, a := newIndex(t)
	// Partition 1: job web's file generation g1 at even offsets 0..598
	// (line i at log.offset i*100), other jobs at odd ones, then web's
	// next generation g2 (the file truncated and written again: its
	// positions start at 0 again) at 600..699.
	var g1, g2, all []doc
	for o := int64(0); o < 600; o++ {
		if o%2 == 0 {
			d := doc{topic: "logs", partition: 1, offset: o, key: "web", value: agentRecord("web", "00000000000000g1", o/2*100, o)}
			g1 = append(g1, d)
			all = append(all, d)
			continue
		}
		all = append(all, doc{topic: "logs", partition: 1, offset: o, key: "db", value: agentRecord("db", "00000000000000d1", o/2*100, o)})
	}
	for o := int64(600); o < 700; o++ {
		d := doc{topic: "logs", partition: 1, offset: o, key: "web", value: agentRecord("web", "00000000000000g2", (o-600)*100, o)}
		g2 = append(g2, d)
		all = append(all, d)
	}
	// Partition 4: lines of another producer, without a source position:
	// job plain at offsets 0..99 but 50 to 59, which are job other's.
	var plain []doc
	for o := int64(0); o < 100; o++ {
		job := "plain"
		if o >= 50 && o < 60 {
			job = "other"
		}
		d := doc{topic: "logs", partition: 4, offset: o, key: job, value: plainRecord(job, o)}
		all = append(all, d)
		if job == "plain" {
			plain = append(plain, d)
		}
	}
	// Partition 5: an older agent's lines, without log.file.generation,
	// then the same file truncated and written again by a newer one.
	var oldAgent, newAgent []doc
	for o := int64(0); o < 40; o++ {
		gen, pos := "", o*100
		if o >= 20 {
			gen, pos = "00000000000000f1", (o-20)*100
		}
		d := doc{topic: "logs", partition: 5, offset: o, key: "web", value: agentRecord("web", gen, pos, o)}
		all = append(all, d)
		if gen == "" {
			oldAgent = append(oldAgent, d)
		} else {
			newAgent = append(newAgent, d)
		}
	}
	ix.add(all...)
	ctx := context.Background()

	for name, c := range map[string]struct {
		job           string
		partition     int32
		offset        int64
		before, after int
		line          doc
		wantBefore    []doc
		wantAfter     []doc
	}{
		"middle of g1":           {"web", 1, 300, 50, 50, g1[150], g1[100:150], g1[151:201]},
		"near g1's start":        {"web", 1, 8, 50, 3, g1[4], g1[:4], g1[5:8]},
		"g1's end":               {"web", 1, 598, 2, 50, g1[299], g1[297:299], nil},
		"g2, positions reused":   {"web", 1, 610, 5, 5, g2[10], g2[5:10], g2[11:16]},
		"none asked":             {"web", 1, 300, 0, 0, g1[150], nil, nil},
		"no generation":          {"web", 5, 10, 5, 5, oldAgent[10], oldAgent[5:10], oldAgent[11:16]},
		"after no generation":    {"web", 5, 30, 5, 50, newAgent[10], newAgent[5:10], newAgent[11:]},
		"no position, by offset": {"plain", 4, 48, 3, 3, plain[48], plain[45:48], plain[49:52]},
	} {
		t.Run(name, func(t *testing.T) {
			line, below, above, err := a.Context(ctx, c.job, c.partition, c.offset, c.before, c.after)
			if err != nil {
				t.Fatal(err)
			}
			if line == nil {
				t.Fatal("line not found")
			}
			checkEntries(t, "line", []*hub.Entry{line}, []doc{c.line})
			checkEntries(t, "before", below, c.wantBefore)
			checkEntries(t, "after", above, c.wantAfter)
		})
	}

	for name, c := range map[string]struct {
		job       string
		partition int32
		offset    int64
	}{
		"another job's line": {"web", 1, 301},
		"no such offset":     {"web", 1, 9999},
		"another partition":  {"web", 2, 300},
	} {
		line, _, _, err := a.Context(ctx, c.job, c.partition, c.offset, 5, 5)
		if err != nil || line != nil {
			t.Errorf("%s: line %v, %v; want none", name, line, err)
		}
	}
}
