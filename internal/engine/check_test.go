package engine

import (
	"testing"

	"github.com/tracerd/tracerd/internal/correlate"
	"github.com/tracerd/tracerd/internal/loader"
)

// TestPhasesAvailable: a phase is lost when any hook feeding it is
// missing, and the report names those hooks.
func TestPhasesAvailable(t *testing.T) {
	p1, p2 := correlate.Phase(0).String(), correlate.Phase(1).String()
	hooks := []loader.HookStatus{
		{Hook: loader.Hook{Name: "a", Phases: []string{p1}}, OK: true},
		{Hook: loader.Hook{Name: "b", Phases: []string{p1, p2}}},
		{Hook: loader.Hook{Name: "c", Phases: []string{p2}}},
	}
	got := phasesAvailable(hooks)
	if len(got) != int(correlate.NumPhases) {
		t.Fatalf("%d phases, want %d", len(got), correlate.NumPhases)
	}
	if got[0] != (CheckPhase{Name: p1, Missing: "b"}) || got[1] != (CheckPhase{Name: p2, Missing: "b, c"}) {
		t.Errorf("first two phases: %+v %+v", got[0], got[1])
	}
	for _, p := range got[2:] {
		if !p.Available || p.Missing != "" {
			t.Errorf("%+v: no missing hook feeds it", p)
		}
	}
}
