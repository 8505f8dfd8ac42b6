package findings

import (
	"net/netip"
	"testing"
	"time"

	"github.com/tracerd/tracerd/internal/correlate"
)

func call(start, connect int64, peer string) *correlate.Request {
	r := &correlate.Request{Direction: correlate.DirClient, PID: 5, Answered: true, EndReason: correlate.EndClose,
		StartUnixNano: start, EndUnixNano: start + 10*int64(time.Millisecond), DurationNs: 10 * int64(time.Millisecond),
		Conn: correlate.Conn{Peer: netip.MustParseAddrPort(peer)}}
	if connect > 0 {
		r.Phases.Set(correlate.Connect, connect)
	}
	return r
}

func TestNewConnectionPerRequest(t *testing.T) {
	a := New(Config{MinLost: time.Millisecond, MinSharePct: 20}, nil)
	ms := int64(time.Millisecond)
	if f := a.Analyze(call(0, 3*ms, "10.0.0.2:80")); f != nil {
		t.Errorf("the first call to a peer: %v", f)
	}
	f := a.Analyze(call(20*ms, 3*ms, "10.0.0.2:80"))
	if len(f) != 1 || f[0].Code != correlate.NewConnectionPerRequest || f[0].LostNs != 3*ms || f[0].Phase != correlate.Connect {
		t.Fatalf("a new connection after a call that ended: %+v", f)
	}
	if e, _ := f[0].Lookup("since_previous_call_ns"); e.Int != 10*ms {
		t.Errorf("since_previous_call_ns %d", e.Int)
	}
	// Under the thresholds, on a pooled connection, to another peer, or
	// while the earlier call was still running: nothing.
	for name, r := range map[string]*correlate.Request{
		"cheap":       call(40*ms, ms/2, "10.0.0.2:80"),
		"pooled":      call(60*ms, 0, "10.0.0.2:80"),
		"other peer":  call(80*ms, 3*ms, "10.0.0.3:80"),
		"overlapping": call(85*ms, 3*ms, "10.0.0.3:80"),
	} {
		if f := a.Analyze(r); f != nil {
			t.Errorf("%s: %v", name, f)
		}
	}
}
