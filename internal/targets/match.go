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

// Running lists the running processes selected by pid or name, so that
// Go probes are on before their next request. Port and cgroup
// selections show only at a connection's accept(): nil when they are
// all there is.
func (t Targets) Running() []uint32 {
	if len(t.PIDs) > 0 {
		return slices.Clone(t.PIDs)
	}
	if len(t.Comms) == 0 {
		return nil
	}
	entries, _ := os.ReadDir("/proc")
	var out []uint32
	for _, e := range entries {
		pid, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil {
			continue
		}
		if comm, ok := procComm(uint32(pid)); ok && t.hasComm(comm) {
			out = append(out, uint32(pid))
		}
	}
	return out
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
	b, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/comm")
	if err != nil {
		return "", false
	}
	return strings.TrimSpace(string(b)), true
}
