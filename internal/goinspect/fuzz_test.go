package goinspect

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/arch/x86/x86asm"
)

// fuzzLimits are the default limits with a smaller base (so that an input
// costing more than its size justifies shows) and a shorter timeout (so
// that a slow one shows quickly).
var fuzzLimits = limits{memPerByte: defaultLimits.memPerByte, memBase: 16 << 20, timeout: 2 * time.Second}

// fuzzFuncs are looked up in every input inspect accepts.
var fuzzFuncs = []string{"runtime.stopTheWorldWithSema", "runtime.startTheWorldWithSema", "main.main", "os.Exit", "runtime.morestack.abi0"}

// buildTiny builds a tiny Go program with the installed toolchain.
func buildTiny(tb testing.TB, args ...string) string {
	tb.Helper()
	dir := filepath.Join(buildDir, "tiny")
	out := filepath.Join(dir, fmt.Sprintf("tiny-%x", sha256.Sum256([]byte(strings.Join(args, " ")))))
	if _, err := os.Stat(out); err == nil {
		return out
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	for name, content := range map[string]string{
		"main.go": "package main\n\nimport \"os\"\n\nfunc main() { os.Exit(len(os.Args) - 1) }\n",
		"go.mod":  "module example.com/tiny\n\ngo 1.18\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	cmd := exec.Command(goCmd(), append(append([]string{"build", "-o", out}, args...), ".")...)
	cmd.Dir = dir
	cmd.Env = toolchainEnv("local")
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build %v: %v\n%s", args, err, b)
	}
	return out
}

// fuzzBase is an executable FuzzInspect edits, and the regions of it an
// edit addresses.
type fuzzBase struct {
	data    []byte
	regions []fuzzRegion
}

type fuzzRegion struct {
	name      string
	off, size uint64
}

var (
	fuzzBasesOnce sync.Once
	fuzzBases     []fuzzBase
)

// loadFuzzBases builds the tiny program unstripped (2 MB), stripped
// (1.4 MB) and unstripped with its DWARF left uncompressed (2.8 MB: edits
// then reach the DWARF structures rather than break zlib streams): real
// Go executables, generated at test time rather than committed.
func loadFuzzBases(tb testing.TB) []fuzzBase {
	fuzzBasesOnce.Do(func() {
		for _, args := range [][]string{nil, {"-ldflags=-s -w"}, {"-ldflags=-compressdwarf=false"}} {
			data, err := os.ReadFile(buildTiny(tb, args...))
			if err != nil {
				tb.Fatal(err)
			}
			fuzzBases = append(fuzzBases, fuzzBase{data: data, regions: fuzzRegions(tb, data)})
		}
	})
	if len(fuzzBases) != 3 {
		tb.Fatal("fuzz bases not built")
	}
	return fuzzBases
}

// fuzzRegions lists the parts of an executable worth editing: its
// headers, the tables goinspect reads, the code it disassembles.
func fuzzRegions(tb testing.TB, data []byte) []fuzzRegion {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		tb.Fatal(err)
	}
	le := binary.LittleEndian
	rs := []fuzzRegion{
		{"file", 0, uint64(len(data))},
		{"ELF header", 0, elf64HeaderSize},
		{"program headers", le.Uint64(data[32:]), uint64(le.Uint16(data[56:])) * elf64PhdrSize},
		{"section headers", le.Uint64(data[40:]), uint64(le.Uint16(data[60:])) * elf64ShdrSize},
	}
	for _, name := range []string{".gopclntab", ".symtab", ".strtab", ".shstrtab", ".go.buildinfo", ".go.module",
		".noptrdata", ".data", ".debug_info", ".debug_abbrev", ".debug_str", ".debug_line", ".text"} {
		if s := f.Section(name); s != nil && s.Type != elf.SHT_NOBITS {
			rs = append(rs, fuzzRegion{name, s.Offset, s.FileSize})
			if name == ".gopclntab" {
				rs = append(rs, fuzzRegion{"pcHeader", s.Offset, 72})
			}
		}
	}
	// The code of functions Func disassembles.
	b, err := inspect(bytes.NewReader(data), int64(len(data)), "base", false, defaultLimits)
	if err != nil {
		tb.Fatal(err)
	}
	for _, fn := range []string{"runtime.stopTheWorldWithSema", "main.main"} {
		entry, size, ok := b.lookup(fn)
		off, err := b.FileOffset(entry)
		if !ok || err != nil {
			tb.Fatalf("%s: %v", fn, err)
		}
		rs = append(rs, fuzzRegion{fn, off, size})
	}
	return rs
}

// edit applies an edit script to a copy of one of the bases. Byte 0
// picks the base; then each edit is a region (a byte, modulo the number
// of regions; 0xff: truncate), an offset in it (4 bytes, modulo its size),
// a length n (a byte) and n bytes to write there.
func edit(bases []fuzzBase, script []byte) []byte {
	if len(script) == 0 {
		return bases[0].data
	}
	base := bases[int(script[0])%len(bases)]
	data := bytes.Clone(base.data)
	for p := script[1:]; len(p) >= 6; {
		which, off, n := p[0], uint64(binary.LittleEndian.Uint32(p[1:])), int(p[5])
		p = p[6:]
		n = min(n, len(p))
		patch := p[:n]
		p = p[n:]
		if which == 0xff {
			data = data[:off%uint64(len(data)+1)]
			continue
		}
		r := base.regions[int(which)%len(base.regions)]
		if r.size == 0 {
			continue
		}
		at := r.off + off%r.size
		if at < uint64(len(data)) {
			copy(data[at:], patch)
		}
	}
	return data
}

// u32 encodes an edit's offset.
func u32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

// FuzzInspect inspects real Go executables changed by a fuzzed edit
// script (so that an input is tens of bytes: the fuzzing engine parses
// each input as Go source per call, which takes seconds for a
// megabyte-sized one). Inspecting must not panic (inspect, not Open, so
// that a panic of the standard library's parsers is not recovered), must
// allocate no more than twice its budget (twice: for what the budget does
// not count, debug/elf's and buildinfo's small structures) and end in
// bounded time; and every probe offset Func or Exits returns must decode,
// in the edited file itself, to what it claims.
//
//	go test -run XXX -fuzz FuzzInspect -fuzztime 2m ./internal/goinspect
func FuzzInspect(f *testing.F) {
	bases := loadFuzzBases(f)
	f.Add([]byte{0})                                               // unstripped as built
	f.Add([]byte{1})                                               // stripped as built
	f.Add([]byte{2})                                               // DWARF uncompressed
	f.Add(append([]byte{1, 4, 8, 0, 0, 0, 4}, u32(0x7fffffff)...)) // 2^31-1 functions
	f.Add([]byte{0, 0xff, 0, 0, 0x10, 0, 0})                       // truncated at 1 MiB
	f.Fuzz(func(t *testing.T, script []byte) {
		data := edit(bases, script)
		size := int64(len(data))
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		start := time.Now()
		b, err := inspect(bytes.NewReader(data), size, "fuzz", false, fuzzLimits)
		took := time.Since(start)
		runtime.ReadMemStats(&m1)
		allowed := fuzzLimits.budgetFor(size).allowed
		if alloc := m1.TotalAlloc - m0.TotalAlloc; alloc > 2*uint64(allowed) {
			t.Errorf("inspecting %d bytes allocated %d, budget %d (err %v)", size, alloc, allowed, err)
		}
		if took > fuzzLimits.timeout+time.Second {
			t.Errorf("inspecting %d bytes took %v (err %v)", size, took, err)
		}
		if err != nil {
			return
		}
		for _, name := range fuzzFuncs {
			runtime.ReadMemStats(&m0)
			fn, err := b.Func(name)
			runtime.ReadMemStats(&m1)
			// The code read and a mark per byte of it, bounded by the file.
			if alloc := m1.TotalAlloc - m0.TotalAlloc; alloc > 3*uint64(size)+1<<20 {
				t.Errorf("Func(%s) allocated %d for a %d-byte file", name, alloc, size)
			}
			if err == nil {
				checkProbes(t, data, fn)
			}
		}
		for _, p := range fuzzExitPlans {
			runtime.ReadMemStats(&m0)
			exits, err := b.Exits(p.fn, p.plan)
			runtime.ReadMemStats(&m1)
			// The text scanned once, a function decoded per reference.
			if alloc := m1.TotalAlloc - m0.TotalAlloc; alloc > 2*uint64(allowed) {
				t.Errorf("Exits(%s) allocated %d for a %d-byte file", p.fn, alloc, size)
			}
			if err == nil {
				for _, e := range exits {
					checkExit(t, b, data, e)
				}
			}
		}
	})
}

// fuzzExitPlans are tried on every input inspect accepts.
var fuzzExitPlans = []struct {
	fn   string
	plan ExitPlan
}{
	{"os.Exit", ExitPlan{Callers: true}},
	{"runtime.startTheWorldWithSema", ExitPlan{Callers: true, CrossCalls: 1}},
	{"main.main", ExitPlan{After: []string{"os.Exit"}}},
}

// checkProbes checks, in the file itself, that every probe offset of fn
// lies inside it and decodes to the instruction it is meant to be.
func checkProbes(t *testing.T, file []byte, fn Func) {
	t.Helper()
	decode := func(off uint64) (x86asm.Inst, bool) {
		if off >= uint64(len(file)) {
			t.Errorf("%s: probe offset %#x past the end of the file", fn.Name, off)
			return x86asm.Inst{}, false
		}
		in, err := x86asm.Decode(file[off:], 64)
		if err != nil {
			t.Errorf("%s: probe offset %#x does not decode: %v", fn.Name, off, err)
			return x86asm.Inst{}, false
		}
		return in, true
	}
	if fn.EntryProbe < fn.EntryOffset || fn.EntryProbe >= fn.EntryOffset+fn.Size {
		t.Errorf("%s: EntryProbe %#x outside [%#x, +%d)", fn.Name, fn.EntryProbe, fn.EntryOffset, fn.Size)
	}
	if in, ok := decode(fn.EntryProbe); ok && fn.EntryProbeCheap && !isCheapJcc(in) && !isPushReg(in) {
		t.Errorf("%s: EntryProbe %#x decodes to %v", fn.Name, fn.EntryProbe, in)
	}
	for _, r := range fn.Returns {
		if r < fn.EntryOffset || r >= fn.EntryOffset+fn.Size {
			t.Errorf("%s: RET %#x outside [%#x, +%d)", fn.Name, r, fn.EntryOffset, fn.Size)
		}
		if in, ok := decode(r); ok && in.Op != x86asm.RET {
			t.Errorf("%s: RET offset %#x decodes to %v", fn.Name, r, in)
		}
	}
}
