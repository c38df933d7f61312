package main

import "fmt"

// printScale prints the scale case's table and whether its targets hold.
func printScale(rs []scaleResult, partitions, jobs, _ int) {
	if len(rs) == 0 {
		return
	}
	fmt.Printf("\nScale on %s: %d replicas, %d partitions, %d jobs; replicas watch no job, job-0 (one client) or every job (one client each).\n\n",
		rs[0].kafka, scaleOpts.replicas, partitions, jobs)
	fmt.Println("| --consume | lines/s | replica | jobs watched | bytes read, live + history (of produced) | records read | catalogue bytes read | CPU (cores) | partitions consumed | append → client p50 / p99 | lines received of produced | entries dropped |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range rs {
		lat, lines := "", ""
		if r.watches > 0 {
			lat = fmt.Sprintf("%v / %v", r.p50, r.p99)
			lines = fmt.Sprintf("%d of %d", r.received, r.wanted)
		}
		fmt.Printf("| %s | %d | %d | %d | %.2f MB (%.1f%%) | %.0f of %d | %.0f | %.3f | %.0f | %s | %s | %.0f |\n",
			r.mode, r.rate, r.replica, r.watches, r.readBytes()/1e6, r.share()*100,
			r.records["live"]+r.records["history"], r.producedRecords, r.bytes["catalogue"],
			r.cpu, r.consumed, lat, lines, r.dropped)
	}
	fmt.Println()
	for _, r := range rs {
		if r.mode == "watched" && r.watches == 1 {
			fmt.Printf("At %d lines/s job-0's partition got %.1f%% of the bytes produced.\n", r.rate, r.watchedShare()*100)
			break
		}
	}
	fmt.Println()
	for _, line := range scaleTargets(rs) {
		fmt.Println(line)
	}
}

// scaleTargets says, target by target, whether the results meet it.
func scaleTargets(rs []scaleResult) []string {
	met := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	var out []string
	drops := int64(0)
	for _, r := range rs {
		drops += r.wanted - r.received + int64(r.dropped)
		if r.mode != "watched" {
			continue
		}
		switch {
		case r.low:
			// The byte targets are for a busy topic: the catalogue costs
			// per job and interval, whatever the rate, and at a low rate
			// it is no longer small beside the topic.
		case r.watches == 0:
			out = append(out, fmt.Sprintf("- %d lines/s, replica %d without clients: read %.2f%% of the topic's bytes, the catalogue included (target ≤ %.0f%%), %.3f cores (target ≤ %.2f): %s",
				r.rate, r.replica, r.totalShare()*100, idleShareTarget*100, r.cpu, idleCPUTarget,
				met(r.totalShare() <= idleShareTarget && r.cpu <= idleCPUTarget)))
		case r.watches == 1:
			out = append(out, fmt.Sprintf("- %d lines/s, replica %d watching one job: read %.1f%% of the topic's bytes, the catalogue included; its partition's share %.1f%% (target ≤ %.1f%%, the share + 10%%): %s",
				r.rate, r.replica, r.totalShare()*100, r.watchedShare()*100, r.watchedShare()*oneJobSlack*100,
				met(r.totalShare() <= r.watchedShare()*oneJobSlack)))
		}
		if r.low && r.watches > 0 {
			out = append(out, fmt.Sprintf("- %d lines/s, replica %d watching %d job(s): append → client p99 %v over %d lines (target ≤ %v): %s",
				r.rate, r.replica, r.watches, r.p99, r.samples, lowRateP99, met(r.samples > 0 && r.p99 <= lowRateP99)))
		}
	}
	out = append(out, fmt.Sprintf("- lines missed or dropped by any client, in every run: %d (target 0): %s", drops, met(drops == 0)))
	return out
}
