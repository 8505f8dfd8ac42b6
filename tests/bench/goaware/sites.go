package main

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/tracerd/tracerd/internal/goinspect"
)

// The site functions (sites_amd64.s): each begins with one instruction
// of a kind a probe may sit on.
//
//lint:ignore U1000 called from sites_amd64.s (the baseline: a call with no probe)
func siteNone()
func siteRet()
func siteMov()
func siteNop1()
func siteNop2()
func siteNop4()
func siteNop5()
func siteNop9()
func siteJcc8()
func siteJcc32()
func siteJmp()
func siteCall()
func sitePush()

// siteKind is one kind of instruction a uprobe can sit on.
type siteKind struct {
	name, insn string
	fn         func()
	sym        string
}

var siteKinds = []siteKind{
	{"jcc8", "JNE rel8 (75 xx)", siteJcc8, "main.siteJcc8"},
	{"jcc32", "JNE rel32 (0f 85 xx xx xx xx)", siteJcc32, "main.siteJcc32"},
	{"jmp", "JMP rel8 (eb xx)", siteJmp, "main.siteJmp"},
	{"call", "CALL rel32 (e8 xx xx xx xx)", siteCall, "main.siteCall"},
	{"push", "PUSHQ BP (55)", sitePush, "main.sitePush"},
	{"nop1", "NOPL (90)", siteNop1, "main.siteNop1"},
	{"nop2", "NOPW (66 90)", siteNop2, "main.siteNop2"},
	{"nop4", "NOPL 0(AX) (0f 1f 40 00)", siteNop4, "main.siteNop4"},
	{"nop5", "NOPL 0(AX)(AX*1) (0f 1f 44 00 00)", siteNop5, "main.siteNop5"},
	{"nop9", "NOPW 0(AX)(AX*1) (66 0f 1f 84 00 00 00 00 00)", siteNop9, "main.siteNop9"},
	{"mov", "MOVQ AX, BX (48 89 c3)", siteMov, "main.siteMov"},
	{"ret", "RET (c3)", siteRet, "main.siteRet"},
}

// siteCosts measures, for each kind, the CPU a uprobe hit costs the
// thread that hits it: calls of the site function with and without a
// probe at its first instruction (an empty BPF program, so only the
// kernel's trap and its handling of the instruction are measured),
// interleaved, rounds times. Returns per kind the per-hit costs (ns)
// of each round.
func siteCosts(rounds, calls int) (map[string][]float64, error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.Kprobe,
		AttachType:   ebpf.AttachTraceUprobeMulti,
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
		License:      "GPL",
	})
	if err != nil {
		return nil, err
	}
	defer prog.Close()
	offs, err := siteOffsets()
	if err != nil {
		return nil, err
	}
	ex, err := link.OpenExecutable("/proc/self/exe")
	if err != nil {
		return nil, err
	}
	// One uprobe_multi link holds a probe on every site function (only
	// the one being called fires): attaching and removing uprobes takes
	// the kernel long, so this happens once per round.
	opts := &link.UprobeMultiOptions{PID: uint32(os.Getpid())}
	for _, k := range siteKinds {
		opts.Addresses = append(opts.Addresses, offs[k.sym])
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	out := map[string][]float64{}
	for r := 0; r < rounds; r++ {
		off := map[string]time.Duration{}
		for _, k := range siteKinds {
			off[k.name] = timeCalls(k.fn, calls)
		}
		l, err := ex.UprobeMulti(nil, prog, opts)
		if err != nil {
			return nil, fmt.Errorf("uprobe_multi: %w", err)
		}
		for _, k := range siteKinds {
			on := timeCalls(k.fn, calls)
			out[k.name] = append(out[k.name], float64(on-off[k.name])/float64(calls))
		}
		l.Close()
	}
	return out, nil
}

// timeCalls calls fn n times and returns the thread's CPU time spent.
func timeCalls(fn func(), n int) time.Duration {
	var t0, t1 unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &t0)
	for i := 0; i < n; i++ {
		fn()
	}
	_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &t1)
	return time.Duration(t1.Nano() - t0.Nano())
}

// siteOffsets returns the file offset of each site function's first
// instruction (the assembly body, not the ABI wrapper Go calls it
// through), from the pclntab: `go run` builds have no symbol table.
func siteOffsets() (map[string]uint64, error) {
	bin, err := goinspect.Open("/proc/self/exe")
	if err != nil {
		return nil, err
	}
	defer bin.Close()
	out := map[string]uint64{}
	for _, k := range siteKinds {
		f, err := siteFunc(bin, k.sym)
		if err != nil {
			return nil, err
		}
		out[k.sym] = f.EntryOffset
	}
	return out, nil
}

func siteReport(costs map[string][]float64, rounds, calls int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n### Cost of one uprobe hit, by the instruction it sits on\n\n")
	fmt.Fprintf(&b, "`go run ./tests/bench/goaware -sites-only` (also part of `make bench`), %s: a function whose first instruction is of each kind (tests/bench/goaware/sites_amd64.s) is called %d times on one thread without and with a uprobe there (one uprobe_multi link holding all the sites) (an empty BPF program: what is measured is the kernel's trap and how it handles the instruction), %d interleaved rounds; thread CPU time (CLOCK_THREAD_CPUTIME_ID) added per call. The kernel emulates some instructions (jumps, calls, pushes, some NOPs) and single-steps the others out of line.\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"), calls, rounds)
	fmt.Fprintf(&b, "| site | instruction | per hit (median) | range |\n|---|---|---|---|\n")
	for _, k := range siteKinds {
		v := append([]float64(nil), costs[k.name]...)
		sort.Float64s(v)
		fmt.Fprintf(&b, "| %s | %s | %.2f µs | %.2f – %.2f µs |\n", k.name, k.insn, v[len(v)/2]/1e3, v[0]/1e3, v[len(v)-1]/1e3)
	}
	return b.String()
}

// siteFunc is the assembly body of a site function: sym.abi0 when Go
// calls it through an ABI wrapper named sym, else sym itself.
func siteFunc(bin *goinspect.Binary, sym string) (goinspect.Func, error) {
	if f, err := bin.Func(sym + ".abi0"); err == nil {
		return f, nil
	}
	return bin.Func(sym)
}
