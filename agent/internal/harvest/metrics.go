package harvest

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the harvester's Prometheus metrics.
type Metrics struct {
	LinesRead   prometheus.Counter
	FilesTailed prometheus.Gauge
	LagBytes    *prometheus.GaugeVec
	Truncated   prometheus.Counter
	Rewinds     prometheus.Counter
	Rotations   prometheus.Counter
	// Wakeups counts, by what woke it ("notification" or "poll"), the
	// times a reader at the end of its file looked for new lines.
	Wakeups *prometheus.CounterVec

	wokenByNotification, wokenByPoll prometheus.Counter
}

// NewMetrics creates the metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		LinesRead: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agent_lines_read_total", Help: "Lines (or multiline events) read from files and handed to the Kafka producer.",
		}),
		FilesTailed: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "agent_files_tailed", Help: "Open files being read, rotated ones still draining included.",
		}),
		LagBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "agent_file_lag_bytes", Help: "Per file: size minus the offset acknowledged by Kafka.",
		}, []string{"path"}),
		Truncated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agent_lines_truncated_total", Help: "Lines cut at --max-line-bytes (or to fit the Kafka record limit).",
		}),
		Rewinds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agent_rewinds_total", Help: "Times records that Kafka failed were sent again (from memory, in file order).",
		}),
		Rotations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agent_file_rotations_total", Help: "Rotations, truncations and deletions noticed.",
		}),
		Wakeups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agent_file_wakeups_total",
			Help: "Times a reader at the end of its file looked for new lines, by what woke it: a change notification (inotify) or a poll.",
		}, []string{"by"}),
	}
	m.wokenByNotification = m.Wakeups.WithLabelValues("notification")
	m.wokenByPoll = m.Wakeups.WithLabelValues("poll")
	reg.MustRegister(m.LinesRead, m.FilesTailed, m.LagBytes, m.Truncated, m.Rewinds, m.Rotations, m.Wakeups)
	return m
}
