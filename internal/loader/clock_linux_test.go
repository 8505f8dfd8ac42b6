package loader

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestMonotonicNow: the clock derived from Go's agrees with
// CLOCK_MONOTONIC (the BPF programs' bpf_ktime_get_ns) read by the
// system call, and does not go back.
func TestMonotonicNow(t *testing.T) {
	prev := monotonicNow()
	for i := 0; i < 1000; i++ {
		var ts unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
			t.Fatal(err)
		}
		sys := uint64(ts.Nano())
		ours := monotonicNow()
		if ours < prev {
			t.Fatalf("went back: %d after %d", ours, prev)
		}
		prev = ours
		// ours is read after sys: at or after it, and close.
		if d := int64(ours) - int64(sys); d < -100_000 || d > 5_000_000 {
			t.Fatalf("monotonicNow %d, CLOCK_MONOTONIC %d: %d ns apart", ours, sys, d)
		}
	}
}
