package main

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/tracerd/tracerd/internal/loader"
)

// runningTargets lists running processes selected by --pid or --comm, so
// that Go probes are on before their next request. Port and cgroup
// selections are adopted at their first accepted connection.
func runningTargets(t loader.Targets) []uint32 {
	if len(t.PIDs) > 0 {
		return t.PIDs
	}
	if len(t.Comms) == 0 {
		return nil
	}
	want := map[string]bool{}
	for _, c := range t.Comms {
		want[c[:min(len(c), 15)]] = true
	}
	entries, _ := os.ReadDir("/proc")
	var out []uint32
	for _, e := range entries {
		pid, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil {
			continue
		}
		comm, err := os.ReadFile("/proc/" + e.Name() + "/comm")
		if err == nil && want[strings.TrimSpace(string(comm))] {
			out = append(out, uint32(pid))
		}
	}
	return out
}

// stillSelected says whether a running process may still be selected by
// t, as far as user space can tell: pid and comm are checked (every kind
// given must match, as in BPF); ports and cgroups are not (a process's
// port selection shows only at its next accept), so they keep it.
func stillSelected(t loader.Targets, pid uint32) bool {
	if len(t.PIDs) > 0 && !slices.Contains(t.PIDs, pid) {
		return false
	}
	if len(t.Comms) > 0 {
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil {
			return false // gone
		}
		name := strings.TrimSpace(string(comm))
		if !slices.ContainsFunc(t.Comms, func(c string) bool { return c[:min(len(c), 15)] == name }) {
			return false
		}
	}
	return true
}
