package metrics

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tracerd/tracerd/internal/export"
	"github.com/tracerd/tracerd/internal/loader"
	"github.com/tracerd/tracerd/internal/portpressure"
)

// Sources are where the self-metrics are read at each scrape. A nil
// source leaves its metrics out.
type Sources struct {
	Kernel     func() (loader.Counters, error) // loader.Tracer.Counters
	Read       func() int64                    // records read and handed to exporters
	SinkErrors func() int64                    // exporter (output) errors
	OTLP       func() export.OTLPStats
	Ports      func() *portpressure.Report // port pressure (ports.go)
}

// Self is a collector of tracerd's own metrics. Its sources can be set
// after registration (the tracer exists only once tracing started).
type Self struct {
	mu         sync.Mutex
	src        Sources
	kernelErrs atomic.Int64
}

// NewSelf registers the self-metrics with reg.
func NewSelf(reg prometheus.Registerer) *Self {
	s := &Self{}
	reg.MustRegister(s)
	return s
}

// SetSources says where to read the metrics from.
func (s *Self) SetSources(src Sources) {
	s.mu.Lock()
	s.src = src
	s.mu.Unlock()
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	descKernelRecords = desc("tracerd_kernel_records_total", "Request records the BPF programs wrote to the ring buffer.")
	descRead          = desc("tracerd_records_read_total", "Request records read from the ring buffer, correlated and handed to the exporters.")
	descLost          = desc("tracerd_records_lost_total", "Request records lost before user space read them, by reason.", "reason")
	descReserve       = desc("tracerd_ringbuf_reserve_failures_total", "bpf_ringbuf_reserve failures (ring buffer full), by kind of entry.", "ringbuf")
	descMapFull       = desc("tracerd_map_full_total", "Inserts refused because a BPF map was full: conns (connections left untraced), tasks (threads not timed), go_calls (Go calls not timed).", "map")
	descMapEntries    = desc("tracerd_map_entries", "Entries in use in a BPF map.", "map")
	descMapMax        = desc("tracerd_map_max_entries", "Capacity of a BPF map.", "map")
	descMapFill       = desc("tracerd_map_fill_ratio", "Entries in use over capacity of a BPF map (0-1).", "map")
	descConns         = desc("tracerd_connections_traced_total", "Accepted connections that passed the target filter.")
	descSweepFails    = desc("tracerd_idle_sweep_failures_total", "Idle sweeps that could not run (a quiet keep-alive request then ends with the next one or the close).")
	descCaptureFails  = desc("tracerd_capture_failures_total", "HTTP head copies that failed (the request has no HTTP facts).")
	descUnanswered    = desc("tracerd_unanswered_writes_total", "Writes outside any request (server-first protocols).")
	descSinkErrors    = desc("tracerd_output_errors_total", "Requests an exporter failed to write (JSON lines).")
	descKernelErrors  = desc("tracerd_kernel_counter_read_errors_total", "Scrapes that could not read the kernel counters.")

	descSampled  = desc("tracerd_trace_sampling_decisions_total", "Requests by sampling decision: over_budget (slower than the latency budget), ratio (kept by the sample ratio), not_sampled.", "decision")
	descExported = desc("tracerd_otlp_spans_exported_total", "Spans the OTLP endpoint accepted.")
	descFailed   = desc("tracerd_otlp_spans_failed_total", "Spans lost because their export failed (endpoint down, refusing or too slow).")
	descDropped  = desc("tracerd_otlp_spans_dropped_total", "Spans dropped because the export queue was full.")
	descQueued   = desc("tracerd_otlp_queue_spans", "Spans waiting in the export queue.")
	descExports  = desc("tracerd_otlp_exports_total", "OTLP export calls.")
	descExpErrs  = desc("tracerd_otlp_export_errors_total", "OTLP export calls that failed.")
	descCapped   = desc("tracerd_traces_rate_limited_total", "Sampled requests not exported: their service was over the traces-per-second cap.")
)

// Describe sends every descriptor (the collector is checked).
func (s *Self) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descKernelRecords, descRead, descLost, descReserve, descMapFull,
		descMapEntries, descMapMax, descMapFill, descConns, descSweepFails, descCaptureFails, descUnanswered,
		descSinkErrors, descKernelErrors, descSampled, descExported, descFailed, descDropped, descQueued,
		descExports, descExpErrs, descCapped, descRangeSize, descEphemeral, descTimeWait, descNSTimeWait, descEAddrNotAvail, descUncounted} {
		ch <- d
	}
}

// Collect reads every source.
func (s *Self) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	src := s.src
	s.mu.Unlock()
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if src.Kernel != nil {
		c, err := src.Kernel()
		if err != nil {
			s.kernelErrs.Add(1)
		}
		counter(descKernelErrors, float64(s.kernelErrs.Load()))
		if err == nil {
			counter(descKernelRecords, float64(c.Records))
			counter(descLost, float64(c.RingbufDrops), "ringbuf_full")
			counter(descReserve, float64(c.RingbufDrops), "records")
			counter(descReserve, float64(c.GoDrops), "go")
			counter(descMapFull, float64(c.ConnMapFull), "conns")
			counter(descMapFull, float64(c.TaskMapFull), "tasks")
			counter(descMapFull, float64(c.GoMapFull), "go_calls")
			gauge(descMapEntries, float64(c.ConnsOpen), "conns")
			gauge(descMapMax, float64(c.ConnsMax), "conns")
			if c.ConnsMax > 0 {
				gauge(descMapFill, float64(c.ConnsOpen)/float64(c.ConnsMax), "conns")
			}
			counter(descConns, float64(c.ConnsTraced))
			counter(descSweepFails, float64(c.IdleSweepFails))
			counter(descCaptureFails, float64(c.CaptureFails))
			counter(descUnanswered, float64(c.UnansweredWrites))
		}
	}
	if src.Read != nil {
		counter(descRead, float64(src.Read()))
	}
	if src.SinkErrors != nil {
		counter(descSinkErrors, float64(src.SinkErrors()))
	}
	if src.Ports != nil {
		collectPorts(src.Ports(), counter, gauge)
	}
	if src.OTLP != nil {
		st := src.OTLP()
		for d := export.Decision(0); int(d) < len(st.Sampled); d++ {
			counter(descSampled, float64(st.Sampled[d]), d.String())
		}
		counter(descExported, float64(st.SpansExported))
		counter(descFailed, float64(st.SpansFailed))
		counter(descDropped, float64(st.SpansDropped))
		gauge(descQueued, float64(st.SpansQueued))
		counter(descExports, float64(st.Exports))
		counter(descExpErrs, float64(st.ExportErrors))
		counter(descCapped, float64(st.RateLimited))
	}
}
