package goinspect

import (
	"bytes"
	"compress/zlib"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Binaries crafted from real builds by patching them through debug/elf
// offsets: a traced process's executable is input from whoever started it
// (security review, issue 10).

// patchedCopy writes a copy of the executable at path changed by patch
// (which may return a longer or shorter file) and returns its path.
func patchedCopy(t *testing.T, path string, patch func(data []byte, f *elf.File) []byte) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), filepath.Base(path)+"-patched")
	if err := os.WriteFile(out, patch(data, f), 0o755); err != nil {
		t.Fatal(err)
	}
	return out
}

// section returns the named section or fails.
func section(t *testing.T, f *elf.File, name string) *elf.Section {
	t.Helper()
	s := f.Section(name)
	if s == nil {
		t.Fatalf("no %s section", name)
	}
	return s
}

// symtabEntry returns the file offset of the .symtab entry of name.
func symtabEntry(t *testing.T, data []byte, f *elf.File, name string) uint64 {
	t.Helper()
	symtab := section(t, f, ".symtab")
	strtab := f.Sections[symtab.Link]
	for off := symtab.Offset + elf64SymSize; off+elf64SymSize <= symtab.Offset+symtab.Size; off += elf64SymSize {
		n := strtab.Offset + uint64(binary.LittleEndian.Uint32(data[off:]))
		if end := bytes.IndexByte(data[n:], 0); string(data[n:n+uint64(end)]) == name {
			return off
		}
	}
	t.Fatalf("%s not in .symtab", name)
	return 0
}

// measure runs Open and returns what it allocated and how long it took.
func measure(path string) (b *Binary, alloc uint64, took time.Duration, err error) {
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	start := time.Now()
	b, err = Open(path)
	took = time.Since(start)
	runtime.ReadMemStats(&m1)
	return b, m1.TotalAlloc - m0.TotalAlloc, took, err
}

func fileSize(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return uint64(fi.Size())
}

const serveHTTP = "net/http.serverHandler.ServeHTTP"

// TestSymtabIntoInstruction: a .symtab entry for ServeHTTP moved 3 bytes
// into the function (into its first instruction) made tracerd probe
// there, and the server die of SIGSEGV on its first request. The
// function must be refused, with both addresses said; the others, and an
// unpatched build, still probed.
func TestSymtabIntoInstruction(t *testing.T) {
	for _, name := range []string{"local", olderToolchain} {
		t.Run(name, func(t *testing.T) {
			path := findVariant(name).build(t)
			file, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			good, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer good.Close()
			want, err := good.Func(serveHTTP)
			if err != nil {
				t.Fatal(err)
			}
			checkFunc(t, file, want)

			for _, c := range []struct {
				name  string
				field uint64 // offset in the symbol entry: 8 st_value, 16 st_size
				delta uint64
			}{
				{"start+3", 8, 3},
				{"size+64KiB", 16, 64 << 10},
			} {
				t.Run(c.name, func(t *testing.T) {
					bad := patchedCopy(t, path, func(data []byte, f *elf.File) []byte {
						e := symtabEntry(t, data, f, serveHTTP) + c.field
						binary.LittleEndian.PutUint64(data[e:], binary.LittleEndian.Uint64(data[e:])+c.delta)
						return data
					})
					b, err := Open(bad)
					if err != nil {
						t.Fatal(err)
					}
					defer b.Close()
					if b.SymbolsFrom != "symtab" {
						t.Errorf("SymbolsFrom %q (%v): one bad entry must not discard .symtab", b.SymbolsFrom, b.SymtabErr)
					}
					fn, err := b.Func(serveHTTP)
					if !errors.Is(err, ErrSymbolMismatch) {
						t.Fatalf("Func(%s) = entry %#x probe %#x, %d RETs, %v; want ErrSymbolMismatch", serveHTTP, fn.Entry, fn.EntryProbe, len(fn.Returns), err)
					}
					for _, addr := range []uint64{want.Entry, want.Entry + c.delta} {
						if c.field == 8 && !strings.Contains(err.Error(), fmt.Sprintf("%#x", addr)) {
							t.Errorf("error %q does not say %#x", err, addr)
						}
					}
					if !strings.Contains(err.Error(), serveHTTP) {
						t.Errorf("error %q does not name the function", err)
					}
					t.Log(err)
					for _, other := range probedFuncs {
						if other == serveHTTP {
							continue
						}
						fn, err := b.Func(other)
						if err != nil {
							t.Errorf("Func(%s): %v", other, err)
							continue
						}
						checkFunc(t, file, fn)
					}
				})
			}
		})
	}
}

// TestHugeFunctionCount: a stripped binary whose pclntab header claims
// 2^31-1 functions made Open allocate 200 GB (fatal: out of memory).
// Open must fail, quickly, having allocated less than the file's size.
func TestHugeFunctionCount(t *testing.T) {
	path := patchedCopy(t, findVariant("local-stripped").build(t), func(data []byte, f *elf.File) []byte {
		binary.LittleEndian.PutUint64(data[section(t, f, ".gopclntab").Offset+8:], 0x7fffffff)
		return data
	})
	size := fileSize(t, path)
	b, alloc, took, err := measure(path)
	t.Logf("Open: %v; allocated %d bytes (%.2f× the %d-byte file) in %v", err, alloc, float64(alloc)/float64(size), size, took)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "2147483647 functions") {
		b.Close()
		t.Fatalf("Open = %v; want ErrCorrupt about 2147483647 functions", err)
	}
	if alloc > size {
		t.Errorf("allocated %d bytes, more than the file's %d", alloc, size)
	}
	if took > 2*time.Second {
		t.Errorf("took %v", took)
	}
}

// TestSectionNameBomb: 65535 section headers all named at the start of a
// 1 MiB name made debug/elf copy the name 65535 times (64 GB).
func TestSectionNameBomb(t *testing.T) {
	const n, nameLen = 0xffff, 1 << 20
	path := patchedCopy(t, findVariant("local-stripped").build(t), func(data []byte, f *elf.File) []byte {
		names := uint64(len(data))
		data = append(data, bytes.Repeat([]byte{'A'}, nameLen)...)
		data = append(data, 0)
		for len(data)%8 != 0 {
			data = append(data, 0)
		}
		shoff := uint64(len(data))
		sh := make([]byte, n*elf64ShdrSize) // all named at offset 0: "AAA…"
		s := sh[(n-1)*elf64ShdrSize:]       // the name table, last
		binary.LittleEndian.PutUint32(s[4:], uint32(elf.SHT_STRTAB))
		binary.LittleEndian.PutUint64(s[24:], names)
		binary.LittleEndian.PutUint64(s[32:], nameLen+1)
		data = append(data, sh...)
		binary.LittleEndian.PutUint64(data[40:], shoff)
		binary.LittleEndian.PutUint16(data[60:], n)
		binary.LittleEndian.PutUint16(data[62:], n-1)
		return data
	})
	size := fileSize(t, path)
	b, alloc, took, err := measure(path)
	t.Logf("Open: %v; allocated %d bytes (%.2f× the %d-byte file) in %v", err, alloc, float64(alloc)/float64(size), size, took)
	if !errors.Is(err, ErrBudget) {
		b.Close()
		t.Fatalf("Open = %v; want ErrBudget", err)
	}
	if alloc > 2*size {
		t.Errorf("allocated %d bytes, more than twice the file's %d", alloc, size)
	}
}

// TestDWARFBomb: a .debug_info whose compressed data expands to 512 MiB
// made Open allocate that much. Its DWARF must be refused for the table
// of offsets, within the budget.
func TestDWARFBomb(t *testing.T) {
	const expanded = 512 << 20
	path := patchedCopy(t, findVariant("local").build(t), func(data []byte, f *elf.File) []byte {
		s := section(t, f, ".debug_info")
		if s.Flags&elf.SHF_COMPRESSED == 0 {
			t.Skip(".debug_info not compressed")
		}
		var z bytes.Buffer
		w, _ := zlib.NewWriterLevel(&z, zlib.BestSpeed)
		zero := make([]byte, 1<<20)
		for i := 0; i < expanded/len(zero); i++ {
			w.Write(zero)
		}
		w.Close()
		const chdr = 24 // Elf64_Chdr: type, reserved, size, addralign
		if uint64(chdr+z.Len()) > s.FileSize {
			t.Skipf("%d compressed bytes do not fit the %d of .debug_info", z.Len(), s.FileSize)
		}
		binary.LittleEndian.PutUint64(data[s.Offset+8:], expanded)
		copy(data[s.Offset+chdr:], z.Bytes())
		return data
	})
	opensOnTableWithinBudget(t, path)
}

// TestDWARFAbbrevBomb: 20000 DWARF units each starting the abbreviation
// table at another of its 20000 entries made dwarf.New parse 200 million
// entries (tens of GB). The DWARF must be refused for the table of
// offsets, within the budget.
func TestDWARFAbbrevBomb(t *testing.T) {
	const n = 20000
	var abbrev, info []byte
	var starts []uint32
	for id := uint64(1); id <= n; id++ {
		starts = append(starts, uint32(len(abbrev)))
		abbrev = binary.AppendUvarint(abbrev, id)
		abbrev = append(abbrev, byte(dwarfTagBaseType), 0, 0, 0) // tag, no children, no attributes
	}
	abbrev = append(abbrev, 0)
	for _, off := range starts {
		info = binary.LittleEndian.AppendUint32(info, 7) // unit length
		info = binary.LittleEndian.AppendUint16(info, 4) // DWARF 4
		info = binary.LittleEndian.AppendUint32(info, off)
		info = append(info, 8) // address size
	}
	path := patchedCopy(t, findVariant("local").build(t), func(data []byte, f *elf.File) []byte {
		shoff := binary.LittleEndian.Uint64(data[40:])
		for i, s := range f.Sections {
			var content []byte
			switch s.Name {
			case ".debug_abbrev":
				content = abbrev
			case ".debug_info":
				content = info
			default:
				continue
			}
			// The new content, uncompressed, at the end of the file.
			sh := data[shoff+uint64(i)*elf64ShdrSize:]
			binary.LittleEndian.PutUint64(sh[8:], binary.LittleEndian.Uint64(sh[8:])&^uint64(elf.SHF_COMPRESSED))
			binary.LittleEndian.PutUint64(sh[24:], uint64(len(data)))
			binary.LittleEndian.PutUint64(sh[32:], uint64(len(content)))
			data = append(data, content...)
		}
		return data
	})
	opensOnTableWithinBudget(t, path)
}

const dwarfTagBaseType = 0x24

// TestGarbageSymtab: a .symtab of random bytes left every function
// unfound, and tracerd logged "Go probes attached links=0" with no
// reason. Symbols must come from the pclntab, and SymtabErr say why.
func TestGarbageSymtab(t *testing.T) {
	orig := findVariant("local").build(t)
	path := patchedCopy(t, orig, func(data []byte, f *elf.File) []byte {
		s := section(t, f, ".symtab")
		rand.New(rand.NewSource(1)).Read(data[s.Offset+elf64SymSize : s.Offset+s.Size])
		return data
	})
	checkFallback(t, orig, path)
}

// TestSymtabNameBomb: every .symtab name starting inside one long string
// made debug/elf copy the rest of it for each symbol (gigabytes). The
// .symtab is garbage: symbols from the pclntab, memory bounded.
func TestSymtabNameBomb(t *testing.T) {
	orig := findVariant("local").build(t)
	path := patchedCopy(t, orig, func(data []byte, f *elf.File) []byte {
		symtab := section(t, f, ".symtab")
		strtab := f.Sections[symtab.Link]
		for i := strtab.Offset; i < strtab.Offset+strtab.Size-1; i++ {
			data[i] = 'A'
		}
		for i, off := uint32(1), symtab.Offset+elf64SymSize; off < symtab.Offset+symtab.Size; i, off = i+1, off+elf64SymSize {
			binary.LittleEndian.PutUint32(data[off:], i)
		}
		return data
	})
	size := fileSize(t, path)
	b, alloc, took, err := measure(path)
	t.Logf("Open: %v; allocated %d bytes (%.2f× the %d-byte file) in %v", err, alloc, float64(alloc)/float64(size), size, took)
	if err == nil {
		b.Close()
	}
	if budget := defaultLimits.budgetFor(int64(size)).allowed; alloc > uint64(budget) {
		t.Errorf("allocated %d bytes, more than the budget %d", alloc, budget)
	}
	checkFallback(t, orig, path)
}

// checkFallback checks that path, a copy of orig with its .symtab spoilt,
// is probed from the pclntab at the same places as orig.
func checkFallback(t *testing.T, orig, path string) {
	t.Helper()
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	good, err := Open(orig)
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	b, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.SymbolsFrom != "pclntab" || b.SymtabErr == nil || b.Stripped {
		t.Fatalf("SymbolsFrom %q SymtabErr %v Stripped %v; want pclntab, a reason, false", b.SymbolsFrom, b.SymtabErr, b.Stripped)
	}
	t.Logf("SymtabErr: %v", b.SymtabErr)
	for _, name := range probedFuncs {
		fn, err := b.Func(name)
		if err != nil {
			t.Errorf("Func(%s): %v", name, err)
			continue
		}
		checkFunc(t, file, fn)
		want, _ := good.Func(name)
		if fn.Entry != want.Entry || fn.EntryProbe != want.EntryProbe || !equalU64(fn.Returns, want.Returns) {
			t.Errorf("%s: entry %#x probe %#x rets %x; from .symtab: %#x %#x %x", name, fn.Entry, fn.EntryProbe, fn.Returns, want.Entry, want.EntryProbe, want.Returns)
		}
	}
}

// TestTruncatedELF: a truncated executable was "not a Go binary" (logged
// at debug level). It must be ErrCorrupt, saying what is wrong.
func TestTruncatedELF(t *testing.T) {
	path := findVariant("local").build(t)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	// Cut after the last loaded byte: the program still runs, but its
	// symbols, DWARF and section headers are gone.
	var loaded uint64
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD {
			loaded = max(loaded, p.Off+p.Filesz)
		}
	}
	for _, n := range []uint64{loaded, uint64(len(data)) / 2, uint64(len(data)) - 1, 1000, 63} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			cut := filepath.Join(t.TempDir(), "server")
			if err := os.WriteFile(cut, data[:n], 0o755); err != nil {
				t.Fatal(err)
			}
			b, err := Open(cut)
			if err == nil {
				b.Close()
			}
			if !errors.Is(err, ErrCorrupt) || errors.Is(err, ErrNotGo) || !strings.Contains(err.Error(), "truncated or corrupt ELF: ") {
				t.Fatalf("Open = %v; want ErrCorrupt, \"truncated or corrupt ELF: …\"", err)
			}
			t.Log(err)
		})
	}
}

// opensOnTableWithinBudget: a binary whose DWARF is a bomb opens, takes
// its offsets from the table instead, and allocates within the budget.
func opensOnTableWithinBudget(t *testing.T, path string) {
	t.Helper()
	size := fileSize(t, path)
	b, alloc, took, err := measure(path)
	t.Logf("Open: %v; allocated %d bytes (%.2f× the %d-byte file) in %v", err, alloc, float64(alloc)/float64(size), size, took)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.OffsetsFrom != "table" {
		t.Errorf("offsets from %q, want the table", b.OffsetsFrom)
	}
	if budget := defaultLimits.budgetFor(int64(size)).allowed; alloc > uint64(budget) {
		t.Errorf("allocated %d bytes, more than the budget %d", alloc, budget)
	}
}
