//go:build e2e

package loader

import (
	"testing"

	"github.com/cilium/ebpf"
)

// TestRawCounter: the raw per-CPU read sums what each CPU holds, as
// cilium/ebpf reads it; a map of another shape is refused.
func TestRawCounter(t *testing.T) {
	requireRoot(t)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	vals := make([]uint64, cpus)
	var want uint64
	for i := range vals {
		vals[i] = uint64(1000*i + 7)
		want += vals[i]
	}
	if err := m.Put(uint32(2), vals); err != nil {
		t.Fatal(err)
	}
	c, err := newRawCounter(m, 2)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if got, err := c.read(); err != nil || got != want {
			t.Fatalf("read %d, %v; want %d", got, err, want)
		}
	}
	if other, err := newRawCounter(m, 3); err != nil {
		t.Fatal(err)
	} else if got, err := other.read(); err != nil || got != 0 {
		t.Errorf("an untouched key: %d, %v", got, err)
	}
	if bad, err := newRawCounter(m, 9); err != nil {
		t.Fatal(err)
	} else if _, err := bad.read(); err == nil {
		t.Error("a key past the array read without error")
	}
	h, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if _, err := newRawCounter(h, 0); err == nil {
		t.Error("a hash map taken as a per-CPU counter")
	}
}
