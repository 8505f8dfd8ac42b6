package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tracerd/tracerd/internal/portpressure"
)

// Port pressure (docs/ports.md): series per network namespace of the
// traced processes and per destination, bounded by the report's caps
// (64 namespaces, 20 destinations each).
var (
	descRangeSize     = desc("tracerd_ephemeral_port_range_size", "Local ports of the namespace's net.ipv4.ip_local_port_range: the ports each destination (address:port) may use.", "netns")
	descEphemeral     = desc("tracerd_ephemeral_ports_in_use", "Local ports of the range held by connections to a destination, TIME_WAIT included (top destinations of the namespace).", "netns", "destination")
	descTimeWait      = desc("tracerd_time_wait_connections", "Connections to a destination in TIME_WAIT, from a local port of the range.", "netns", "destination")
	descNSTimeWait    = desc("tracerd_namespace_time_wait_connections", "All TCP sockets of the namespace in TIME_WAIT (as `ss -tan state time-wait` counts).", "netns")
	descEAddrNotAvail = desc("tracerd_connect_eaddrnotavail_total", "connect() calls of traced processes that failed with EADDRNOTAVAIL (no local port left for the destination), by process name.", "comm", "netns", "destination")
	descUncounted     = desc("tracerd_connect_eaddrnotavail_uncounted_total", "EADDRNOTAVAIL failures not counted per destination (the kernel's map of destinations was full).")
)

type failKey struct{ comm, netns, dest string }

func collectPorts(r *portpressure.Report, counter, gauge func(*prometheus.Desc, float64, ...string)) {
	if r == nil || r.At.IsZero() {
		return
	}
	counter(descUncounted, float64(r.FailuresUncounted))
	for _, n := range r.Namespaces {
		ns := strconv.FormatUint(n.NetNS, 10)
		if n.RangeSize > 0 {
			gauge(descRangeSize, float64(n.RangeSize), ns)
		}
		gauge(descNSTimeWait, float64(n.TimeWait), ns)
		// Processes of one name add up: a series per name.
		fails := map[failKey]uint64{}
		for _, d := range n.Destinations {
			dest := destLabel(d)
			gauge(descEphemeral, float64(d.InUse), ns, dest)
			gauge(descTimeWait, float64(d.TimeWait), ns, dest)
			for _, f := range d.Failures {
				fails[failKey{f.Comm, ns, dest}] += f.Count
			}
		}
		for k, v := range fails {
			counter(descEAddrNotAvail, float64(v), k.comm, k.netns, k.dest)
		}
	}
}

// destLabel is a destination as address:port; "other" for failures
// past the kernel map's capacity.
func destLabel(d portpressure.Destination) string {
	if !d.Address.IsValid() {
		return "other"
	}
	return d.Address.String()
}
