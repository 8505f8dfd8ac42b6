package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"
)

var (
	kernelBTFMu sync.Mutex
	kernelBTF   *btf.Spec
)

// KernelBTF loads the running kernel's BTF, cached until ReleaseKernelBTF.
func KernelBTF() (*btf.Spec, error) {
	kernelBTFMu.Lock()
	defer kernelBTFMu.Unlock()
	if kernelBTF != nil {
		return kernelBTF, nil
	}
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, fmt.Errorf("kernel BTF unavailable (%w): tracerd needs CONFIG_DEBUG_INFO_BTF=y, i.e. /sys/kernel/btf/vmlinux", err)
	}
	kernelBTF = spec
	return spec, nil
}

// ReleaseKernelBTF drops the parsed kernel BTF (tens of MiB) once
// everything is loaded.
func ReleaseKernelBTF() {
	kernelBTFMu.Lock()
	kernelBTF = nil
	kernelBTFMu.Unlock()
}

// tracefsRoot finds tracefs, mounting it at /sys/kernel/tracing when no
// one has (minimal systems and fresh VMs often have it unmounted).
func tracefsRoot() (string, error) {
	for _, dir := range []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"} {
		if _, err := os.Stat(filepath.Join(dir, "events")); err == nil {
			return dir, nil
		}
	}
	const dir = "/sys/kernel/tracing"
	if err := unix.Mount("nodev", dir, "tracefs", 0, ""); err != nil {
		return "", fmt.Errorf("tracefs is not mounted and mounting it at %s failed: %w (mount it: mount -t tracefs nodev %s)", dir, err, dir)
	}
	return dir, nil
}

// ProbeHooks checks every hook without loading anything.
func ProbeHooks() []HookStatus {
	out := make([]HookStatus, 0, len(Hooks))
	spec, btfErr := KernelBTF()
	root, tfErr := tracefsRoot()
	for _, h := range Hooks {
		st := HookStatus{Hook: h, OK: true}
		switch h.Kind {
		case "tp_btf":
			if btfErr != nil {
				st.OK, st.Reason = false, btfErr.Error()
				break
			}
			var fn *btf.Typedef
			if err := spec.TypeByName("btf_trace_"+h.Event, &fn); err != nil {
				st.OK, st.Reason = false, "kernel has no tracepoint "+h.Event
			}
		case "tracepoint":
			if tfErr != nil {
				st.OK, st.Reason = false, tfErr.Error()
				break
			}
			if _, err := os.Stat(filepath.Join(root, "events", h.Group, h.Event, "id")); err != nil {
				reason := "kernel has no tracepoint " + h.Group + "/" + h.Event
				if !errors.Is(err, os.ErrNotExist) {
					reason = err.Error()
				}
				st.OK, st.Reason = false, reason
			}
		}
		out = append(out, st)
	}
	return out
}
