package goinspect

import (
	"bytes"
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

// probedFuncs must be found in every test binary, stripped or not.
var probedFuncs = []string{
	"runtime.stopTheWorldWithSema",
	"runtime.startTheWorldWithSema",
	"encoding/json.Marshal",
	"net/http.serverHandler.ServeHTTP",
}

type variant struct {
	name      string
	toolchain string
	args      []string
	stripped  bool
	external  bool // needs a C linker
	pairOf    string
}

var variants = []variant{
	{name: "local", toolchain: "local"},
	{name: "local-stripped", toolchain: "local", args: []string{"-ldflags=-s -w"}, stripped: true, pairOf: "local"},
	{name: "local-pie-external", toolchain: "local", args: []string{"-buildmode=pie", "-ldflags=-linkmode=external"}, external: true},
	{name: "local-pie-external-stripped", toolchain: "local", args: []string{"-buildmode=pie", "-ldflags=-s -w -linkmode=external"}, stripped: true, external: true, pairOf: "local-pie-external"},
	{name: olderToolchain, toolchain: olderToolchain},
	{name: olderToolchain + "-stripped", toolchain: olderToolchain, args: []string{"-ldflags=-s -w"}, stripped: true, pairOf: olderToolchain},
}

func (v variant) build(t *testing.T) string {
	t.Helper()
	if v.toolchain != "local" {
		needModuleProxy(t, v.toolchain)
	}
	if v.external {
		if _, err := exec.LookPath("gcc"); err != nil {
			t.Skip("external linking needs gcc:", err)
		}
	}
	return buildServer(t, v.toolchain, v.args...)
}

func findVariant(name string) variant {
	for _, v := range variants {
		if v.name == name {
			return v
		}
	}
	panic(name)
}

func decodeAt(t *testing.T, file []byte, off uint64) x86asm.Inst {
	t.Helper()
	in, err := x86asm.Decode(file[off:], 64)
	if err != nil {
		t.Fatalf("decoding at file offset %#x: %v", off, err)
	}
	return in
}

// checkFunc checks the probe locations of fn by decoding the file itself.
func checkFunc(t *testing.T, file []byte, fn Func) {
	t.Helper()
	if fn.Entry == 0 || fn.Size == 0 {
		t.Fatalf("%s: entry %#x size %d", fn.Name, fn.Entry, fn.Size)
	}
	if !fn.EntryProbeCheap {
		t.Errorf("%s: no cheap entry probe found (insn %q)", fn.Name, fn.EntryProbeInsn)
	}
	if fn.EntryProbe < fn.EntryOffset || fn.EntryProbe >= fn.EntryOffset+fn.Size {
		t.Errorf("%s: EntryProbe %#x outside [%#x,+%d)", fn.Name, fn.EntryProbe, fn.EntryOffset, fn.Size)
	}
	if in := decodeAt(t, file, fn.EntryProbe); !isCheapJcc(in) && !isPushReg(in) {
		t.Errorf("%s: EntryProbe %#x decodes to %v, want a Jcc or PUSH reg", fn.Name, fn.EntryProbe, in)
	}
	if len(fn.Returns) == 0 {
		t.Errorf("%s: no RET found", fn.Name)
	}
	for _, r := range fn.Returns {
		if in := decodeAt(t, file, r); in.Op != x86asm.RET {
			t.Errorf("%s: Returns offset %#x decodes to %v", fn.Name, r, in)
		}
	}
}

func TestOpenNotGo(t *testing.T) {
	for _, p := range []string{"/bin/ls", "/bin/sh"} {
		if _, err := os.Stat(p); err != nil {
			continue
		}
		b, err := Open(p)
		if !errors.Is(err, ErrNotGo) {
			t.Errorf("Open(%s) = %v, %v; want ErrNotGo", p, b, err)
		}
	}
	txt := filepath.Join(t.TempDir(), "script")
	os.WriteFile(txt, []byte("#!/bin/sh\necho hi\n"), 0o755)
	if _, err := Open(txt); !errors.Is(err, ErrNotGo) {
		t.Errorf("Open(script) = %v; want ErrNotGo", err)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing")); err == nil || errors.Is(err, ErrNotGo) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open(missing) = %v; want a not-exist error", err)
	}
}

func TestBinaries(t *testing.T) {
	entries := map[string]map[string]Func{}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			path := v.build(t)
			want := toolchainVersion(t, v.toolchain)
			file, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if b.GoVersion != want {
				t.Errorf("GoVersion %q, want %q", b.GoVersion, want)
			}
			if b.Stripped != v.stripped || b.HasDWARF != !v.stripped {
				t.Errorf("Stripped %v HasDWARF %v, built stripped=%v", b.Stripped, b.HasDWARF, v.stripped)
			}
			wantSyms, wantOffs := "symtab", "dwarf"
			if v.stripped {
				wantSyms, wantOffs = "pclntab", "table"
			}
			if b.SymbolsFrom != wantSyms || b.OffsetsFrom != wantOffs {
				t.Errorf("SymbolsFrom %q OffsetsFrom %q, want %q %q", b.SymbolsFrom, b.OffsetsFrom, wantSyms, wantOffs)
			}
			if v.stripped && b.TextStartFrom != "moduledata" {
				t.Errorf("TextStart %#x from %q, want from moduledata", b.TextStart, b.TextStartFrom)
			}

			// Offsets: equal to DWARF's (the unstripped build's for a stripped one).
			dwarfPath := path
			if v.stripped {
				dwarfPath = findVariant(v.pairOf).build(t)
			}
			if want := dwarfOffsetsOf(t, dwarfPath); b.Offsets != want {
				t.Errorf("Offsets (%s) %+v\nDWARF %+v", b.OffsetsFrom, b.Offsets, want)
			}
			if tab, ok := tableOffsets(b.GoVersion); !ok || tab != b.Offsets {
				t.Errorf("table row for %s: %+v (found %v), binary %+v", b.GoVersion, tab, ok, b.Offsets)
			}
			// Whether a connection was hijacked: DWARF only (the table has
			// no row for it), never at 0 (where the BPF side reads
			// "unknown").
			if h := b.Hijack; (h != nil) == v.stripped || (h != nil && (h.ConnHijackedv == 0 || h.ResponseConn != 0)) {
				t.Errorf("Hijack %+v, stripped %v (response.conn is its first field)", h, v.stripped)
			}

			got := map[string]Func{}
			for _, name := range probedFuncs {
				fn, err := b.Func(name)
				if err != nil {
					t.Errorf("Func(%s): %v", name, err)
					continue
				}
				checkFunc(t, file, fn)
				got[name] = fn
				t.Logf("%s entry %#x size %d probe %#x (%s) rets %d", name, fn.Entry, fn.Size, fn.EntryProbe, fn.EntryProbeInsn, len(fn.Returns))
			}
			if _, err := b.Func("main.noSuchFunction"); !errors.Is(err, ErrNoSymbol) {
				t.Errorf("Func(absent) = %v, want ErrNoSymbol", err)
			}
			entries[v.name] = got

			// Stripped and unstripped builds have the same layout: same
			// entries, probes and RETs.
			if v.pairOf != "" {
				other, ok := entries[v.pairOf]
				if !ok {
					return
				}
				for name, fn := range got {
					o := other[name]
					if fn.Entry != o.Entry || fn.EntryProbe != o.EntryProbe || !equalU64(fn.Returns, o.Returns) {
						t.Errorf("%s: stripped entry %#x probe %#x rets %x; unstripped entry %#x probe %#x rets %x",
							name, fn.Entry, fn.EntryProbe, fn.Returns, o.Entry, o.EntryProbe, o.Returns)
					}
				}
			}
		})
	}
}

// elfSymbol returns a symbol's value as debug/elf reads it.
func elfSymbol(t *testing.T, f *elf.File, name string) uint64 {
	t.Helper()
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range syms {
		if s.Name == name {
			return s.Value
		}
	}
	t.Fatalf("no symbol %s", name)
	return 0
}

func equalU64(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestPclntabMatchesSymtab reads the symbols of unstripped binaries both
// ways: every Go function's entry from the pclntab (with runtime.text found
// without .symtab) must equal the .symtab value.
func TestPclntabMatchesSymtab(t *testing.T) {
	for _, v := range variants {
		if v.stripped {
			continue
		}
		t.Run(v.name, func(t *testing.T) {
			path := v.build(t)
			b, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if b.SymbolsFrom != "symtab" {
				t.Fatalf("symbols from %s: %v", b.SymbolsFrom, b.SymtabErr)
			}
			p := &Binary{Path: path, r: b.r, size: b.size, elf: b.elf, bud: defaultLimits.budgetFor(b.size)}
			t1, err := p.findPclntab()
			if err != nil {
				t.Fatal(err)
			}
			if err := p.loadPclntab(t1); err != nil {
				t.Fatal(err)
			}
			text := elfSymbol(t, b.elf, "runtime.text")
			if p.TextStart != text {
				t.Errorf("TextStart %#x (%s), .symtab runtime.text %#x", p.TextStart, p.TextStartFrom, text)
			}
			n := 0
			for name, s := range b.symtab {
				entry, _, ok := p.lookup(name)
				if !ok {
					continue
				}
				n++
				if s.value != entry {
					t.Errorf("%s: pclntab entry %#x, symtab %#x", name, entry, s.value)
				}
			}
			if n < 1000 {
				t.Errorf("only %d functions compared", n)
			}
			t.Logf("%d functions agree; runtime.text %#x from %s", n, p.TextStart, p.TextStartFrom)
		})
	}
}

// TestFileOffsets checks the program-header conversion against the section
// headers, for a PIE built by an external linker (vaddr != file offset for
// its data segment).
func TestFileOffsets(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			path := v.build(t)
			b, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			for _, s := range b.elf.Sections {
				if s.Flags&elf.SHF_ALLOC == 0 || s.Type == elf.SHT_NOBITS || s.Size == 0 {
					continue
				}
				off, err := b.FileOffset(s.Addr)
				if err != nil {
					continue // e.g. sections outside PT_LOAD
				}
				if off != s.Offset {
					t.Errorf("%s: FileOffset(%#x) = %#x, section offset %#x", s.Name, s.Addr, off, s.Offset)
				}
			}
		})
	}
}

// TestServeHTTPABI verifies by disassembly the ABIInternal register
// assignment of net/http.serverHandler.ServeHTTP(sh, rw, req) documented on
// Offsets: RAX = sh.srv, RBX/RCX = rw (itab, data), RDI = req.
func TestServeHTTPABI(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			b, err := Open(v.build(t))
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			checkServeHTTPABI(t, b)
		})
	}
}

func checkServeHTTPABI(t *testing.T, b *Binary) {
	fn, err := b.Func("net/http.serverHandler.ServeHTTP")
	if err != nil {
		t.Fatal(err)
	}
	code, err := b.readCode(fn.Entry, fn.Size)
	if err != nil {
		t.Fatal(err)
	}
	type insn struct {
		pc uint64
		in x86asm.Inst
	}
	var insns []insn
	for i := 0; i < len(code); {
		in, err := x86asm.Decode(code[i:], 64)
		if err != nil {
			i++
			continue
		}
		insns = append(insns, insn{fn.Entry + uint64(i), in})
		i += in.Len
	}

	// 1. The morestack path: spills of the argument registers, CALL
	// runtime.morestack_noctxt, JMP back to the entry.
	jmp := -1
	for i, x := range insns {
		if rel, ok := x.in.Args[0].(x86asm.Rel); ok && x.in.Op == x86asm.JMP &&
			uint64(int64(x.pc)+int64(x.in.Len)+int64(rel)) == fn.Entry {
			jmp = i
		}
	}
	// Skip the reloads (MOV reg, [RSP+d]) after the CALL.
	call := jmp - 1
	for call >= 0 && insns[call].in.Op == x86asm.MOV {
		if m, ok := insns[call].in.Args[1].(x86asm.Mem); !ok || m.Base != x86asm.RSP {
			break
		}
		call--
	}
	if call < 1 || insns[call].in.Op != x86asm.CALL {
		t.Fatalf("no spill; CALL morestack; JMP entry sequence found")
	}
	var spilled []string
	for i := call - 1; i >= 0; i-- {
		in := insns[i].in
		m, ok := in.Args[0].(x86asm.Mem)
		r, rok := in.Args[1].(x86asm.Reg)
		if in.Op != x86asm.MOV || !ok || !rok || m.Base != x86asm.RSP {
			break
		}
		spilled = append([]string{r.String() + "@" + strconv.FormatInt(m.Disp, 10)}, spilled...)
	}
	if got, want := strings.Join(spilled, " "), "RAX@8 RBX@16 RCX@24 RDI@32"; got != want {
		t.Errorf("ServeHTTP spills its arguments as %q, want %q (receiver srv, rw itab, rw data, req)", got, want)
	}

	// 2. The body reads req.RequestURI's and req.Method's lengths through RDI.
	lens := map[int64]bool{}
	for _, x := range insns {
		for _, a := range x.in.Args {
			if m, ok := a.(x86asm.Mem); ok && m.Base == x86asm.RDI && m.Index == 0 {
				lens[m.Disp] = true
			}
		}
	}
	o := b.Offsets
	for _, d := range []uint64{o.RequestRequestURI + StringLen, o.RequestMethod + StringLen} {
		if !lens[int64(d)] {
			t.Errorf("no access to [RDI+%d] in ServeHTTP (RDI accesses: %v)", d, lens)
		}
	}
}

// TestUnknownVersion patches the Go version in a stripped binary's
// buildinfo to one the table does not know: Open must fail with
// ErrNoOffsets.
func TestUnknownVersion(t *testing.T) {
	path := findVariant("local-stripped").build(t)
	v := toolchainVersion(t, "local")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fake := "go1.99" + strings.TrimPrefix(v, v[:len("go1.NN")])
	if len(fake) != len(v) || !strings.HasPrefix(v, "go1.") {
		t.Skipf("cannot forge a version of the length of %q", v)
	}
	n := bytes.Count(data, []byte(v))
	if n == 0 {
		t.Fatalf("%q not found in the binary", v)
	}
	data = bytes.ReplaceAll(data, []byte(v), []byte(fake))
	patched := filepath.Join(t.TempDir(), "server")
	if err := os.WriteFile(patched, data, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := Open(patched)
	if !errors.Is(err, ErrNoOffsets) {
		t.Fatalf("Open = %+v, %v; want ErrNoOffsets", b, err)
	}
	t.Log(err)
}

func TestGoMinor(t *testing.T) {
	for v, want := range map[string]int{
		"go1.26.8": 26, "go1.22rc1": 22, "go1.21.0 X:boringcrypto": 21, "go1.18": 18, "go1.9": 9,
		"devel go1.27-abcdef": -1, "": -1, "go2": -1, "go1.x": -1,
	} {
		n, ok := goMinor(v)
		if !ok {
			n = -1
		}
		if n != want {
			t.Errorf("goMinor(%q) = %d, want %d", v, n, want)
		}
	}
}
