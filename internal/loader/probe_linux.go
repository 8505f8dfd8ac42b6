package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
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

// kernelView is what the running kernel offers, for choosing ways.
//
// Its own BTF is required: the programs read the current task through
// BTF-typed helpers (bpf_get_current_task_btf, bpf_task_pt_regs), which
// no external BTF file (BTFHub) can stand in for; every kernel that
// tracerd supports (≥ 5.15) has it in the major distributions.
type kernelView struct {
	btf    *btf.Spec
	tfRoot string // tracefs, "" when unavailable
	tfErr  error
}

func newKernelView() (*kernelView, error) {
	spec, err := KernelBTF()
	if err != nil {
		return nil, err
	}
	k := &kernelView{btf: spec}
	k.tfRoot, k.tfErr = tracefsRoot()
	return k, nil
}

// eventArgs is the number of arguments of a tracepoint's event in BTF.
func eventArgs(spec *btf.Spec, event string) (int, bool) {
	var td *btf.Typedef
	if err := spec.TypeByName("btf_trace_"+event, &td); err != nil {
		return 0, false
	}
	ptr, ok := td.Type.(*btf.Pointer)
	if !ok {
		return 0, false
	}
	fp, ok := ptr.Target.(*btf.FuncProto)
	if !ok || len(fp.Params) == 0 {
		return 0, false
	}
	return len(fp.Params) - 1, true // the first is the tracepoint's own data
}

// offers says whether the kernel has what a way attaches to, or why not.
func (k *kernelView) offers(w Way) error {
	for _, a := range w.Progs {
		switch w.Kind {
		case "tp_btf", "raw_tp":
			n, ok := eventArgs(k.btf, a.Target)
			if !ok {
				return fmt.Errorf("kernel has no tracepoint %s", a.Target)
			}
			if w.Args > 0 && n != w.Args {
				return fmt.Errorf("the kernel's %s has %d arguments, this program is for %d", a.Target, n, w.Args)
			}
		case "fentry", "fexit":
			var fn *btf.Func
			if err := k.btf.TypeByName(a.Target, &fn); err != nil {
				return fmt.Errorf("kernel has no function %s in its BTF", a.Target)
			}
			if fp, ok := fn.Type.(*btf.FuncProto); ok && w.Args > 0 && len(fp.Params) != w.Args {
				return fmt.Errorf("the kernel's %s has %d arguments, this program is for %d", a.Target, len(fp.Params), w.Args)
			}
		case "tracepoint":
			if k.tfErr != nil {
				return k.tfErr
			}
			if _, err := os.Stat(filepath.Join(k.tfRoot, "events", a.Group, a.Target, "id")); err != nil {
				if errors.Is(err, os.ErrNotExist) {
					return fmt.Errorf("kernel has no tracepoint %s/%s", a.Group, a.Target)
				}
				return err
			}
		}
	}
	return nil
}

// wayKey names a way of a hook in the record of ways that failed (the
// first program tells apart ways of one name: tp_btf variants of one
// event).
func wayKey(h Hook, w Way) string {
	key := h.Name + " " + w.Name()
	if len(w.Progs) > 0 {
		key += " " + w.Progs[0].Program
	}
	return key
}

// refused says whether the operator turned a way off: an entry names a
// kind (tp_btf), a way (fexit/tcp_recvmsg), or either for one hook
// (sock_recv_length:fexit).
func refused(h Hook, w Way, refuse []string) bool {
	for _, r := range refuse {
		hook, way, scoped := strings.Cut(r, ":")
		if !scoped {
			way = hook
		} else if hook != h.Name {
			continue
		}
		if way == w.Kind || way == w.Name() {
			return true
		}
	}
	return false
}

// planHooks picks each hook's first way that is not skipped, refused or
// known to fail, and that the kernel offers; the others are in Tried.
func planHooks(k *kernelView, cfg Config, failed map[string]string) ([]HookStatus, error) {
	out := make([]HookStatus, 0, len(Hooks))
	for _, h := range Hooks {
		st := HookStatus{Hook: h}
		if slices.Contains(cfg.SkipHooks, h.Name) {
			if h.Required {
				return nil, fmt.Errorf("hook %s is required and cannot be skipped", h.Name)
			}
			st.Reason = "skipped by configuration"
			out = append(out, st)
			continue
		}
		for i := range h.Ways {
			w := &h.Ways[i]
			reason := failed[wayKey(h, *w)]
			switch {
			case reason != "":
			case refused(h, *w, cfg.RefuseWays):
				reason = "refused by TRACERD_NO_WAYS"
			default:
				if err := k.offers(*w); err != nil {
					reason = err.Error()
				}
			}
			if reason == "" {
				st.OK, st.Way = true, w
				break
			}
			st.Tried = append(st.Tried, Tried{Way: w.Name(), Reason: reason})
		}
		if !st.OK {
			st.Reason = "no way to attach it works here"
			if len(st.Tried) > 0 {
				st.Reason = st.Tried[len(st.Tried)-1].Reason
				if len(st.Tried) > 1 {
					st.Reason = fmt.Sprintf("%d ways tried, none works here (last: %s)", len(st.Tried), st.Reason)
				}
			}
			if h.Required {
				return out, fmt.Errorf("required hook %s cannot be attached here: %s", h.Name, describeTried(st.Tried))
			}
		}
		out = append(out, st)
	}
	for _, name := range cfg.SkipHooks {
		if !slices.ContainsFunc(Hooks, func(h Hook) bool { return h.Name == name }) {
			return nil, fmt.Errorf("no hook named %q (see tracerd check)", name)
		}
	}
	return out, nil
}

func describeTried(tried []Tried) string {
	parts := make([]string, len(tried))
	for i, t := range tried {
		parts[i] = t.Way + ": " + t.Reason
	}
	return strings.Join(parts, "; ")
}
