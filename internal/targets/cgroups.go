package targets

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"
)

// Cgroups is a cgroup selection as the kernel names it.
type Cgroups struct {
	IDs      []uint64 // kernfs ids (the directories' inode numbers)
	V1Subsys int32    // the cgroup v1 controller's id (enum cgroup_subsys_id); -1 for cgroup v2
}

const (
	cgroup2Magic = 0x63677270
	cgroup1Magic = 0x27e0eb
)

// ResolveCgroups turns cgroup directories into kernfs ids and, for
// cgroup v1, the controller whose hierarchy they are in. All must be in
// one hierarchy: the BPF filter follows one.
func ResolveCgroups(paths []string) (Cgroups, error) {
	sel := Cgroups{V1Subsys: -1}
	hierarchy := ""
	for _, p := range paths {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			return sel, fmt.Errorf("--cgroup %s: %w (give a directory under /sys/fs/cgroup)", p, err)
		}
		var fs unix.Statfs_t
		if err := unix.Statfs(p, &fs); err != nil {
			return sel, fmt.Errorf("--cgroup %s: %w", p, err)
		}
		var h string
		var ss int32 = -1
		switch fs.Type {
		case cgroup2Magic:
			h = "v2"
		case cgroup1Magic:
			var err error
			if ss, err = v1Subsystem(p); err != nil {
				return sel, fmt.Errorf("--cgroup %s: %w", p, err)
			}
			h = fmt.Sprintf("v1:%d", ss)
		default:
			return sel, fmt.Errorf("--cgroup %s: not a cgroup directory (it is not on a cgroup or cgroup2 file system)", p)
		}
		if hierarchy != "" && hierarchy != h {
			return sel, fmt.Errorf("--cgroup %s: all --cgroup paths must be in one hierarchy (one cgroup v1 controller, or cgroup v2)", p)
		}
		hierarchy, sel.V1Subsys = h, ss
		sel.IDs = append(sel.IDs, st.Ino)
	}
	return sel, nil
}

// v1Subsystem finds the controller mounted at the hierarchy holding dir
// and its id in the running kernel.
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
	ids, err := subsysIDs()
	if err != nil {
		return 0, err
	}
	for _, opt := range strings.Split(opts, ",") {
		if id, ok := ids[opt+"_cgrp_id"]; ok {
			return id, nil
		}
	}
	return 0, fmt.Errorf("hierarchy %s (%s) has no controller tracerd can follow; use a controller's hierarchy such as /sys/fs/cgroup/cpu/..., or cgroup v2", best, opts)
}

// subsysIDs is the running kernel's enum cgroup_subsys_id, from its BTF:
// read once (cgroup v1 selections only), kept as a small map rather
// than the whole parsed BTF.
var subsysIDs = sync.OnceValues(func() (map[string]int32, error) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, fmt.Errorf("kernel BTF unavailable (%w): tracerd needs CONFIG_DEBUG_INFO_BTF=y, i.e. /sys/kernel/btf/vmlinux", err)
	}
	var enum *btf.Enum
	if err := spec.TypeByName("cgroup_subsys_id", &enum); err != nil {
		return nil, fmt.Errorf("kernel BTF lacks enum cgroup_subsys_id: %w", err)
	}
	ids := map[string]int32{}
	for _, v := range enum.Values {
		ids[v.Name] = int32(v.Value)
	}
	return ids, nil
})
