package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

const (
	capDacOverride   = 1
	capDacReadSearch = 2
	capSysPtrace     = 19
	capSysAdmin      = 21
	capPerfmon       = 38
	capBPF           = 39
)

// effectiveCaps reads CapEff of this process.
func effectiveCaps() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, errors.New("no CapEff in /proc/self/status")
}

// missingCaps lists the capabilities tracing needs that caps lacks, each
// with what it is for. The set was measured on Linux 6.18 (README,
// "Running as a service"):
//   - CAP_BPF: load programs and maps; CAP_PERFMON: attach to tracepoints
//     and read kernel memory from BPF (CAP_SYS_ADMIN covers both);
//   - CAP_DAC_READ_SEARCH, when not uid 0: tracefs (/sys/kernel/tracing,
//     mode 0700 root) holds the tracepoint ids;
//   - with Go awareness: CAP_SYS_ADMIN, which this kernel's uprobe perf
//     events require (CAP_PERFMON is refused), and CAP_SYS_PTRACE to
//     open /proc/PID/exe of other users' processes.
func missingCaps(caps uint64, euid int, goAware bool) []string {
	has := func(c uint) bool { return caps&(1<<c) != 0 }
	var missing []string
	if !has(capBPF) && !has(capSysAdmin) {
		missing = append(missing, "CAP_BPF (load BPF programs and maps)")
	}
	if !has(capPerfmon) && !has(capSysAdmin) {
		missing = append(missing, "CAP_PERFMON (attach to tracepoints, read kernel memory from BPF)")
	}
	if euid != 0 && !has(capDacReadSearch) && !has(capDacOverride) {
		missing = append(missing, "CAP_DAC_READ_SEARCH (read tracepoint ids in tracefs, /sys/kernel/tracing is root's, mode 0700)")
	}
	if goAware {
		if !has(capSysAdmin) {
			missing = append(missing, "CAP_SYS_ADMIN (uprobes on Go processes: the kernel refuses uprobe perf events without it; --go=false or engine.go: false does without)")
		}
		if !has(capSysPtrace) {
			missing = append(missing, "CAP_SYS_PTRACE (open /proc/PID/exe of traced processes of other users, for Go probes; --go=false or engine.go: false does without)")
		}
	}
	return missing
}

// checkPrivileges fails early, naming each missing capability, when
// tracing cannot work as asked.
func checkPrivileges(goAware bool) error {
	caps, err := effectiveCaps()
	if err != nil {
		return nil // cannot tell: let the load say what is wrong
	}
	missing := missingCaps(caps, os.Geteuid(), goAware)
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("not enough privileges to load BPF programs: run as root (sudo tracerd ...), or grant the missing capabilities (deploy/tracerd.service lists the set): missing %s", strings.Join(missing, ", "))
}
