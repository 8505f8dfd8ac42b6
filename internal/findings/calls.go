package findings

import (
	"net/netip"

	"github.com/tracerd/tracerd/internal/correlate"
)

// lastCalls remembers when each process's latest call to each peer
// ended: a call that then opens a new connection to that peer could
// have reused the earlier one's.
type lastCalls map[callKey]int64

type callKey struct {
	pid  uint32
	peer netip.AddrPort
}

// maxCallPeers bounds lastCalls (a cache: forgetting only misses a
// finding).
const maxCallPeers = 4096

// analyzeCall names what cost an outbound call (client record) time:
// new_connection_per_request, a connection set up (connect) where an
// earlier call of the process to the same peer had ended before it
// began, so a kept connection would have served it.
func (a *Analyzer) analyzeCall(r *correlate.Request) []correlate.Finding {
	if a.calls == nil {
		a.calls = lastCalls{}
	}
	key := callKey{r.PID, r.Conn.Peer}
	prevEnd, seen := a.calls[key]
	if len(a.calls) >= maxCallPeers && !seen {
		clear(a.calls)
	}
	if r.EndUnixNano > prevEnd {
		a.calls[key] = r.EndUnixNano
	}
	connect, ok := r.Phases.Get(correlate.Connect)
	if !ok || !seen || prevEnd > r.StartUnixNano {
		return nil
	}
	lost := connect
	if lost <= 0 || lost < a.minLost || lost*100 < a.minShare*r.DurationNs {
		return nil
	}
	ev := []correlate.Evidence{
		correlate.IntEvidence("connect_ns", connect),
		correlate.IntEvidence("syn_retransmits", int64(r.TCP.SynRetransmits)),
		correlate.IntEvidence("since_previous_call_ns", r.StartUnixNano-prevEnd),
	}
	return []correlate.Finding{{Code: correlate.NewConnectionPerRequest, Phase: correlate.Connect, LostNs: lost, Evidence: ev}}
}
