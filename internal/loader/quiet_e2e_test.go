//go:build e2e

package loader

import (
	"testing"

	"github.com/cilium/ebpf"
)

// TestWakeOnNextRecord: a tracer just opened is quiet (no answer
// counted, no sweep left requests waiting), and asking for a wake-up at
// the next record sets every CPU's count of entries one short of
// wakeupEvery.
func TestWakeOnNextRecord(t *testing.T) {
	requireRoot(t)
	tr, err := Open(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if !tr.Quiet() {
		t.Error("a tracer just opened is not quiet")
	}
	if err := tr.WakeOnNextRecord(); err != nil {
		t.Fatal(err)
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	want := uint64(wakeupEvery(tr.coll.Maps[TracerdMapEvents].MaxEntries(), cpus)) - 1
	var got []uint64
	if err := tr.coll.Maps[TracerdMapRingWrites].Lookup(uint32(0), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != cpus {
		t.Fatalf("%d per-CPU values, want %d", len(got), cpus)
	}
	for cpu, n := range got {
		// A program writing an entry since may have counted it (or
		// woken the reader and started again from 0).
		if n != want && n != want+1 && n > 4 {
			t.Errorf("cpu %d: %d entries counted, want %d (one short of %d)", cpu, n, want, want+1)
		}
	}
}
