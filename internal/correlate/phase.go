package correlate

import (
	"math/bits"

	"github.com/tracerd/tracerd/internal/loader"
)

// Phase names a part of a request's time. The names are used verbatim as
// JSON keys, OTLP span names, pprof frames and the Prometheus label.
type Phase uint8

const (
	AcceptQueue Phase = iota
	Softirq
	RecvQueue
	Runqueue
	CFSThrottle
	App
	GCSTW
	Serialize
	SendQueue
	AckWait
	// Outbound calls (client records): connect, then tls_handshake on
	// their new connections (tls_handshake is also a served TLS
	// connection's first request's), send, wait, receive.
	Connect
	TLSHandshake
	Send
	Wait
	Receive
	NumPhases
)

var phaseNames = [NumPhases]string{
	AcceptQueue:  "accept_queue",
	Softirq:      "softirq",
	RecvQueue:    "recv_queue",
	Runqueue:     "runqueue",
	CFSThrottle:  "cfs_throttle",
	App:          "app",
	GCSTW:        "gc_stw",
	Serialize:    "serialize",
	SendQueue:    "send_queue",
	AckWait:      "ack_wait",
	Connect:      "connect",
	TLSHandshake: "tls_handshake",
	Send:         "send",
	Wait:         "wait",
	Receive:      "receive",
}

func (p Phase) String() string {
	if p < NumPhases {
		return phaseNames[p]
	}
	return "unknown"
}

// Parent is the phase a nested phase falls in (runqueue and cfs_throttle
// happen while the app handles the request, as do GC pauses and
// serialization). Top-level phases return themselves; exporters must not
// add a nested phase to its parent's total.
func (p Phase) Parent() Phase {
	switch p {
	case Runqueue, CFSThrottle, GCSTW, Serialize:
		return App
	}
	return p
}

// Nested reports whether p is contained in another phase.
func (p Phase) Nested() bool { return p.Parent() != p }

// PhaseByName finds a phase by its name.
func PhaseByName(name string) (Phase, bool) {
	for i, n := range phaseNames {
		if n == name {
			return Phase(i), true
		}
	}
	return 0, false
}

// Phases holds the measured phases of one request. A phase that could not
// be measured is absent; 0 means measured and nothing waited.
type Phases struct {
	ns      [NumPhases]int64
	present uint16
}

// Set records a measured phase; negative values (clock skew between
// CPUs) are clamped to 0.
func (ps *Phases) Set(p Phase, ns int64) {
	if ns < 0 {
		ns = 0
	}
	ps.ns[p] = ns
	ps.present |= 1 << p
}

// Get returns a phase's duration and whether it was measured.
func (ps Phases) Get(p Phase) (int64, bool) {
	return ps.ns[p], ps.present&(1<<p) != 0
}

// Has reports whether a phase was measured.
func (ps Phases) Has(p Phase) bool { return ps.present&(1<<p) != 0 }

// Delete marks a phase as not measured.
func (ps *Phases) Delete(p Phase) { ps.present &^= 1 << p; ps.ns[p] = 0 }

// Each calls fn for every measured phase in canonical order.
func (ps Phases) Each(fn func(Phase, int64)) {
	// The measured ones only: a served request has none of an outbound
	// call's phases, nor a call a request's.
	for m := ps.present; m != 0; m &= m - 1 {
		p := Phase(bits.TrailingZeros16(m))
		fn(p, ps.ns[p])
	}
}

// PhaseSet is a set of phases, phase p as bit 1<<p.
type PhaseSet uint16

// Measured is the set of measured phases: Each without its callback,
// for the per-request writers (the JSON line), as
//
//	for m := ps.Measured(); m != 0; m = m.Rest() {
//		p := m.First()
//		... ps.NS(p) ...
//	}
func (ps *Phases) Measured() PhaseSet { return PhaseSet(ps.present) }

// First is the set's first phase in canonical order (the set not empty).
func (s PhaseSet) First() Phase { return Phase(bits.TrailingZeros16(uint16(s))) }

// Rest is the set without its first phase.
func (s PhaseSet) Rest() PhaseSet { return s & (s - 1) }

// NS is a phase's duration, 0 when it was not measured.
func (ps *Phases) NS(p Phase) int64 { return ps.ns[p%NumPhases] }

// EndReason says why a request ended. The names are used verbatim as
// the JSON end_reason and the OTLP attribute tracerd.end_reason.
type EndReason uint8

const (
	EndNextRequest = EndReason(loader.TracerdEndReasonEND_NEXT_REQUEST)
	EndClose       = EndReason(loader.TracerdEndReasonEND_CLOSE)
	EndIdle        = EndReason(loader.TracerdEndReasonEND_IDLE)
	EndFlush       = EndReason(loader.TracerdEndReasonEND_FLUSH)
	EndStream      = EndReason(loader.TracerdEndReasonEND_STREAM)
)

var endReasonNames = [...]string{
	EndNextRequest: "next_request",
	EndClose:       "close",
	EndIdle:        "idle",
	EndFlush:       "flush",
	EndStream:      "stream",
}

// String is the reason's name, "" for a value no reason has.
func (e EndReason) String() string {
	if int(e) < len(endReasonNames) {
		return endReasonNames[e]
	}
	return ""
}
