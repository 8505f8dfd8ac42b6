package goinspect

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strings"

	"golang.org/x/arch/x86/x86asm"
)

// A probe on a RET is single-stepped by the kernel (≈ 10 µs a hit on our
// development VM: BENCHMARKS.md), one on a jump, a call, a push or a NOP
// is emulated (≈ 0.7 µs). Exits finds, for a function whose calls are
// timed, emulated instructions that run once right after a call has done
// its work: in the function itself, just after the call of the worker
// that does that work, or in its callers, just after their call of it.
// A RET stays probed only on paths where no such place can be proven.

// An Exit is an instruction whose probe marks the end of a call.
type Exit struct {
	Func     string // the function it is in
	Addr     uint64 // virtual address
	Offset   uint64 // file offset (what a uprobe takes)
	Insn     string // the instruction (Intel syntax)
	Emulated bool   // false: a RET, single-stepped
}

// ExitPlan says where a function's calls are seen to end (one of After,
// Callers).
type ExitPlan struct {
	// After is the call chain of the function's work: it calls After[0],
	// which calls After[1], and so on. A call ends at the first emulated
	// instruction after the last of these calls returns (the rest of
	// the function is bookkeeping: copying out a result, deferred calls).
	// Paths of the chain's functions that return without that call keep a
	// probe on their RET (error paths). Each function of the chain must
	// make the call once, not in a loop.
	After []string
	// Callers: the call ends in its callers, at the first emulated
	// instruction after each direct call of the function; the function's
	// address must be taken nowhere else (no function value, interface
	// method table or tail jump), or calls through it would go unseen.
	Callers bool
	// CrossCalls is how many indirect calls the way from a return to its
	// exit probe may pass (their time counts in the call).
	CrossCalls int
	// Follow names, for callers that return right after the call (their
	// own callers unknown, such as handlers called through an
	// interface), a function always called next on the same goroutine:
	// its entry probe ends the call. Other such callers keep a probe on
	// their RET.
	Follow map[string]string
}

// maxExitWalk bounds the instructions walked from a return to its exit.
const maxExitWalk = 64

// Exits returns where the calls of the function name end, following
// plan. Every probe address is an instruction start found by
// disassembling its function from its .gopclntab entry, inside the
// function's bounds. An error says why the plan does not hold for this
// binary: then only RET probes (Func.Returns) can time the calls.
func (b *Binary) Exits(name string, plan ExitPlan) ([]Exit, error) {
	var exits []Exit
	var err error
	switch {
	case len(plan.After) > 0:
		exits, err = b.exitsAfter(name, plan)
	case plan.Callers:
		exits, err = b.exitsInCallers(name, plan)
	default:
		err = errors.New("empty exit plan")
	}
	if err != nil {
		return nil, fmt.Errorf("goinspect: %s: exits of %q: %w", b.Path, name, err)
	}
	for i := range exits {
		if exits[i].Offset, err = b.fileOffset(exits[i].Addr); err != nil {
			return nil, err
		}
	}
	return exits, nil
}

// exitsAfter follows plan.After down from name.
func (b *Binary) exitsAfter(name string, plan ExitPlan) ([]Exit, error) {
	var exits []Exit
	fn, err := b.code(name)
	if err != nil {
		return nil, err
	}
	for level, worker := range plan.After {
		entry, _, err := b.locate(worker)
		if err != nil {
			return nil, fmt.Errorf("worker %s: %w", worker, err)
		}
		gates := fn.callsTo(entry)
		if len(gates) == 0 {
			return nil, fmt.Errorf("%s does not call %s", fn.name, worker)
		}
		if fn.reaches(gates, gates) {
			return nil, fmt.Errorf("%s calls %s in a loop", fn.name, worker)
		}
		if level < len(plan.After)-1 {
			rets, err := fn.unguardedReturns(gates)
			if err != nil {
				return nil, err
			}
			exits = append(exits, rets...)
			if fn, err = b.code(worker); err != nil {
				return nil, err
			}
			continue
		}
		var sites []int
		for _, g := range gates {
			s, tail, err := fn.walkFrom(g, plan.CrossCalls)
			if err != nil {
				return nil, err
			}
			if tail {
				return nil, fmt.Errorf("%s returns right after calling %s (at %#x): name what %s calls in the chain", fn.name, worker, fn.insns[g].pc, worker)
			}
			sites = append(sites, s)
		}
		// Once per call, after the work: no site leads to a site or back
		// to the work. Other paths may join on the way to a site (a fast
		// path doing the work another way): they end there too.
		if fn.reaches(sites, append(append([]int{}, sites...), gates...)) {
			return nil, fmt.Errorf("an exit after %s in %s can run twice in one call", worker, fn.name)
		}
		rets, err := fn.unguardedReturns(append(append([]int{}, gates...), sites...))
		if err != nil {
			return nil, err
		}
		exits = append(exits, rets...)
		for _, s := range sites {
			exits = append(exits, fn.exit(s))
		}
	}
	return dedupExits(exits), nil
}

// exitsInCallers finds the direct calls of name and the exit after each.
func (b *Binary) exitsInCallers(name string, plan ExitPlan) ([]Exit, error) {
	entry, _, err := b.locate(name)
	if err != nil {
		return nil, err
	}
	sites, err := b.callSites(name, entry)
	if err != nil {
		return nil, err
	}
	if len(sites) == 0 {
		return nil, errors.New("no direct call of it")
	}
	var exits []Exit
	for _, cs := range sites {
		fn, i := cs.fn, cs.i
		s, tail, err := fn.walkFrom(i, plan.CrossCalls)
		if err != nil {
			return nil, fmt.Errorf("after its call at %#x in %s: %w", fn.insns[i].pc, fn.name, err)
		}
		switch {
		case !tail:
			exits = append(exits, fn.exit(s))
		case plan.Follow[fn.name] != "" && b.followable(plan.Follow[fn.name]):
			f, err := b.Func(plan.Follow[fn.name])
			if err != nil {
				return nil, err
			}
			exits = append(exits, Exit{Func: f.Name, Addr: f.EntryProbeAddr, Insn: f.EntryProbeInsn, Emulated: true})
		default:
			// The caller returns right after: its RET, on this path only.
			exits = append(exits, fn.exit(s))
		}
	}
	return dedupExits(exits), nil
}

// followable: the function is there, its entry probe emulated.
func (b *Binary) followable(name string) bool {
	f, err := b.Func(name)
	return err == nil && f.EntryProbeCheap
}

func dedupExits(exits []Exit) []Exit {
	sort.Slice(exits, func(i, j int) bool { return exits[i].Addr < exits[j].Addr })
	out := exits[:0]
	for i, e := range exits {
		if i == 0 || e.Addr != exits[i-1].Addr {
			out = append(out, e)
		}
	}
	return out
}

// insnClass is what an instruction does to the flow of control.
type insnClass uint8

const (
	flowNext      insnClass = iota // falls through
	flowCallInd                    // indirect call, then falls through
	flowCall                       // direct call, then falls through
	flowCallNoRet                  // direct call of a function that never returns (panics, throw)
	flowJcc                        // direct conditional jump
	flowJmp                        // direct jump
	flowRet
	flowJmpInd // indirect jump: jump table or tail call, targets unknown
	flowStop   // INT3, UD2, HLT: does not continue
)

// insn is what the analysis keeps of an instruction (an x86asm.Inst
// is ten times its size: whole functions are decoded).
type insn struct {
	pc       uint64
	target   uint64 // direct jumps and calls
	ripRef   uint64 // the address a RIP-relative operand refers to, 0 if none
	n        uint8
	class    insnClass
	emulated bool // the kernel emulates it for a uprobe on every supported kernel
}

// insnCost bounds the bytes decoding takes per byte of code.
const insnCost = 32

// fnCode is one function disassembled from its pclntab entry.
type fnCode struct {
	name       string
	entry, end uint64
	code       []byte
	insns      []insn
}

// index returns the instruction starting at pc.
func (fn *fnCode) index(pc uint64) (int, bool) {
	i := sort.Search(len(fn.insns), func(i int) bool { return fn.insns[i].pc >= pc })
	return i, i < len(fn.insns) && fn.insns[i].pc == pc
}

// text is instruction i disassembled (Intel syntax).
func (fn *fnCode) text(i int) string {
	in := fn.insns[i]
	op, err := x86asm.Decode(fn.code[in.pc-fn.entry:], 64)
	if err != nil {
		return "?"
	}
	return x86asm.IntelSyntax(op, in.pc, nil)
}

// emulatedEverywhere reports whether every kernel tracerd supports
// emulates a uprobe on in rather than single-stepping it:
// arch/x86/kernel/uprobes.c handles JMP/Jcc/CALL rel (without an operand
// size prefix), PUSH of a register and 0x66* 0x90 NOPs itself since long
// before 5.15; multi-byte NOPs (0f 1f) only since 6.16, so they count as
// ordinary instructions here.
func emulatedEverywhere(in x86asm.Inst, code []byte) bool {
	if isCheapJcc(in) || isPushReg(in) {
		return noOpsize(in)
	}
	switch in.Op {
	case x86asm.JMP, x86asm.CALL:
		_, rel := in.Args[0].(x86asm.Rel)
		return rel && noOpsize(in)
	case x86asm.NOP:
		for _, c := range code[:in.Len-1] {
			if c != 0x66 {
				return false
			}
		}
		return code[in.Len-1] == 0x90
	}
	return false
}

// noOpsize: the kernel refuses to emulate branches with a 0x66 prefix.
func noOpsize(in x86asm.Inst) bool {
	for _, p := range in.Prefix {
		if p&0xff == 0x66 {
			return false
		}
	}
	return true
}

// code disassembles the named function (bounds as Func has them).
func (b *Binary) code(name string) (*fnCode, error) {
	entry, size, err := b.locate(name)
	if err != nil {
		return nil, err
	}
	return b.codeAt(name, entry, size)
}

func (b *Binary) codeAt(name string, entry, size uint64) (*fnCode, error) {
	if size > maxFuncSize {
		return nil, fmt.Errorf("%s: %d bytes, larger than any compiled Go function: %w", name, size, ErrUnprovable)
	}
	if err := b.bud.alloc(size*insnCost, "disassembling "+name); err != nil {
		return nil, err
	}
	code, err := b.readCode(entry, size)
	if err != nil {
		return nil, err
	}
	return decodeFn(name, entry, code, b.noReturn)
}

// decodeFn disassembles code, a function's from entry, all of it: a byte
// that does not decode makes where instructions begin past it unknown.
func decodeFn(name string, entry uint64, code []byte, noReturn func(uint64) bool) (*fnCode, error) {
	fn := &fnCode{name: name, entry: entry, end: entry + uint64(len(code)), code: code}
	for i := 0; i < len(code); {
		in, err := x86asm.Decode(code[i:], 64)
		pc := entry + uint64(i)
		if err != nil || in.Len == 0 {
			return nil, fmt.Errorf("%s: undecodable instruction at %#x: %w", name, pc, ErrUnprovable)
		}
		d := insn{pc: pc, n: uint8(in.Len), emulated: emulatedEverywhere(in, code[i:])}
		for _, a := range in.Args {
			if m, ok := a.(x86asm.Mem); ok && m.Base == x86asm.RIP {
				d.ripRef = uint64(int64(pc) + int64(in.Len) + m.Disp)
			}
		}
		switch in.Op {
		case x86asm.RET:
			d.class = flowRet
		case x86asm.INT, x86asm.UD1, x86asm.UD2, x86asm.HLT:
			d.class = flowStop
		case x86asm.CALL, x86asm.JMP:
			d.class = flowCallInd
			if in.Op == x86asm.JMP {
				d.class = flowJmpInd
			}
			if rel, ok := in.Args[0].(x86asm.Rel); ok {
				d.target = uint64(int64(pc) + int64(in.Len) + int64(rel))
				d.class = flowCall
				if in.Op == x86asm.JMP {
					d.class = flowJmp
				} else if noReturn(d.target) {
					d.class = flowCallNoRet
				}
			}
		default:
			if isCheapJcc(in) {
				d.class = flowJcc
				d.target = uint64(int64(pc) + int64(in.Len) + int64(in.Args[0].(x86asm.Rel)))
			} else if isBranch(in.Op) {
				d.class = flowJmpInd // JCXZ, LOOP and the like: not in compiled Go
			}
		}
		fn.insns = append(fn.insns, d)
		i += in.Len
	}
	return fn, nil
}

// noReturn reports whether the function at entry never returns to its
// caller: what the compiler calls for panics and fatal errors, and
// runtime.morestack (the caller restarts from its entry). The code after
// such a call belongs to another path.
func (b *Binary) noReturn(entry uint64) bool {
	ft := b.funcs
	i := sort.Search(ft.nfunc, func(i int) bool { return ft.entry(i) > entry }) - 1
	if i < 0 || ft.entry(i) != entry {
		return false
	}
	name := ft.name(i)
	for _, p := range []string{"runtime.panic", "runtime.goPanic", "runtime.gopanic", "runtime.throw", "runtime.fatal", "runtime.morestack", "runtime.sigpanic"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

func isBranch(op x86asm.Op) bool {
	switch op {
	case x86asm.JCXZ, x86asm.JECXZ, x86asm.JRCXZ, x86asm.LOOP, x86asm.LOOPE, x86asm.LOOPNE,
		x86asm.LJMP, x86asm.LCALL, x86asm.LRET, x86asm.IRET, x86asm.IRETD, x86asm.IRETQ,
		x86asm.SYSCALL, x86asm.SYSRET, x86asm.SYSENTER, x86asm.SYSEXIT:
		return true
	}
	return false
}

// callsTo returns the direct calls of entry.
func (fn *fnCode) callsTo(entry uint64) []int {
	var out []int
	for i, in := range fn.insns {
		if in.class == flowCall && in.target == entry {
			out = append(out, i)
		}
	}
	return out
}

// successors of instruction i inside fn; leaves reports a way out other
// than a RET (a jump outside the function, or one whose target is unknown).
func (fn *fnCode) successors(i int) (next []int, leaves bool) {
	in := fn.insns[i]
	follow := func(target uint64) {
		if j, ok := fn.index(target); ok {
			next = append(next, j)
		} else {
			leaves = true
		}
	}
	switch in.class {
	case flowRet, flowStop, flowCallNoRet:
	case flowJmpInd:
		leaves = true
	case flowJmp:
		if in.target == fn.entry {
			break // the restart after runtime.morestack: a call anew
		}
		follow(in.target)
	case flowJcc:
		follow(in.target)
		fallthrough
	default:
		if i+1 < len(fn.insns) {
			next = append(next, i+1)
		}
	}
	return next, leaves
}

// walk visits what runs after the instructions from (not from
// themselves), not going past stop; it returns the RETs reached and
// whether a way out other than a RET was.
func (fn *fnCode) walk(from []int, stop map[int]bool) (rets []int, leaves bool, seen map[int]bool) {
	seen = map[int]bool{}
	var todo []int
	for _, i := range from {
		next, out := fn.successors(i)
		leaves = leaves || out
		todo = append(todo, next...)
	}
	for len(todo) > 0 {
		i := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if seen[i] {
			continue
		}
		seen[i] = true
		if stop[i] {
			continue
		}
		if fn.insns[i].class == flowRet {
			rets = append(rets, i)
		}
		next, out := fn.successors(i)
		leaves = leaves || out
		todo = append(todo, next...)
	}
	return rets, leaves, seen
}

// reaches reports whether running on from any of from can reach any of to.
func (fn *fnCode) reaches(from, to []int) bool {
	_, _, seen := fn.walk(from, nil)
	for _, t := range to {
		if seen[t] {
			return true
		}
	}
	return false
}

// unguardedReturns are the RETs reachable from the entry without passing
// any of gates (the work's call, or an exit): paths that return without
// the work (each keeps a RET probe). A way out other than a RET on such a path makes the plan fail:
// a call ending there would go unseen.
func (fn *fnCode) unguardedReturns(gates []int) ([]Exit, error) {
	stop := map[int]bool{}
	for _, g := range gates {
		stop[g] = true
	}
	start := []int{0}
	if stop[0] {
		return nil, nil
	}
	rets, leaves, _ := fn.walk(start, stop)
	if fn.insns[0].class == flowRet {
		rets = append(rets, 0)
	}
	if leaves {
		return nil, fmt.Errorf("%s can leave without RET (a tail jump) before its work is done", fn.name)
	}
	var out []Exit
	for _, r := range rets {
		out = append(out, fn.exit(r))
	}
	return out, nil
}

// walkFrom follows the straight line after the call at i to the first
// emulated instruction (the exit), passing ordinary instructions and at
// most crossCalls indirect calls. tail: the line ends in a RET first
// (returned as the exit).
func (fn *fnCode) walkFrom(i, crossCalls int) (exit int, tail bool, err error) {
	crossed := 0
	for j := i + 1; j < len(fn.insns) && j <= i+maxExitWalk; j++ {
		in := fn.insns[j]
		switch {
		case in.emulated:
			return j, false, nil
		case in.class == flowRet:
			return j, true, nil
		case in.class == flowCallInd:
			if crossed++; crossed > crossCalls {
				return 0, false, fmt.Errorf("an indirect call at %#x before any emulated instruction", in.pc)
			}
		case in.class != flowNext:
			return 0, false, fmt.Errorf("%s at %#x before any emulated instruction", fn.text(j), in.pc)
		}
	}
	return 0, false, fmt.Errorf("no emulated instruction within %d after %#x", maxExitWalk, fn.insns[i].pc)
}

// refersTo reports whether in jumps to, calls or addresses (RIP-relative)
// addr.
func (in insn) refersTo(addr uint64) bool {
	return in.ripRef == addr ||
		in.target == addr && (in.class == flowCall || in.class == flowCallNoRet || in.class == flowJmp || in.class == flowJcc)
}

func (fn *fnCode) exit(i int) Exit {
	in := fn.insns[i]
	return Exit{Func: fn.name, Addr: in.pc, Insn: fn.text(i), Emulated: in.class != flowRet}
}

// Bounds of one function's callers' analysis: past them, its calls end
// at its RETs (a binary with that many callers of a probed function, or
// crafted to look so).
const (
	maxCallerCode = 4 << 20 // bytes of callers disassembled
	maxCallSites  = 1024
)

// callSite is a direct call of a function: instruction i of fn.
type callSite struct {
	fn *fnCode
	i  int
}

// callerScan is what the scan found for one function: its direct calls,
// or why its callers cannot all be known.
type callerScan struct {
	sites   []callSite
	err     error
	decoded uint64 // bytes of callers disassembled for it
}

// ScanCallers finds the direct calls of the named functions in one pass
// over the binary (Exits with a Callers plan then uses it): scanning is
// the costly part, ≈ 2 ns a byte of code.
func (b *Binary) ScanCallers(names ...string) error {
	entries := map[uint64]string{}
	for _, name := range names {
		if entry, _, err := b.locate(name); err == nil {
			entries[entry] = name
		}
	}
	scans, err := b.scanCallers(entries)
	if err != nil {
		return err
	}
	if b.callers == nil {
		b.callers = map[string]*callerScan{}
	}
	for entry, sc := range scans {
		b.callers[entries[entry]] = sc
	}
	return nil
}

// callSites finds every direct call of the function at entry, and fails
// if its address is used any other way (see scanCallers).
func (b *Binary) callSites(name string, entry uint64) ([]callSite, error) {
	sc := b.callers[name]
	if sc == nil {
		scans, err := b.scanCallers(map[uint64]string{entry: name})
		if err != nil {
			return nil, err
		}
		sc = scans[entry]
	}
	return sc.sites, sc.err
}

// scanCallers finds the direct calls of the functions at entries, and
// for each fails if its address is used any other way: a RIP-relative
// reference to it in code other than a CALL (a function value being
// made, a tail jump) or its own restart after stack growth, or its
// address anywhere in the data. An error returned is the budget's.
func (b *Binary) scanCallers(entries map[uint64]string) (map[uint64]*callerScan, error) {
	ft := b.funcs
	out := map[uint64]*callerScan{}
	lo, hi := ^uint64(0), uint64(0) // a cheap test before the map's
	for e := range entries {
		out[e] = &callerScan{}
		lo, hi = min(lo, e), max(hi, e)
	}
	decoded := map[int]*fnCode{}
	for _, p := range b.elf.Progs {
		if p.Type != elf.PT_LOAD || p.Filesz == 0 {
			continue
		}
		data, err := b.segmentData(p)
		if err != nil {
			return nil, err
		}
		if data == nil {
			continue
		}
		if p.Flags&elf.PF_X == 0 {
			for entry, sc := range out {
				if at, ok := dataRef(data, p.Vaddr, entry); ok && sc.err == nil {
					sc.err = fmt.Errorf("its address is in the data at %#x (a function value or method table): calls through it would go unseen", at)
				}
			}
			continue
		}
		for off := 0; off+4 <= len(data); off++ {
			if off%(1<<20) == 0 {
				if err := b.bud.tick("scanning for references"); err != nil {
					return nil, err
				}
			}
			end := p.Vaddr + uint64(off) + 4
			entry := uint64(int64(end) + int64(int32(binary.LittleEndian.Uint32(data[off:]))))
			if entry < lo || entry > hi {
				continue
			}
			sc := out[entry]
			if sc == nil || sc.err != nil {
				continue
			}
			// A displacement ending at end refers to entry: find the
			// instruction it is in.
			idx := sort.Search(ft.nfunc, func(i int) bool { return ft.entry(i) > end-4 }) - 1
			if idx < 0 || end-4 >= ft.entry(idx+1) {
				sc.err = fmt.Errorf("code outside any Go function refers to it at %#x", end-4)
				continue
			}
			fn := decoded[idx]
			if fn == nil {
				e := ft.entry(idx)
				if sc.decoded += ft.entry(idx+1) - e; sc.decoded > maxCallerCode {
					sc.err = fmt.Errorf("its callers hold more than %d bytes of code", maxCallerCode)
					continue
				}
				if fn, err = b.codeAt(ft.name(idx), e, ft.entry(idx+1)-e); errors.Is(err, ErrBudget) {
					return nil, err
				} else if err != nil {
					sc.err = err
					continue
				}
				decoded[idx] = fn
			}
			k := sort.Search(len(fn.insns), func(k int) bool { return fn.insns[k].pc > end-4 }) - 1
			in := fn.insns[k]
			switch {
			case in.pc+uint64(in.n) != end:
				// four bytes inside an instruction that happen to match
			case !in.refersTo(entry):
				// a displacement from a register, not an address
			case in.class == flowCall && in.target == entry:
				if sc.sites = append(sc.sites, callSite{fn, k}); len(sc.sites) > maxCallSites {
					sc.err = fmt.Errorf("more than %d calls of it", maxCallSites)
				}
			case in.class == flowJmp && in.target == entry && fn.entry == entry:
				// its own restart after runtime.morestack
			default:
				sc.err = fmt.Errorf("%s refers to it at %#x (%s): calls through that would go unseen", fn.name, in.pc, fn.text(k))
			}
		}
	}
	r := &relocReader{b: b}
	for entry, sc := range out {
		if rs := r.relocsWithAddend(entry); len(rs) > 0 && sc.err == nil {
			sc.err = fmt.Errorf("a relocation puts its address at %#x: calls through it would go unseen", rs[0])
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	return out, nil
}

// dataRef finds entry as an 8-byte word (a function value, an itab's
// method) in a data segment at vaddr. Method tables, which hold offsets
// from runtime.text, are not searched: an itab built from one at run time
// (a type assertion) for a type never converted to that interface in the
// code is what calls through them, which compiled Go does not do for the
// functions probed this way.
func dataRef(data []byte, vaddr, entry uint64) (uint64, bool) {
	for off := 0; off+8 <= len(data); off += 8 {
		if binary.LittleEndian.Uint64(data[off:]) == entry {
			return vaddr + uint64(off), true
		}
	}
	return 0, false
}
