package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/tracerd/tracerd/internal/config/flags"
	"github.com/tracerd/tracerd/internal/engine"
)

// checkCmd loads and attaches every program tracerd would use on this
// kernel (then removes them), and reports per hook the way it took. Exit
// 1 when tracing cannot work at all.
func checkCmd(args []string) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := flags.Parse(fs, args); err != nil {
		return fail(err)
	}
	rep := engine.Check()
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

func printCheck(w io.Writer, rep engine.CheckReport) {
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
			if h.OnQuota {
				fmt.Fprintf(w, "           %-20s attached once a CPU quota can throttle a traced thread\n", "")
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
