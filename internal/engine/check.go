package engine

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"

	"github.com/tracerd/tracerd/internal/correlate"
	"github.com/tracerd/tracerd/internal/loader"
	"github.com/tracerd/tracerd/internal/privileges"
)

// CheckReport is what `tracerd check` found; --json prints it as is
// (docs/kernels.md is made from it).
type CheckReport struct {
	Kernel     string       `json:"kernel"`
	BTF        string       `json:"btf"`
	Privileges string       `json:"privileges"`
	Hooks      []CheckHook  `json:"hooks"`
	Phases     []CheckPhase `json:"phases"`
	GoProbes   string       `json:"go_probes"`
	Error      string       `json:"error,omitempty"` // why tracing cannot work here
}

// CheckHook is one hook: the way it attached (empty when it did not),
// what that way costs next to the best one, and the ways passed over.
type CheckHook struct {
	Name     string         `json:"name"`
	Required bool           `json:"required"`
	Way      string         `json:"way,omitempty"`
	Cost     string         `json:"cost,omitempty"`
	Reason   string         `json:"reason,omitempty"`
	Tried    []loader.Tried `json:"tried,omitempty"`
	Phases   []string       `json:"phases"`
	OnQuota  bool           `json:"on_quota,omitempty"` // attached by tracerd only while a CPU quota can throttle a traced thread
}

// CheckPhase says whether a phase can be measured here.
type CheckPhase struct {
	Name      string `json:"name"`
	Available bool   `json:"available"`
	Missing   string `json:"missing,omitempty"` // the hooks it lacks
}

// Check loads and attaches every program tracerd would use on this
// kernel (then removes them), and reports per hook the way it took.
// Error is set when tracing cannot work here at all.
func Check() CheckReport {
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	rep := CheckReport{Kernel: unix.ByteSliceToString(uts.Release[:]) + " " + unix.ByteSliceToString(uts.Machine[:])}
	rep.BTF = "ok (/sys/kernel/btf/vmlinux)"
	if _, err := loader.KernelBTF(); err != nil {
		rep.BTF = "missing: " + err.Error()
	}
	rep.Privileges = "ok"
	if err := privileges.Check(false); err != nil {
		rep.Privileges = "missing: " + err.Error()
		rep.Error = "not enough privileges"
		return rep
	} else if err := privileges.Check(true); err != nil {
		rep.Privileges = "kernel engine ok; Go awareness (--go) " + err.Error()
	}
	rep.GoProbes = "uprobe_multi links, one per program and process"
	if err := features.HaveBPFLinkUprobeMulti(); err != nil {
		rep.GoProbes = fmt.Sprintf("classic uprobes, one per address (no uprobe_multi links: %v)", err)
	}

	cfg := loader.DefaultConfig()
	cfg.MaxConns, cfg.RingBytes = 16, uint32(os.Getpagesize()) // a load test, not a tracer
	t, err := loader.Open(cfg)
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	defer t.Close()
	for _, h := range t.Hooks {
		ch := CheckHook{Name: h.Name, Required: h.Required, Way: h.WayName(), Reason: h.Reason, Tried: h.Tried, Phases: h.Phases, OnQuota: h.OnQuota}
		if h.OK {
			ch.Cost = h.Way.Cost
		}
		rep.Hooks = append(rep.Hooks, ch)
	}
	rep.Phases = phasesAvailable(t.Hooks)
	return rep
}

// phasesAvailable: a phase can be measured when every hook that feeds
// it is attached.
func phasesAvailable(hooks []loader.HookStatus) []CheckPhase {
	var out []CheckPhase
	for p := correlate.Phase(0); p < correlate.NumPhases; p++ {
		cp := CheckPhase{Name: p.String(), Available: true}
		var missing []string
		for _, h := range hooks {
			if !h.OK && slices.Contains(h.Phases, p.String()) {
				missing = append(missing, h.Name)
			}
		}
		if len(missing) > 0 {
			cp.Available, cp.Missing = false, strings.Join(missing, ", ")
		}
		out = append(out, cp)
	}
	return out
}
