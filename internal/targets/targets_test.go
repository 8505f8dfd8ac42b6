package targets

import (
	"math"
	"net"
	"os"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestComm(t *testing.T) {
	for in, want := range map[string]string{
		"":                      "",
		"nginx":                 "nginx",
		"averyveryverylo":       "averyveryverylo",
		"averyveryverylongname": "averyveryverylo",
	} {
		if got := Comm(in); got != want {
			t.Errorf("Comm(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestString(t *testing.T) {
	for _, tc := range []struct {
		t    Targets
		want string
	}{
		{Targets{}, "every accepted TCP connection on this host"},
		{Targets{Ports: []uint16{80, 443}}, "port [80 443]"},
		{Targets{PIDs: []uint32{7}, Ports: []uint16{80}, Comms: []string{"nginx", "caddy"}, Cgroups: []string{"/sys/fs/cgroup/a"}},
			"pid [7] and port [80] and comm [nginx caddy] and cgroup [/sys/fs/cgroup/a]"},
	} {
		if got := tc.t.String(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.t, got, tc.want)
		}
	}
}

// TestCovers: one selection covers another only when every kind it
// restricts is restricted to values it takes.
func TestCovers(t *testing.T) {
	for _, tc := range []struct {
		have, want Targets
		covered    bool
	}{
		{Targets{}, Targets{Ports: []uint16{80}}, true},
		{Targets{}, Targets{}, true},
		{Targets{Ports: []uint16{80, 443}}, Targets{Ports: []uint16{80}}, true},
		{Targets{Ports: []uint16{80}}, Targets{Ports: []uint16{80}, Comms: []string{"nginx"}}, true},
		{Targets{Ports: []uint16{80}}, Targets{Ports: []uint16{8080}}, false},
		{Targets{Ports: []uint16{80}}, Targets{Ports: []uint16{80, 8080}}, false},
		{Targets{Ports: []uint16{80}}, Targets{}, false},
		{Targets{Ports: []uint16{80}}, Targets{PIDs: []uint32{1}}, false},
		{Targets{PIDs: []uint32{1, 2}}, Targets{PIDs: []uint32{2}}, true},
		{Targets{Comms: []string{"nginx"}}, Targets{Comms: []string{"nginx", "caddy"}}, false},
		{Targets{Comms: []string{"averyveryverylongname"}}, Targets{Comms: []string{"averyveryverylo"}}, true},
		{Targets{Comms: []string{"averyveryverylo"}}, Targets{Comms: []string{"averyveryverylongname"}}, true},
		{Targets{Cgroups: []string{"/sys/fs/cgroup/a"}}, Targets{Cgroups: []string{"/sys/fs/cgroup/a/b/"}}, true},
		{Targets{Cgroups: []string{"/sys/fs/cgroup/a/"}}, Targets{Cgroups: []string{"/sys/fs/cgroup/a"}}, true},
		{Targets{Cgroups: []string{"/sys/fs/cgroup/a"}}, Targets{Cgroups: []string{"/sys/fs/cgroup/ab"}}, false},
		{Targets{Cgroups: []string{"/sys/fs/cgroup/a/b"}}, Targets{Cgroups: []string{"/sys/fs/cgroup/a"}}, false},
	} {
		if got := tc.have.Covers(tc.want); got != tc.covered {
			t.Errorf("%+v covers %+v: %v, want %v", tc.have, tc.want, got, tc.covered)
		}
	}
}

func TestDiff(t *testing.T) {
	old := Targets{PIDs: []uint32{1, 2}, Comms: []string{"nginx"}}
	cur := Targets{PIDs: []uint32{2, 3}, Ports: []uint16{80}, Cgroups: []string{"/sys/fs/cgroup/a"}}
	want := []Change{
		{"pid", "3", true}, {"pid", "1", false},
		{"port", "80", true},
		{"comm", "nginx", false},
		{"cgroup", "/sys/fs/cgroup/a", true},
	}
	if got := Diff(old, cur); !slices.Equal(got, want) {
		t.Errorf("Diff: %+v\nwant %+v", got, want)
	}
	if got := Diff(cur, cur); len(got) != 0 {
		t.Errorf("no change: %+v", got)
	}
}

func TestValidate(t *testing.T) {
	if err := (Targets{PIDs: []uint32{uint32(os.Getpid())}, Ports: []uint16{80}, Comms: []string{"x"}}).Validate(); err != nil {
		t.Errorf("a valid selection: %v", err)
	}
	for _, tc := range []struct {
		t    Targets
		want string
	}{
		{Targets{PIDs: []uint32{0}}, "--pid 0 is not a process"},
		{Targets{PIDs: []uint32{math.MaxUint32}}, "--pid 4294967295: no such process"},
		{Targets{Ports: []uint16{0}}, "--port 0 is not a port"},
		{Targets{Comms: []string{""}}, "--comm needs a process name"},
		{Targets{Cgroups: []string{"/nonexistent"}}, "--cgroup /nonexistent: no such file or directory (give a directory under /sys/fs/cgroup)"},
		{Targets{Cgroups: []string{"/proc"}}, "--cgroup /proc: not a cgroup directory"},
	} {
		if err := tc.t.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.t, err, tc.want)
		}
	}
}

// cgroupDir finds a directory on a file system of type magic (cgroup v1
// or v2) among dirs, or skips.
func cgroupDir(t *testing.T, magic int64, dirs ...string) string {
	t.Helper()
	for _, d := range dirs {
		var fs unix.Statfs_t
		if unix.Statfs(d, &fs) == nil && fs.Type == magic {
			return d
		}
	}
	t.Skipf("none of %v here", dirs)
	return ""
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func TestResolveCgroupsV2(t *testing.T) {
	dir := cgroupDir(t, cgroup2Magic, "/sys/fs/cgroup", "/sys/fs/cgroup/unified")
	sel, err := ResolveCgroups([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	if sel.V1Subsys != -1 || !slices.Equal(sel.IDs, []uint64{inode(t, dir)}) {
		t.Errorf("%s: %+v", dir, sel)
	}
}

// TestResolveCgroupsV1: a controller's hierarchy resolves to its id; two
// hierarchies in one selection, or one no controller is mounted at, are
// refused.
func TestResolveCgroupsV1(t *testing.T) {
	cpu := cgroupDir(t, cgroup1Magic, "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct")
	sel, err := ResolveCgroups([]string{cpu})
	if err != nil {
		t.Fatal(err)
	}
	ids, err := subsysIDs()
	if err != nil {
		t.Fatal(err)
	}
	if sel.V1Subsys != ids["cpu_cgrp_id"] || !slices.Equal(sel.IDs, []uint64{inode(t, cpu)}) {
		t.Errorf("%s: %+v, want subsystem %d", cpu, sel, ids["cpu_cgrp_id"])
	}
	memory := cgroupDir(t, cgroup1Magic, "/sys/fs/cgroup/memory")
	if _, err := ResolveCgroups([]string{cpu, memory}); err == nil || !strings.Contains(err.Error(), "must be in one hierarchy") {
		t.Errorf("two hierarchies: %v", err)
	}
	named := cgroupDir(t, cgroup1Magic, "/sys/fs/cgroup/systemd")
	if _, err := ResolveCgroups([]string{named}); err == nil || !strings.Contains(err.Error(), "no controller tracerd can follow") {
		t.Errorf("a hierarchy without a controller: %v", err)
	}
}

func TestMatcher(t *testing.T) {
	sel := Targets{PIDs: []uint32{10, 11}, Ports: []uint16{80}, Comms: []string{"averyveryverylongname"}}
	m, err := sel.Matcher()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		pid   uint32
		port  uint16
		comm  string
		match bool
	}{
		{10, 80, "averyveryverylo", true},
		{11, 80, "averyveryverylo", true},
		{12, 80, "averyveryverylo", false},
		{10, 81, "averyveryverylo", false},
		{10, 80, "other", false},
	} {
		if got := m.Match(tc.pid, tc.port, tc.comm, 0); got != tc.match {
			t.Errorf("pid %d port %d comm %q: %v, want %v", tc.pid, tc.port, tc.comm, got, tc.match)
		}
	}
	all, _ := Targets{}.Matcher()
	if !all.Match(1, 1, "x", 1) {
		t.Error("the empty selection does not match everything")
	}
}

// TestMatcherCgroupDescendants: a cgroup selection takes the cgroups
// below it, as the BPF filter does.
func TestMatcherCgroupDescendants(t *testing.T) {
	root, child := "", ""
	for _, dir := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/cpu"} {
		var fs unix.Statfs_t
		if unix.Statfs(dir, &fs) != nil || fs.Type != cgroup2Magic && fs.Type != cgroup1Magic {
			continue
		}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if e.IsDir() {
				root, child = dir, dir+"/"+e.Name()
				break
			}
		}
		if child != "" {
			break
		}
	}
	if child == "" {
		t.Skip("no cgroup directory with a cgroup below it")
	}
	m, err := (Targets{Cgroups: []string{child}}).Matcher()
	if err != nil {
		t.Fatal(err)
	}
	if !m.Match(1, 1, "x", inode(t, child)) || m.Match(1, 1, "x", inode(t, root)) {
		t.Errorf("selection %s: its own id matched %v, its parent's %v", child, m.Match(1, 1, "x", inode(t, child)), m.Match(1, 1, "x", inode(t, root)))
	}
	m, _ = (Targets{Cgroups: []string{root}}).Matcher()
	if !m.Match(1, 1, "x", inode(t, child)) {
		t.Errorf("selection %s does not take %s below it", root, child)
	}
}

func TestRunningAndStillSelected(t *testing.T) {
	self := uint32(os.Getpid())
	comm, ok := procComm(self)
	if !ok {
		t.Fatal("no /proc/self/comm")
	}
	if got := (Targets{Comms: []string{comm}}).Running(); !slices.Contains(got, self) {
		t.Errorf("--comm %s: running %v lacks this process %d", comm, got, self)
	}
	if got := (Targets{PIDs: []uint32{self, 1}}).Running(); !slices.Equal(got, []uint32{self, 1}) {
		t.Errorf("--pid: running %v", got)
	}
	// Selections by port (or none) take the processes listening on TCP
	// (on a selected port): this one, once it listens.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	for _, tc := range []struct {
		t    Targets
		want bool
	}{
		{Targets{Ports: []uint16{port}}, true},
		{Targets{Ports: []uint16{port + 1}}, false},
		{Targets{}, true},
		{Targets{Ports: []uint16{port}, Comms: []string{comm}}, true},
		{Targets{Ports: []uint16{port}, Comms: []string{"not-" + comm}}, false},
		{Targets{Ports: []uint16{port}, PIDs: []uint32{self}}, true},
		{Targets{Ports: []uint16{port}, PIDs: []uint32{1}}, false},
	} {
		if got := tc.t.Running(); slices.Contains(got, self) != tc.want {
			t.Errorf("%+v (listening on %d): running %v, this process %d in it: want %v", tc.t, port, got, self, tc.want)
		}
	}
	for _, tc := range []struct {
		t    Targets
		pid  uint32
		want bool
	}{
		{Targets{}, self, true},
		{Targets{Ports: []uint16{80}}, self, true},
		{Targets{PIDs: []uint32{self}}, self, true},
		{Targets{PIDs: []uint32{1}}, self, false},
		{Targets{Comms: []string{comm}}, self, true},
		{Targets{Comms: []string{"not-" + comm}}, self, false},
		{Targets{PIDs: []uint32{self}, Comms: []string{"not-" + comm}}, self, false},
		{Targets{Comms: []string{comm}}, math.MaxUint32, false},
	} {
		if got := tc.t.StillSelected(tc.pid); got != tc.want {
			t.Errorf("%+v, pid %d: still selected %v, want %v", tc.t, tc.pid, got, tc.want)
		}
	}
}
