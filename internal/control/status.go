package control

import (
	"github.com/tracerd/tracerd/internal/goprobe"
	"github.com/tracerd/tracerd/internal/loader"
	"github.com/tracerd/tracerd/internal/portpressure"
	"github.com/tracerd/tracerd/internal/targets"
)

// Status answers "status": what the daemon traces and how it is doing.
// `tracerd status --json` prints it as is; `tracerd status` formats it.
type Status struct {
	PID           int                    `json:"pid"`
	Version       string                 `json:"version"`
	UptimeSeconds int64                  `json:"uptime_seconds"`
	Config        string                 `json:"config"` // the file read; "" without one
	Reloads       int64                  `json:"reloads"`
	Targets       targets.Targets        `json:"targets"`
	Hooks         []Hook                 `json:"hooks"`
	GoProbeKind   string                 `json:"go_probe_kind,omitempty"` // uprobe_multi or classic; "" when Go awareness is off
	GoProbes      []goprobe.ProcessState `json:"go_probes"`
	Counters      loader.Counters        `json:"counters"`    // the kernel engine's, since it started
	Requests      int64                  `json:"requests"`    // requests handed to the exporters
	SinkErrors    int64                  `json:"sink_errors"` // requests an output failed to take
	Exporters     Exporters              `json:"exporters"`

	// Findings are the causes that cost requests the most time over the
	// last FindingsMinutes minutes, most first (docs/findings.md).
	Findings        []Finding `json:"findings"`
	FindingsMinutes int       `json:"findings_minutes,omitempty"` // 0: findings are off

	// Ports is the traced processes' port pressure: ephemeral ports and
	// TIME_WAIT per destination, EADDRNOTAVAIL connects (docs/ports.md).
	Ports *portpressure.Report `json:"port_pressure,omitempty"`
}

// Finding is one cause on one route, summed over the recent minutes.
type Finding struct {
	Service  string `json:"service"`
	Route    string `json:"route"`
	Code     string `json:"code"`
	Phase    string `json:"phase"`
	Requests int64  `json:"requests"`
	LostNs   int64  `json:"lost_ns"`
	Confirm  string `json:"confirm"` // the shell command that shows the cause
	Remedy   string `json:"remedy"`
}

// Hook is one kernel hook's state.
type Hook struct {
	Name   string `json:"name"`
	Way    string `json:"way,omitempty"` // how it is attached on this kernel
	OK     bool   `json:"ok"`
	Reason string `json:"reason,omitempty"` // why it is missing
	// Pending: ready but not attached yet (the scheduler hooks, until a
	// CPU quota can throttle a traced thread).
	Pending bool `json:"pending,omitempty"`
}

// Exporters are where requests go.
type Exporters struct {
	OTLP        *OTLP  `json:"otlp,omitempty"`         // nil when traces are off
	JSON        string `json:"json,omitempty"`         // the JSON lines file, "-" for stdout
	MetricsAddr string `json:"metrics_addr,omitempty"` // where /metrics is served
}

// OTLP is the trace exporter's state.
type OTLP struct {
	Endpoint string    `json:"endpoint"`
	Stats    OTLPStats `json:"stats"`
}

// OTLPStats count what the trace exporter did with requests and spans.
type OTLPStats struct {
	SpansQueued   int64 `json:"spans_queued"`   // waiting now
	SpansExported int64 `json:"spans_exported"` // accepted by the endpoint
	SpansDropped  int64 `json:"spans_dropped"`  // the queue was full
	SpansFailed   int64 `json:"spans_failed"`   // their export failed
	Exports       int64 `json:"exports"`        // export calls
	ExportErrors  int64 `json:"export_errors"`  // export calls that failed
	// Requests by sampling decision, and those sampled but over their
	// service's rate cap.
	OverBudget  int64 `json:"sampled_over_budget"`
	ByParent    int64 `json:"sampled_by_parent"`
	ByRatio     int64 `json:"sampled_by_ratio"`
	NotSampled  int64 `json:"not_sampled"`
	RateLimited int64 `json:"rate_limited"`
}

// Down says whether the exporter has failed every export so far.
func (s OTLPStats) Down() bool { return s.ExportErrors > 0 && s.SpansExported == 0 }
