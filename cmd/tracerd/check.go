package main

import (
	"flag"
	"fmt"
	"strings"

	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"

	"github.com/tracerd/tracerd/internal/loader"
)

// checkCmd reports kernel, BTF, privileges and each hook. Exit 1 when
// tracing cannot work at all.
func checkCmd(args []string) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	if err := parse(fs, args); err != nil {
		return fail(err)
	}
	fatal := false
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	fmt.Printf("kernel      %s %s\n", unix.ByteSliceToString(uts.Release[:]), unix.ByteSliceToString(uts.Machine[:]))
	if _, err := loader.KernelBTF(); err != nil {
		fmt.Printf("BTF         missing: %v\n", err)
		fatal = true
	} else {
		fmt.Println("BTF         ok (/sys/kernel/btf/vmlinux)")
	}
	if err := checkPrivileges(false); err != nil {
		fmt.Printf("privileges  missing: %v\n", err)
		fatal = true
	} else if err := checkPrivileges(true); err != nil {
		fmt.Printf("privileges  kernel engine ok; Go awareness (--go) %v\n", err)
	} else {
		fmt.Println("privileges  ok")
	}
	fmt.Println("\nhooks:")
	for _, h := range loader.ProbeHooks() {
		if h.OK {
			fmt.Printf("  ok       %-34s %s (program %s)\n", h.Name(), strings.Join(h.Phases, ", "), h.Program)
			continue
		}
		what := "optional, loses: " + strings.Join(h.Phases, ", ")
		if h.Required {
			what = "REQUIRED: tracing cannot work"
			fatal = true
		}
		fmt.Printf("  missing  %-34s %s (%s)\n", h.Name(), what, h.Reason)
	}
	if err := features.HaveBPFLinkUprobeMulti(); err != nil {
		fmt.Printf("\nGo probes   classic uprobes, one per address (no uprobe_multi links: %v)\n", err)
	} else {
		fmt.Println("\nGo probes   uprobe_multi links, one per program and process")
	}
	if fatal {
		fmt.Println("\ntracing cannot work here: fix what is missing above")
		return exitFail
	}
	fmt.Println("\ntracing can work here")
	return exitOK
}
