package main

import (
	"os"
	"testing"
)

// The memory and limit readers parse this process's own /proc files:
// a format they no longer read shows as -1, not as a small RSS.
func TestReadMemSelf(t *testing.T) {
	m := readMem(os.Getpid())
	if m.RSS <= 0 || m.HWM < m.RSS || m.Anon <= 0 || m.File < 0 || m.Anon+m.File > m.RSS+1024 {
		t.Errorf("readMem(self) = %+v", m)
	}
	if m.BPFMaps != 0 {
		t.Errorf("this test maps no BPF map, readMem says %d KiB", m.BPFMaps)
	}
	if n := noFileLimit(os.Getpid()); n <= 0 {
		t.Errorf("noFileLimit(self) = %d", n)
	}
}
