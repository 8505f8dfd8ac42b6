// Package portpressure measures, per destination (address:port), how
// many of a network namespace's local (ephemeral) ports its connections
// hold — established, in TIME_WAIT — against the namespace's
// ip_local_port_range, and counts the traced processes' connect()
// calls that failed with EADDRNOTAVAIL for want of one (counted in
// BPF, bpf/connect_fail.h). docs/ports.md describes it.
package portpressure

import (
	"net/netip"
	"time"
)

// Report is the last sample: per network namespace of the traced
// processes. Immutable once published.
type Report struct {
	At         time.Time   `json:"at"`
	Namespaces []Namespace `json:"namespaces"`
	// FailuresUncounted are EADDRNOTAVAIL failures not counted per
	// destination: the kernel's map of destinations was full.
	FailuresUncounted uint64 `json:"failures_uncounted,omitempty"`
	// NamespacesOmitted are namespaces past maxNamespaces.
	NamespacesOmitted int `json:"namespaces_omitted,omitempty"`
}

// Namespace is one network namespace's port pressure.
type Namespace struct {
	NetNS     uint64    `json:"netns"`     // inode of /proc/PID/ns/net
	Processes []Process `json:"processes"` // traced processes in it (at most maxProcesses)
	// PortLow..PortHigh is net.ipv4.ip_local_port_range; RangeSize 0:
	// unknown (Error says why).
	PortLow   int `json:"port_low,omitempty"`
	PortHigh  int `json:"port_high,omitempty"`
	RangeSize int `json:"port_range_size"`
	// TWReuse is net.ipv4.tcp_tw_reuse (1: TIME_WAIT ports are reused
	// for new outgoing connections when safe, 2: on loopback only);
	// -1 unknown.
	TWReuse int `json:"tcp_tw_reuse"`
	// Sockets of the namespace: all in TIME_WAIT (as `ss -tan state
	// time-wait` counts), and those holding a local port of the range
	// (listeners and connections accepted on a listener's port aside).
	TimeWait       int `json:"time_wait"`
	EphemeralInUse int `json:"ephemeral_ports_in_use"`
	// Destinations, most ports in use first (then most failures), at
	// most maxDestinations; DestinationsOmitted were left out.
	Destinations        []Destination `json:"destinations"`
	DestinationsOmitted int           `json:"destinations_omitted,omitempty"`
	Error               string        `json:"error,omitempty"` // what could not be read
}

// Process is a traced process.
type Process struct {
	PID  uint32 `json:"pid"`
	Comm string `json:"comm"`
}

// Destination is one remote address:port and the namespace's
// connections to it from a local port of the range.
type Destination struct {
	Address     netip.AddrPort `json:"address"`
	InUse       int            `json:"ephemeral_ports_in_use"` // any state, TIME_WAIT included
	TimeWait    int            `json:"time_wait"`
	Established int            `json:"established"`
	// Available is RangeSize less InUse: a local port is unique per
	// destination, not per namespace (the kernel reuses one for another
	// address:port), so each destination has the whole range.
	Available int `json:"ports_available"`
	// Failures are connect() calls to it that failed with EADDRNOTAVAIL
	// since tracerd started, per traced process.
	Failures []Failure `json:"connect_eaddrnotavail,omitempty"`
	// Finding is ephemeral_port_exhaustion while it holds (nil else).
	Finding *Finding `json:"finding,omitempty"`
}

// FindingCode is the finding port pressure names.
const FindingCode = "ephemeral_port_exhaustion"

// FindingWindow: a destination is named while connects to it failed
// with EADDRNOTAVAIL within this long (as tracerd status' findings).
const FindingWindow = 5 * time.Minute

// Finding says that the namespace ran out of local ports for a
// destination: the kernel refused connect() calls for want of one.
type Finding struct {
	Code string `json:"code"` // FindingCode
	// LastFailure is when the count last grew (to the sample's second).
	LastFailure time.Time `json:"last_failure"`
	// Failures counted within FindingWindow, or since tracerd started
	// when that is shorter.
	RecentFailures uint64 `json:"recent_failures"`
	Confirm        string `json:"confirm"`
	Remedy         string `json:"remedy"`
}

// Failure counts one process's EADDRNOTAVAIL connects to a destination.
type Failure struct {
	PID   uint32 `json:"pid"`
	Comm  string `json:"comm"`
	Count uint64 `json:"count"`
}

// FailureCount sums the destination's failures over its processes.
func (d *Destination) FailureCount() uint64 {
	var n uint64
	for _, f := range d.Failures {
		n += f.Count
	}
	return n
}
