package findings

import (
	"testing"

	"github.com/tracerd/tracerd/internal/correlate"
)

// The quiet gate looks at the measured phases only: one at MinLost
// passes it, any number under it do not, and a phase deleted (not
// measured) counts for nothing.
func TestAnyPhaseFrom(t *testing.T) {
	var ps correlate.Phases
	if anyPhaseFrom(&ps, 1) {
		t.Error("no phase passed the gate")
	}
	ps.Set(correlate.App, ms-1)
	ps.Set(correlate.RecvQueue, ms-1)
	if anyPhaseFrom(&ps, ms) {
		t.Error("phases under MinLost passed the gate")
	}
	ps.Set(correlate.AckWait, ms)
	if !anyPhaseFrom(&ps, ms) {
		t.Error("a phase of MinLost did not pass the gate")
	}
	ps.Delete(correlate.AckWait)
	if anyPhaseFrom(&ps, ms) {
		t.Error("a deleted phase passed the gate")
	}

	// Through Analyze: the same request, its throttling just under and
	// at MinLost.
	r := req(4*ms, map[correlate.Phase]int64{correlate.App: ms - 1, correlate.CFSThrottle: ms - 1})
	if fs := def.Analyze(r); fs != nil {
		t.Errorf("findings under MinLost: %+v", fs)
	}
	r.Phases.Set(correlate.CFSThrottle, ms)
	if fs := def.Analyze(r); len(fs) != 1 || fs[0].Code != correlate.CFSThrottled {
		t.Errorf("findings at MinLost: %+v", fs)
	}
}
