package loader

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestCgroupMounts(t *testing.T) {
	mi := []byte(`25 30 0:23 / /sys rw,nosuid - sysfs sysfs rw
35 25 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec - cgroup2 cgroup2 rw,nsdelegate
36 25 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
37 25 0:32 / /sys/fs/cgroup/cpuset rw,nosuid - cgroup cgroup rw,cpuset
38 25 0:33 / /mnt/my\040cgroups rw - cgroup2 cgroup2 rw
bad line
`)
	v2, v1 := cgroupMounts(mi)
	if want := []string{"/sys/fs/cgroup", "/mnt/my cgroups"}; !slices.Equal(v2, want) {
		t.Errorf("v2 mounts %q, want %q", v2, want)
	}
	if want := []string{"/sys/fs/cgroup/cpu,cpuacct"}; !slices.Equal(v1, want) {
		t.Errorf("v1 cpu mounts %q, want %q (cpuset is not cpu)", v1, want)
	}
	for in, want := range map[string]string{`a\040b`: "a b", `a\\`: `a\\`, `x\04`: `x\04`, `\011t`: "\tt", "plain": "plain"} {
		if got := unescapeOctal(in); got != want {
			t.Errorf("unescapeOctal(%q) = %q, want %q", in, got, want)
		}
	}
}

// A cgroup tree on disk: quotas are found at any depth, in either
// version's files; "max" and -1 are no quota.
func TestQuotaUnder(t *testing.T) {
	mk := func(root string, files map[string]string) {
		for rel, v := range files {
			p := filepath.Join(root, rel)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	none := t.TempDir()
	mk(none, map[string]string{"a/cpu.max": "max 100000\n", "a/b/cpu.max": "max 100000\n", "c/cpu.max": "max 50000\n"})
	if quotaUnder(none, true, 100) {
		t.Error("v2 tree without a quota: found one")
	}
	deep := t.TempDir()
	mk(deep, map[string]string{"a/cpu.max": "max 100000\n", "a/b/c/cpu.max": "20000 100000\n"})
	if !quotaUnder(deep, true, 100) {
		t.Error("v2 quota three levels down: not found")
	}
	if quotaUnder(deep, true, 2) != true {
		t.Error("a tree larger than the limit must count as having one")
	}
	v1 := t.TempDir()
	mk(v1, map[string]string{"cpu.cfs_quota_us": "-1\n", "x/cpu.cfs_quota_us": "-1\n"})
	if quotaUnder(v1, false, 100) {
		t.Error("v1 tree with -1 quotas: found one")
	}
	mk(v1, map[string]string{"x/y/cpu.cfs_quota_us": "50000\n"})
	if !quotaUnder(v1, false, 100) {
		t.Error("v1 quota: not found")
	}
}
