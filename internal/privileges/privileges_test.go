package privileges

import (
	"strings"
	"testing"
)

func TestMissing(t *testing.T) {
	all := uint64(1)<<capBPF | 1<<capPerfmon | 1<<capDacReadSearch | 1<<capSysAdmin | 1<<capSysPtrace
	if m := Missing(all, 65534, true); len(m) != 0 {
		t.Errorf("full set: missing %v", m)
	}
	for _, c := range []struct {
		bit  uint
		name string
	}{{capDacReadSearch, "CAP_DAC_READ_SEARCH"}, {capSysAdmin, "CAP_SYS_ADMIN"}, {capSysPtrace, "CAP_SYS_PTRACE"}} {
		if m := Missing(all&^(1<<c.bit), 65534, true); len(m) != 1 || !strings.HasPrefix(m[0], c.name+" (") {
			t.Errorf("without %s: %v", c.name, m)
		}
	}
	// CAP_SYS_ADMIN covers CAP_BPF and CAP_PERFMON; without both, they are named.
	for bit, name := range map[uint]string{capBPF: "CAP_BPF", capPerfmon: "CAP_PERFMON"} {
		if m := Missing(all&^(1<<bit), 65534, true); len(m) != 0 {
			t.Errorf("without %s but with CAP_SYS_ADMIN: %v", name, m)
		}
		if m := Missing(all&^(1<<bit)&^(1<<capSysAdmin), 65534, false); len(m) != 1 || !strings.HasPrefix(m[0], name+" (") {
			t.Errorf("without %s and CAP_SYS_ADMIN: %v", name, m)
		}
	}
	kernelOnly := uint64(1)<<capBPF | 1<<capPerfmon | 1<<capDacReadSearch
	if m := Missing(kernelOnly, 65534, false); len(m) != 0 {
		t.Errorf("kernel engine alone: missing %v", m)
	}
	if m := Missing(kernelOnly&^(1<<capDacReadSearch)|1<<capDacOverride, 65534, false); len(m) != 0 {
		t.Errorf("CAP_DAC_OVERRIDE reads tracefs too: %v", m)
	}
	if m := Missing(uint64(1)<<capBPF|1<<capPerfmon, 0, false); len(m) != 0 {
		t.Errorf("uid 0 reads tracefs without CAP_DAC_READ_SEARCH: %v", m)
	}
}

// TestKernelEngine: the advice after a refused load names exactly what
// Missing asks of a user with no capability for the kernel engine.
func TestKernelEngine(t *testing.T) {
	advice := KernelEngine()
	want := "CAP_BPF and CAP_PERFMON (CAP_SYS_ADMIN covers them) and, when not uid 0, CAP_DAC_READ_SEARCH"
	if advice != want {
		t.Errorf("%q, want %q", advice, want)
	}
	missing := Missing(0, 65534, false)
	for _, m := range missing {
		name, _, _ := strings.Cut(m, " ")
		if !strings.Contains(advice, name) {
			t.Errorf("advice %q lacks %s", advice, name)
		}
	}
	if strings.Contains(advice, "CAP_SYS_PTRACE") || len(missing) != 3 {
		t.Errorf("advice %q, missing %v: the kernel engine needs three", advice, missing)
	}
}
