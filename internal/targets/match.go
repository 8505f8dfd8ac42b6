package targets

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Matcher selects requests in user space the way the BPF filter does at
// accept(): kinds ANDed, values ORed; cgroups include their descendants.
type Matcher struct {
	t       Targets
	cgroups map[uint64]bool // ids of the cgroups and their descendants
}

// Matcher resolves the selection for Match: the cgroup directories and
// those below them, as they are now.
func (t Targets) Matcher() (*Matcher, error) {
	m := &Matcher{t: t, cgroups: map[uint64]bool{}}
	for _, dir := range t.Cgroups {
		err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
			if err != nil || !e.IsDir() {
				return nil
			}
			var st unix.Stat_t
			if unix.Stat(p, &st) == nil {
				m.cgroups[st.Ino] = true
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("--cgroup %s: %w", dir, err)
		}
	}
	return m, nil
}

// Match says whether a connection of process pid (named comm, in cgroup
// cgroupID), accepted on localPort, is selected.
func (m *Matcher) Match(pid uint32, localPort uint16, comm string, cgroupID uint64) bool {
	t := m.t
	if len(t.PIDs) > 0 && !slices.Contains(t.PIDs, pid) {
		return false
	}
	if len(t.Ports) > 0 && !slices.Contains(t.Ports, localPort) {
		return false
	}
	if len(t.Comms) > 0 && !t.hasComm(comm) {
		return false
	}
	if len(t.Cgroups) > 0 && !m.cgroups[cgroupID] {
		return false
	}
	return true
}

// hasComm says whether comm, a name as the kernel keeps it, is selected.
func (t Targets) hasComm(comm string) bool {
	return slices.ContainsFunc(t.Comms, func(c string) bool { return Comm(c) == comm })
}

// Running lists the running processes the selection takes, so that Go
// probes are on before their first traced request. Pid and name
// selections give them directly. Ports, cgroups and no selection at all
// show only at a connection's accept(), so there a process is taken
// when it listens on TCP — on a selected port, when ports are given —
// and is in a selected cgroup (every kind given must match, as in BPF).
// A listener opened later is seen at its first accept, as before.
func (t Targets) Running() []uint32 {
	var pids []string
	if len(t.PIDs) > 0 {
		for _, p := range t.PIDs {
			pids = append(pids, strconv.FormatUint(uint64(p), 10))
		}
	} else {
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			if _, err := strconv.ParseUint(e.Name(), 10, 32); err == nil {
				pids = append(pids, e.Name())
			}
		}
	}
	if len(t.Comms) > 0 {
		pids = slices.DeleteFunc(pids, func(p string) bool {
			comm, ok := procCommOf(p)
			return !ok || !t.hasComm(comm)
		})
	}
	if len(t.Cgroups) > 0 {
		in := cgroupPIDs(t.Cgroups)
		pids = slices.DeleteFunc(pids, func(p string) bool { return !in[p] })
	}
	if len(t.Ports) > 0 || (len(t.PIDs) == 0 && len(t.Comms) == 0) {
		pids = listeners(pids, t.Ports)
	}
	out := make([]uint32, 0, len(pids))
	for _, p := range pids {
		n, _ := strconv.ParseUint(p, 10, 32)
		out = append(out, uint32(n))
	}
	return out
}

// cgroupPIDs are the processes in dirs and the cgroups below them, as
// their cgroup.procs list them now (cgroup v1 and v2 alike).
func cgroupPIDs(dirs []string) map[string]bool {
	in := map[string]bool{}
	for _, dir := range dirs {
		filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
			if err != nil || !e.IsDir() {
				return nil
			}
			b, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
			if err != nil {
				return nil
			}
			for _, f := range strings.Fields(string(b)) {
				in[f] = true
			}
			return nil
		})
	}
	return in
}

// StillSelected says whether a running process may still be selected,
// as far as user space can tell: pid and name are checked (every kind
// given must match, as in BPF); ports and cgroups are not (a process's
// port shows only at its next accept), so they keep it. A process gone
// is not selected.
func (t Targets) StillSelected(pid uint32) bool {
	if len(t.PIDs) > 0 && !slices.Contains(t.PIDs, pid) {
		return false
	}
	if len(t.Comms) > 0 {
		comm, ok := procComm(pid)
		if !ok || !t.hasComm(comm) {
			return false
		}
	}
	return true
}

// procComm is a process's name as the kernel keeps it; false when the
// process is gone.
func procComm(pid uint32) (string, bool) {
	return procCommOf(strconv.FormatUint(uint64(pid), 10))
}

func procCommOf(pid string) (string, bool) {
	b, err := os.ReadFile("/proc/" + pid + "/comm")
	if err != nil {
		return "", false
	}
	return strings.TrimSpace(string(b)), true
}
