package correlate

import (
	"time"

	"golang.org/x/sys/unix"
)

// Clock converts the kernel's CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns)
// to Unix wall-clock nanoseconds with one offset taken at start.
type Clock struct {
	offset int64 // wall − monotonic
}

// NewClock measures the offset, keeping the reading with the tightest
// bracket of wall-clock reads.
func NewClock() Clock {
	best, bestGap := int64(0), int64(1<<62)
	for i := 0; i < 5; i++ {
		w0 := time.Now().UnixNano()
		m := MonotonicNow()
		w1 := time.Now().UnixNano()
		if gap := w1 - w0; gap < bestGap {
			best, bestGap = (w0+w1)/2-m, gap
		}
	}
	return Clock{offset: best}
}

// MonotonicNow is CLOCK_MONOTONIC in ns, the BPF programs' clock.
func MonotonicNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// Wall converts a monotonic timestamp to Unix ns.
func (c Clock) Wall(mono uint64) int64 { return int64(mono) + c.offset }
