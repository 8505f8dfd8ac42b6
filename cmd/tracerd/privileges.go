package main

import (
	"bufio"
	"errors"
	"os"
	"strconv"
	"strings"
)

const (
	capSysAdmin = 21
	capPerfmon  = 38
	capBPF      = 39
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

// checkPrivileges fails early, with what to do, when BPF cannot load.
func checkPrivileges() error {
	caps, err := effectiveCaps()
	if err != nil {
		return nil // cannot tell: let the load say what is wrong
	}
	has := func(c uint) bool { return caps&(1<<c) != 0 }
	if has(capSysAdmin) || (has(capBPF) && has(capPerfmon)) {
		return nil
	}
	return errors.New("not enough privileges to load BPF programs: run as root (sudo tracerd ...), or grant CAP_BPF and CAP_PERFMON (plus CAP_SYS_RESOURCE and CAP_SYS_PTRACE)")
}
