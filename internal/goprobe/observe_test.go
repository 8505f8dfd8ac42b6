package goprobe

import (
	"testing"

	"github.com/tracerd/tracerd/internal/loader"
)

// Observe is called for every Go event: after a process's first event
// of a second, it allocates nothing, and the counts of a process quiet
// for a whole second are dropped at the next Enforce.
func TestObserveCounts(t *testing.T) {
	m, _, _ := newTestManager(t)
	m.SetMaxCallsPerSecond(1000)
	a := loader.GoEvent{Pid: 7, Func: uint32(loader.TracerdGoFuncGO_WRITE_HEADER)}
	b := loader.GoEvent{Pid: 8, Func: uint32(loader.TracerdGoFuncGO_JSON_MARSHAL)}
	m.Observe(&a)
	m.Observe(&b)
	if allocs := testing.AllocsPerRun(100, func() { m.Observe(&a); m.Observe(&b) }); allocs != 0 {
		t.Errorf("Observe allocates %.1f times per event pair", allocs)
	}
	if n := m.calls[7][loader.TracerdGoFuncGO_WRITE_HEADER]; n != 102 {
		t.Errorf("pid 7 counted %d calls, want 102", n)
	}
	if n := m.calls[8][loader.TracerdGoFuncGO_JSON_MARSHAL]; n != 102 {
		t.Errorf("pid 8 counted %d calls, want 102", n)
	}
	// A kernel's function number past the table is not counted.
	m.Observe(&loader.GoEvent{Pid: 7, Func: uint32(loader.TracerdGoFuncGO_FUNC_MAX)})

	m.Enforce() // a new second: the counts start again
	if len(m.calls) != 2 || *m.calls[7] != (callCounts{}) {
		t.Errorf("after a second: %v", m.calls)
	}
	m.Observe(&a)
	m.Enforce() // pid 8 had no event in that second
	if _, ok := m.calls[8]; ok || len(m.calls) != 1 {
		t.Errorf("a quiet process's counts kept: %v", m.calls)
	}
	m.Enforce()
	if len(m.calls) != 0 || m.last != nil {
		t.Errorf("counts kept with no event: %v (last %p)", m.calls, m.last)
	}
	m.Observe(&a) // the cached process is looked up again
	if n := m.calls[7][loader.TracerdGoFuncGO_WRITE_HEADER]; n != 1 {
		t.Errorf("pid 7 counted %d calls after its counts went, want 1", n)
	}

	// Without a bound nothing is counted.
	m.SetMaxCallsPerSecond(0)
	m.Enforce()
	m.Observe(&a)
	if len(m.calls) != 0 {
		t.Errorf("counted with no bound: %v", m.calls)
	}
}

// BenchmarkObserve: what a Go event costs the rate bound, with two
// processes' events interleaved in runs.
func BenchmarkObserve(b *testing.B) {
	m := New(nil, nil)
	evs := []loader.GoEvent{
		{Pid: 7, Func: uint32(loader.TracerdGoFuncGO_JSON_MARSHAL)},
		{Pid: 7, Func: uint32(loader.TracerdGoFuncGO_WRITE_HEADER)},
		{Pid: 7, Func: uint32(loader.TracerdGoFuncGO_SERVE_HTTP)},
		{Pid: 8, Func: uint32(loader.TracerdGoFuncGO_SERVE_HTTP)},
	}
	m.procs[7] = &proc{}
	m.procs[8] = &proc{}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		m.Observe(&evs[i%len(evs)])
	}
}
