package goinspect

import (
	"golang.org/x/arch/x86/x86asm"
)

type disasmResult struct {
	probe     uint64 // virtual address of the cheap entry-probe instruction
	probeOK   bool
	probeInsn string

	rets      []uint64 // virtual addresses of RET instructions
	tailJumps []uint64 // direct JMPs leaving the function

	// undecodable: x86asm could not decode the byte at undecodableAt;
	// the sweep stopped there.
	undecodable   bool
	undecodableAt uint64
	// entry and starts record every instruction start the sweep found
	// (starts[i]: entry+i), to check each probe address against.
	entry  uint64
	starts []bool
}

// isInsn reports whether the linear sweep found an instruction at a.
func (r *disasmResult) isInsn(a uint64) bool {
	return a >= r.entry && a-r.entry < uint64(len(r.starts)) && r.starts[a-r.entry]
}

// maxPrologue bounds how many instructions from the entry are searched
// for the entry probe. The longest Go prologue (frames larger than
// StackBig) is MOV R12,RSP; SUB R12,$n; JB; CMP R12,16(R14); JBE.
const maxPrologue = 6

// isCheapJcc reports whether in is a conditional jump the kernel emulates
// for uprobes (Jcc rel8/rel32; JCXZ/JECXZ/JRCXZ and LOOP are not).
func isCheapJcc(in x86asm.Inst) bool {
	switch in.Op {
	case x86asm.JA, x86asm.JAE, x86asm.JB, x86asm.JBE, x86asm.JE, x86asm.JNE,
		x86asm.JG, x86asm.JGE, x86asm.JL, x86asm.JLE, x86asm.JO, x86asm.JNO,
		x86asm.JP, x86asm.JNP, x86asm.JS, x86asm.JNS:
		_, rel := in.Args[0].(x86asm.Rel)
		return rel
	}
	return false
}

// isPushReg reports whether in is PUSH of a 64-bit register (emulated by
// the kernel for uprobes).
func isPushReg(in x86asm.Inst) bool {
	if in.Op != x86asm.PUSH {
		return false
	}
	r, ok := in.Args[0].(x86asm.Reg)
	return ok && r >= x86asm.RAX && r <= x86asm.R15
}

// keepsArgs reports whether a prologue instruction before the probe point
// leaves every ABIInternal argument register (RAX, RBX, RCX, RDI, RSI,
// R8-R11, X0-X14), RSP and R14 (g) unchanged: the stack check's CMP, and
// arithmetic into the scratch registers R12/R13.
func keepsArgs(in x86asm.Inst) bool {
	switch in.Op {
	case x86asm.CMP, x86asm.TEST:
		return true
	case x86asm.LEA, x86asm.MOV, x86asm.SUB, x86asm.ADD:
		r, ok := in.Args[0].(x86asm.Reg)
		return ok && (r == x86asm.R12 || r == x86asm.R13)
	}
	return false
}

func disassemble(code []byte, entry uint64) disasmResult {
	res := disasmResult{entry: entry, starts: make([]bool, len(code))}

	// Entry probe: first cheap instruction of the straight-line prologue.
	for i, n := 0, 0; i < len(code) && n < maxPrologue; n++ {
		in, err := x86asm.Decode(code[i:], 64)
		if err != nil {
			break
		}
		if isCheapJcc(in) || isPushReg(in) {
			res.probe, res.probeOK = entry+uint64(i), true
			res.probeInsn = x86asm.IntelSyntax(in, entry+uint64(i), nil)
			break
		}
		if !keepsArgs(in) {
			break
		}
		i += in.Len
	}

	// Linear sweep for RETs. Go's text holds only instructions, with INT3
	// padding between functions, so a linear sweep from the function's
	// start is exact. It stops at a byte it cannot decode: resuming on the
	// next byte would be a guess, and a probe inside an instruction
	// crashes the process.
	end := entry + uint64(len(code))
	for i := 0; i < len(code); {
		in, err := x86asm.Decode(code[i:], 64)
		pc := entry + uint64(i)
		if err != nil || in.Len == 0 {
			res.undecodable, res.undecodableAt = true, pc
			break
		}
		res.starts[i] = true
		switch in.Op {
		case x86asm.RET:
			res.rets = append(res.rets, pc)
		case x86asm.JMP:
			if rel, ok := in.Args[0].(x86asm.Rel); ok {
				target := uint64(int64(pc) + int64(in.Len) + int64(rel))
				if target < entry || target >= end {
					res.tailJumps = append(res.tailJumps, pc)
				}
			}
		}
		i += in.Len
	}
	return res
}
