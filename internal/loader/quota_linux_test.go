package loader

import (
	"os"
	"path/filepath"
	"testing"
)

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
