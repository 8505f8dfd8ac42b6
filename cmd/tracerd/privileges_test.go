package main

import (
	"strings"
	"testing"
)

func TestMissingCaps(t *testing.T) {
	all := uint64(1)<<capBPF | 1<<capPerfmon | 1<<capDacReadSearch | 1<<capSysAdmin | 1<<capSysPtrace
	if m := missingCaps(all, 65534, true); len(m) != 0 {
		t.Errorf("full set: missing %v", m)
	}
	for _, c := range []struct {
		bit  uint
		name string
	}{{capBPF, "CAP_SYS_ADMIN"}, {capPerfmon, "CAP_SYS_ADMIN"}, {capDacReadSearch, "CAP_DAC_READ_SEARCH"}, {capSysAdmin, "CAP_SYS_ADMIN"}, {capSysPtrace, "CAP_SYS_PTRACE"}} {
		m := missingCaps(all&^(1<<c.bit), 65534, true)
		if c.bit == capBPF || c.bit == capPerfmon {
			// CAP_SYS_ADMIN covers them; without both, they are named.
			m = missingCaps(all&^(1<<c.bit)&^(1<<capSysAdmin), 65534, false)
			if len(m) != 1 || !strings.Contains(m[0], map[uint]string{capBPF: "CAP_BPF", capPerfmon: "CAP_PERFMON"}[c.bit]) {
				t.Errorf("without %d: %v", c.bit, m)
			}
			continue
		}
		if len(m) != 1 || !strings.HasPrefix(m[0], c.name) {
			t.Errorf("without %s: %v", c.name, m)
		}
	}
	kernelOnly := uint64(1)<<capBPF | 1<<capPerfmon | 1<<capDacReadSearch
	if m := missingCaps(kernelOnly, 65534, false); len(m) != 0 {
		t.Errorf("kernel engine alone: missing %v", m)
	}
	if m := missingCaps(uint64(1)<<capBPF|1<<capPerfmon, 0, false); len(m) != 0 {
		t.Errorf("uid 0 reads tracefs without CAP_DAC_READ_SEARCH: %v", m)
	}
}
