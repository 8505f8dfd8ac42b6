package sdnotify

import "golang.org/x/sys/unix"

// MonotonicUsec is CLOCK_MONOTONIC in microseconds, as systemd wants it.
func MonotonicUsec() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano() / 1000
}
