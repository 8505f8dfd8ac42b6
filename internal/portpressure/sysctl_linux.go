package portpressure

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// netSysctls are the sysctls of one network namespace that port
// pressure depends on.
type netSysctls struct {
	lo, hi  int // net.ipv4.ip_local_port_range
	twReuse int // net.ipv4.tcp_tw_reuse; -1 unknown
}

// readNetSysctls reads a network namespace's sysctls. /proc/sys/net
// shows the namespace of the thread that opens the file, whatever
// /proc it is under (/proc/PID/root/proc/sys shows tracerd's own), so
// a thread of tracerd enters the namespace (setns, CAP_SYS_ADMIN),
// opens and reads, and comes back. The thread is locked to its
// goroutine meanwhile; if it cannot come back, its goroutine ends
// locked and Go retires the thread.
func readNetSysctls(nsPath string) (netSysctls, error) {
	target, err := os.Open(nsPath)
	if err != nil {
		return netSysctls{}, err
	}
	defer target.Close()
	type result struct {
		s   netSysctls
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		own, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer own.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("entering the network namespace: %w", err)}
			return
		}
		s, err := readOwnNetSysctls()
		if unix.Setns(int(own.Fd()), unix.CLONE_NEWNET) != nil {
			ch <- result{s, err} // stays locked: the thread is retired
			return
		}
		runtime.UnlockOSThread()
		ch <- result{s, err}
	}()
	r := <-ch
	return r.s, r.err
}

// readOwnNetSysctls reads the sysctls of the calling thread's network
// namespace.
func readOwnNetSysctls() (netSysctls, error) {
	s := netSysctls{twReuse: -1}
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return s, err
	}
	if s.lo, s.hi, err = parsePortRange(b); err != nil {
		return s, err
	}
	if b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_tw_reuse"); err == nil {
		if v, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			s.twReuse = v
		}
	}
	return s, nil
}

// parsePortRange reads ip_local_port_range ("32768\t60999").
func parsePortRange(b []byte) (lo, hi int, err error) {
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("ip_local_port_range %q: want two ports", strings.TrimSpace(string(b)))
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err := errors.Join(err1, err2); err != nil || lo < 1 || hi > 65535 || lo > hi {
		return 0, 0, fmt.Errorf("ip_local_port_range %q: not a port range", strings.TrimSpace(string(b)))
	}
	return lo, hi, nil
}
