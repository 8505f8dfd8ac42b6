package cgroupfs

import "testing"

func TestMounts(t *testing.T) {
	if v2, v1 := Mounts([]byte("35 25 0:30 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n40 1 0:30 /sub /mnt/x rw - cgroup2 cgroup2 rw\n")); v2 != "/sys/fs/cgroup" || v1 != "" {
		t.Errorf("mounts %q %q", v2, v1)
	}
	if v2, v1 := Mounts([]byte("32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n33 31 0:30 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset\n")); v1 != "/sys/fs/cgroup/cpu,cpuacct" || v2 != "" {
		t.Errorf("v1 mounts %q %q (cpuset is not cpu)", v2, v1)
	}
	if v2, _ := Mounts([]byte("38 25 0:33 / /mnt/my\\040cgroups rw - cgroup2 cgroup2 rw\nbad line\n")); v2 != "/mnt/my cgroups" {
		t.Errorf("escaped mount point %q", v2)
	}
	for in, want := range map[string]string{`/mnt/with\040space`: "/mnt/with space", `a\\`: `a\\`, `x\04`: `x\04`, `\011t`: "\tt", "plain": "plain"} {
		if got := Unescape(in); got != want {
			t.Errorf("Unescape(%q) = %q, want %q", in, got, want)
		}
	}
}
