package goprobe

import (
	"runtime/debug"
	"sync"
)

// inspectGCPercent is the collector's target while a binary is inspected:
// a Go binary's DWARF, decompressed and parsed, is tens of MiB of
// short-lived garbage, which at the default 100 % doubles the heap before
// a collection. tracerd run's peak RSS (VmHWM) with the benchmark's Go
// server to inspect measured 70–73 MiB at 100 %, 60–63.5 MiB at 25 % and
// 59.7–61.2 MiB at 10 % (3 starts each; the budget is 64 MiB; the rest is
// the kernel BTF parsed at load, the 16 MiB ring buffer and tracerd's
// own text), the inspection itself still taking ≈ 10 ms.
const inspectGCPercent = 10

var tightGC struct {
	sync.Mutex
	depth int
	prev  int
}

// withTightGC runs f with the collector at inspectGCPercent; inspections
// may overlap, the last one out restores the former setting.
func withTightGC(f func() error) error {
	tightGC.Lock()
	if tightGC.depth == 0 {
		tightGC.prev = debug.SetGCPercent(inspectGCPercent)
	}
	tightGC.depth++
	tightGC.Unlock()
	defer func() {
		tightGC.Lock()
		tightGC.depth--
		if tightGC.depth == 0 {
			debug.SetGCPercent(tightGC.prev)
		}
		tightGC.Unlock()
	}()
	return f()
}
