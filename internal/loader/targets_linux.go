package loader

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"
)

// Targets selects what is traced. Kinds combine with AND, values of one
// kind with OR; empty means every accepted TCP connection on the host.
type Targets struct {
	PIDs    []uint32 `yaml:"pids" json:"pids,omitempty"`
	Ports   []uint16 `yaml:"ports" json:"ports,omitempty"`     // local port of the listening socket
	Comms   []string `yaml:"comms" json:"comms,omitempty"`     // process names (first 15 bytes, as the kernel keeps them)
	Cgroups []string `yaml:"cgroups" json:"cgroups,omitempty"` // cgroup v1 or v2 directories; descendants are included
}

// Empty reports whether no selection was made.
func (t Targets) Empty() bool {
	return len(t.PIDs) == 0 && len(t.Ports) == 0 && len(t.Comms) == 0 && len(t.Cgroups) == 0
}

// Validate checks targets before anything is loaded, so that a typo is a
// clear error rather than a tracer that sees nothing.
func (t Targets) Validate() error {
	for _, pid := range t.PIDs {
		if pid == 0 {
			return errors.New("--pid 0 is not a process")
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
			return fmt.Errorf("--pid %d: no such process (check `ps -p %d`)", pid, pid)
		}
	}
	for _, p := range t.Ports {
		if p == 0 {
			return errors.New("--port 0 is not a port")
		}
	}
	for _, c := range t.Comms {
		if c == "" {
			return errors.New("--comm needs a process name")
		}
	}
	_, err := resolveCgroups(t.Cgroups)
	return err
}

type cgroupSelection struct {
	ids      []uint64
	v1Subsys int32 // -1 for cgroup v2
}

const (
	cgroup2Magic = 0x63677270
	cgroup1Magic = 0x27e0eb
)

// resolveCgroups turns cgroup directories into kernfs ids (the inode
// number) and, for cgroup v1, the subsystem whose hierarchy they are in.
func resolveCgroups(paths []string) (cgroupSelection, error) {
	sel := cgroupSelection{v1Subsys: -1}
	kind := ""
	for _, p := range paths {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			return sel, fmt.Errorf("--cgroup %s: %w (give a directory under /sys/fs/cgroup)", p, err)
		}
		var fs unix.Statfs_t
		if err := unix.Statfs(p, &fs); err != nil {
			return sel, fmt.Errorf("--cgroup %s: %w", p, err)
		}
		var k string
		var ss int32 = -1
		switch fs.Type {
		case cgroup2Magic:
			k = "v2"
		case cgroup1Magic:
			var err error
			if ss, err = v1Subsystem(p); err != nil {
				return sel, fmt.Errorf("--cgroup %s: %w", p, err)
			}
			k = fmt.Sprintf("v1:%d", ss)
		default:
			return sel, fmt.Errorf("--cgroup %s: not a cgroup directory (it is not on a cgroup or cgroup2 file system)", p)
		}
		if kind != "" && kind != k {
			return sel, fmt.Errorf("--cgroup %s: all --cgroup paths must be in one hierarchy (one cgroup v1 controller, or cgroup v2)", p)
		}
		kind, sel.v1Subsys = k, ss
		sel.ids = append(sel.ids, st.Ino)
	}
	return sel, nil
}

// v1Subsystem finds the controller mounted at the hierarchy holding dir
// and its id in the running kernel (enum cgroup_subsys_id).
func v1Subsystem(dir string) (int32, error) {
	abs, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return 0, err
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	best, opts := "", ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent maj:min root mountpoint opts ... - fstype source superopts
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+3 >= len(fields) || fields[sep+1] != "cgroup" {
			continue
		}
		mp := fields[4]
		if (abs == mp || strings.HasPrefix(abs, mp+"/")) && len(mp) > len(best) {
			best, opts = mp, fields[sep+3]
		}
	}
	if best == "" {
		return 0, errors.New("no cgroup v1 mount holds it")
	}
	spec, err := KernelBTF()
	if err != nil {
		return 0, err
	}
	var ids *btf.Enum
	if err := spec.TypeByName("cgroup_subsys_id", &ids); err != nil {
		return 0, fmt.Errorf("kernel BTF lacks enum cgroup_subsys_id: %w", err)
	}
	for _, opt := range strings.Split(opts, ",") {
		for _, v := range ids.Values {
			if v.Name == opt+"_cgrp_id" {
				return int32(v.Value), nil
			}
		}
	}
	return 0, fmt.Errorf("hierarchy %s (%s) has no controller tracerd can follow; use a controller's hierarchy such as /sys/fs/cgroup/cpu/..., or cgroup v2", best, opts)
}
