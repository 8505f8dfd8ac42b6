package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"

	"github.com/tracerd/tracerd/internal/correlate"
	"github.com/tracerd/tracerd/internal/loader"
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
}

// CheckPhase says whether a phase can be measured here.
type CheckPhase struct {
	Name      string `json:"name"`
	Available bool   `json:"available"`
	Missing   string `json:"missing,omitempty"` // the hooks it lacks
}

// checkCmd loads and attaches every program tracerd would use on this
// kernel (then removes them), and reports per hook the way it took. Exit
// 1 when tracing cannot work at all.
func checkCmd(args []string) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := parse(fs, args); err != nil {
		return fail(err)
	}
	rep := runCheck()
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	} else {
		printCheck(os.Stdout, rep)
	}
	if rep.Error != "" {
		return exitFail
	}
	return exitOK
}

func runCheck() CheckReport {
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	rep := CheckReport{Kernel: unix.ByteSliceToString(uts.Release[:]) + " " + unix.ByteSliceToString(uts.Machine[:])}
	rep.BTF = "ok (/sys/kernel/btf/vmlinux)"
	if _, err := loader.KernelBTF(); err != nil {
		rep.BTF = "missing: " + err.Error()
	}
	rep.Privileges = "ok"
	if err := checkPrivileges(false); err != nil {
		rep.Privileges = "missing: " + err.Error()
		rep.Error = "not enough privileges"
		return rep
	} else if err := checkPrivileges(true); err != nil {
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
		ch := CheckHook{Name: h.Name, Required: h.Required, Way: h.WayName(), Reason: h.Reason, Tried: h.Tried, Phases: h.Phases}
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

func printCheck(w io.Writer, rep CheckReport) {
	fmt.Fprintf(w, "kernel      %s\n", rep.Kernel)
	fmt.Fprintf(w, "BTF         %s\n", rep.BTF)
	fmt.Fprintf(w, "privileges  %s\n", rep.Privileges)
	if len(rep.Hooks) > 0 {
		fmt.Fprintln(w, "\nhooks (each loaded and attached on this kernel, then removed):")
	}
	for _, h := range rep.Hooks {
		switch {
		case h.Way == "" && h.Required:
			fmt.Fprintf(w, "  MISSING  %-20s REQUIRED: %s\n", h.Name, h.Reason)
		case h.Way == "":
			fmt.Fprintf(w, "  missing  %-20s loses %s: %s\n", h.Name, strings.Join(h.Phases, ", "), h.Reason)
		default:
			fmt.Fprintf(w, "  ok       %-20s %s\n", h.Name, h.Way)
			if h.Cost != "" {
				fmt.Fprintf(w, "           %-20s fallback, costs: %s\n", "", h.Cost)
			}
		}
		if h.Way != "" || len(h.Tried) > 1 {
			for _, t := range h.Tried {
				fmt.Fprintf(w, "           %-20s not %s: %s\n", "", t.Way, t.Reason)
			}
		}
	}
	if len(rep.Phases) > 0 {
		var have, lack []string
		for _, p := range rep.Phases {
			if p.Available {
				have = append(have, p.Name)
			} else {
				lack = append(lack, p.Name+" (needs "+p.Missing+")")
			}
		}
		fmt.Fprintf(w, "\nphases      %s\n", strings.Join(have, ", "))
		if len(lack) > 0 {
			fmt.Fprintf(w, "unavailable %s\n", strings.Join(lack, ", "))
		}
	}
	if rep.GoProbes != "" {
		fmt.Fprintf(w, "Go probes   %s\n", rep.GoProbes)
	}
	if rep.Error != "" {
		fmt.Fprintf(w, "\ntracing cannot work here: %s\n", rep.Error)
		return
	}
	fmt.Fprintln(w, "\ntracing works here")
}
