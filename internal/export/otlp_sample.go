package export

import (
	"encoding/binary"
	"time"

	"github.com/tracerd/tracerd/internal/correlate"
)

// Defaults of tail-aware sampling. The budget is a common intra-region
// p99 target: a request slower than that is what an incident is about,
// so every one is exported. Of the others 1 % are: at the 20k requests/s
// a node is sized for, that is 200 traces (≈ 1.5k spans) per second per
// node, a load one collector takes from many nodes, and still enough to
// show what a normal request looks like. Raise it on quiet nodes.
const (
	DefaultLatencyBudget = 50 * time.Millisecond
	DefaultSampleRatio   = 0.01
)

// Decision is a sampling decision.
type Decision uint8

const (
	NotSampled Decision = iota
	SampledOverBudget
	SampledByRatio
	SampledByParent // the caller's traceparent said sampled
	numDecisions
)

func (d Decision) String() string {
	switch d {
	case SampledOverBudget:
		return "over_budget"
	case SampledByRatio:
		return "ratio"
	case SampledByParent:
		return "parent"
	}
	return "not_sampled"
}

// Sampler is tail-aware: the decision is made when the request has
// ended, so its duration is known. Every request slower than Budget is
// exported; of the others, Ratio, chosen by trace id the way OTel SDKs'
// TraceIDRatioBased sampler chooses (the trace id's low 63 bits below
// Ratio·2⁶³), so that tracerd on every node, and SDKs with the same
// ratio, keep the same traces whole.
//
// What is sampled is then capped at MaxPerSecond traces per second per
// service by the exporter (OTLP.Add), whatever the decision: a caller's
// sampled flag and a slow request are both in the client's hands.
type Sampler struct {
	Budget       time.Duration
	Ratio        float64
	MaxPerSecond float64 // per service; 0: no cap (ResolveOTLP's default is DefaultMaxTracesPerSecond)
}

// Decide samples one request.
func (s Sampler) Decide(r *correlate.Request) Decision {
	if in := r.Inbound; in.Valid {
		// An outbound call goes with the served request that made it.
		return s.Decide(&correlate.Request{DurationNs: in.DurationNs, ParentSpanID: in.ParentSpanID,
			TraceFlags: in.TraceFlags, TraceID: r.TraceID})
	}
	if s.Budget > 0 && r.DurationNs > s.Budget.Nanoseconds() {
		return SampledOverBudget
	}
	// A caller's decision stands (OTel's ParentBased rule), so that its
	// trace is whole or absent: sampled, the request goes with it; not
	// sampled, only the budget above exports it.
	if !r.ParentSpanID.IsZero() {
		if r.TraceFlags&1 != 0 {
			return SampledByParent
		}
		return NotSampled
	}
	switch {
	case s.Ratio >= 1:
		return SampledByRatio
	case s.Ratio <= 0:
		return NotSampled
	}
	if r.TraceID.IsZero() {
		return NotSampled // invalid
	}
	low := binary.BigEndian.Uint64(r.TraceID[8:])
	if low>>1 < uint64(s.Ratio*(1<<63)) {
		return SampledByRatio
	}
	return NotSampled
}
