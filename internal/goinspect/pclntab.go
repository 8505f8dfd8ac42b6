package goinspect

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"
)

// funcTable is a parsed .gopclntab: the function table the Go runtime
// itself uses (tracebacks, stack growth), so the one source of function
// bounds trusted for placing probes; .symtab, which nothing at run time
// reads, is only cross-checked against it.
//
// debug/gosym is not used: it allocates for the function count the header
// claims (2^31 functions: 200 GB) and copies each name out of the name
// table up to its NUL. Every count and offset is checked here against the
// table's real size first, and names are read through a strtab.
type funcTable struct {
	magic    uint32
	text     uint64 // runtime.text: base of the entry offsets since Go 1.18
	nfunc    int
	field    int    // bytes per functab field: 4 since Go 1.18, 8 before
	functab  []byte // nfunc (entry, funcoff) pairs, then the end PC
	funcdata []byte // what funcoff is relative to
	names    strtab
	cutab    []byte
	files    strtab
	pctab    []byte

	byName map[string]int32   // first function of each name
	more   map[string][]int32 // every function of a name held by several (ABI pairs)
}

// pcHeader magics (runtime/symtab.go, debug/gosym).
const (
	magic12  = 0xfffffffb // Go 1.2 - 1.15
	magic116 = 0xfffffffa // Go 1.16 - 1.17
	magic118 = 0xfffffff0 // Go 1.18 - 1.19
	magic120 = 0xfffffff1 // Go 1.20 and later
)

// Offsets in a _func of the fields read, for Go ≥ 1.18 (entryOff is 4
// bytes) and before (entry is a pointer): nameOff, pcfile, cuOffset.
const (
	funcName118, funcPcfile118, funcCU118 = 4, 20, 32
	funcName116, funcPcfile116, funcCU116 = 8, 24, 36
)

const corruptPclntab = "corrupt .gopclntab"

// parseFuncTable checks the pcHeader of an amd64 pclntab and every table
// bound it gives against the data's real size, then indexes the functions.
// text is runtime.text (only used for Go ≥ 1.18 tables).
func parseFuncTable(d []byte, text uint64, bud *budget) (*funcTable, error) {
	if len(d) < 16 {
		return nil, corrupt(corruptPclntab, "%d bytes, shorter than its header", len(d))
	}
	if d[4] != 0 || d[5] != 0 || d[6] != 1 || d[7] != 8 {
		return nil, fmt.Errorf("pclntab header % x is not amd64's (pad 0 0, quantum 1, pointer size 8): %w", d[4:8], ErrUnsupported)
	}
	ft := &funcTable{magic: binary.LittleEndian.Uint32(d), text: text}
	var nameOff, cuOff, fileOff, pcOff, funcOff int // header words holding table offsets (-1: none)
	switch ft.magic {
	case magic118, magic120:
		ft.field, nameOff, cuOff, fileOff, pcOff, funcOff = 4, 3, 4, 5, 6, 7
	case magic116:
		ft.field, nameOff, cuOff, fileOff, pcOff, funcOff = 8, 2, 3, 4, 5, 6
	case magic12:
		ft.field, nameOff, cuOff, fileOff, pcOff, funcOff = 8, -1, -1, -1, -1, -1
	default:
		return nil, fmt.Errorf("unknown pclntab magic %#x: %w", ft.magic, ErrUnsupported)
	}
	words := []int{0, nameOff, cuOff, fileOff, pcOff, funcOff}
	if hdr := 16 + 8*slices.Max(words); len(d) < hdr {
		return nil, corrupt(corruptPclntab, "%d bytes, shorter than its %d-byte header", len(d), hdr)
	}
	word := func(i int) uint64 { return binary.LittleEndian.Uint64(d[8+8*i:]) }
	// Each table runs from its offset to the next table's (or the end).
	var offs []uint64
	for _, w := range words[1:] {
		if w < 0 {
			continue
		}
		o := word(w)
		if o > uint64(len(d)) {
			return nil, corrupt(corruptPclntab, "header word %d: table offset %#x past the end of the %d-byte table", w, o, len(d))
		}
		offs = append(offs, o)
	}
	region := func(w int) []byte {
		if w < 0 {
			return d // Go < 1.16: one table, offsets from its start
		}
		start, end := word(w), uint64(len(d))
		for _, o := range offs {
			if o > start && o < end {
				end = o
			}
		}
		return d[start:end]
	}
	functab := d[16:] // Go < 1.16: the functab follows nfunc
	ft.funcdata = d
	if funcOff >= 0 {
		ft.funcdata = d[word(funcOff):] // runs to the end: funcoffs are relative to it
		functab = ft.funcdata
	}
	if err := ft.setFunctab(word(0), functab); err != nil {
		return nil, err
	}
	var err error
	if ft.names, err = newStrtab(region(nameOff), "pclntab function names", bud); err != nil {
		return nil, err
	}
	if fileOff >= 0 {
		if ft.files, err = newStrtab(region(fileOff), "pclntab file names", bud); err != nil {
			return nil, err
		}
		ft.cutab, ft.pctab = region(cuOff), region(pcOff)
	}
	if err := ft.index(bud); err != nil {
		return nil, err
	}
	return ft, nil
}

// setFunctab bounds the function count by the room the table has for it.
func (ft *funcTable) setFunctab(nfunc uint64, functab []byte) error {
	// 2*nfunc+1 fields: an (entry, funcoff) pair per function, the end PC.
	room := uint64(len(functab))
	if nfunc == 0 || room < uint64(ft.field) || nfunc > (room-uint64(ft.field))/uint64(2*ft.field) {
		return corrupt(corruptPclntab, "header claims %d functions: their table needs %d-byte fields × (2×%d+1), %d bytes are left for it",
			nfunc, ft.field, nfunc, room)
	}
	ft.nfunc = int(nfunc)
	ft.functab = functab[:(2*nfunc+1)*uint64(ft.field)]
	return nil
}

// fieldAt reads functab field i.
func (ft *funcTable) fieldAt(i int) uint64 {
	if ft.field == 4 {
		return uint64(binary.LittleEndian.Uint32(ft.functab[4*i:]))
	}
	return binary.LittleEndian.Uint64(ft.functab[8*i:])
}

// entry is the start of function i, or for i == nfunc the end of the last.
func (ft *funcTable) entry(i int) uint64 {
	if ft.field == 4 {
		return ft.text + ft.fieldAt(2*i)
	}
	return ft.fieldAt(2 * i)
}

// funcData returns function i's _func (index has checked its bounds).
func (ft *funcTable) funcData(i int) []byte { return ft.funcdata[ft.fieldAt(2*i+1):] }

// nameField and cuField are the offsets of _func.nameOff and
// _func.cuOffset for this table's version.
func (ft *funcTable) nameField() int {
	if ft.field == 4 {
		return funcName118
	}
	return funcName116
}

func (ft *funcTable) name(i int) string {
	s, _ := ft.names.at(uint64(binary.LittleEndian.Uint32(ft.funcData(i)[ft.nameField():])))
	return s
}

// index checks every function as the runtime would need it to be (entries
// ascending, _func inside the table and naming the same entry, a name)
// and indexes them by name.
func (ft *funcTable) index(bud *budget) error {
	// A map entry and its share of the buckets: about 48 bytes.
	if err := bud.alloc(48*uint64(ft.nfunc), "pclntab index"); err != nil {
		return err
	}
	need := ft.nameField() + 4 // through nameOff
	if ft.magic != magic12 {
		need = funcCU116 + 4 // through cuOffset (read by file)
		if ft.field == 4 {
			need = funcCU118 + 4
		}
	}
	ft.byName = make(map[string]int32, ft.nfunc)
	ft.more = map[string][]int32{}
	for i := 0; i < ft.nfunc; i++ {
		if i%4096 == 0 {
			if err := bud.tick("indexing .gopclntab"); err != nil {
				return err
			}
		}
		entry, end := ft.entry(i), ft.entry(i+1)
		if end < entry {
			return corrupt(corruptPclntab, "function %d: entries not ascending (%#x then %#x)", i, entry, end)
		}
		off := ft.fieldAt(2*i + 1)
		if off > uint64(len(ft.funcdata)) || uint64(len(ft.funcdata))-off < uint64(need) {
			return corrupt(corruptPclntab, "function %d: _func at %#x outside the %d-byte table", i, off, len(ft.funcdata))
		}
		fd := ft.funcdata[off:]
		own := binary.LittleEndian.Uint64(fd) // _func.entry before Go 1.18
		if ft.field == 4 {
			own = ft.text + uint64(binary.LittleEndian.Uint32(fd)) // _func.entryOff
		}
		if own != entry {
			return corrupt(corruptPclntab, "function %d: function table says %#x, its _func %#x", i, entry, own)
		}
		nameOff := uint64(binary.LittleEndian.Uint32(fd[ft.nameField():]))
		name, ok := ft.names.at(nameOff)
		if !ok {
			return corrupt(corruptPclntab, "function %d: name offset %#x outside the name table", i, nameOff)
		}
		if first, dup := ft.byName[name]; dup {
			if ft.more[name] == nil {
				ft.more[name] = []int32{first}
			}
			ft.more[name] = append(ft.more[name], int32(i))
			continue
		}
		ft.byName[name] = int32(i)
	}
	return nil
}

// lookup returns the function named name: the pclntab names an assembly
// function and its ABIInternal wrapper, or a Go function and its ABI0
// wrapper, alike; .symtab calls the ABI0 one "name.abi0". Mimic .symtab:
// of two functions with one name, the one from a .s file or, failing
// that, the one from "<autogenerated>" is the ".abi0" one.
func (ft *funcTable) lookup(name string) (int, bool) {
	base, abi0 := strings.CutSuffix(name, ".abi0")
	first, ok := ft.byName[base]
	if !ok {
		return 0, false
	}
	fns := ft.more[base]
	if len(fns) != 2 {
		return int(first), !abi0 // not an ABI pair: the first, as before
	}
	a := ft.abi0Of(fns)
	if a < 0 {
		return int(first), !abi0
	}
	if abi0 {
		return int(fns[a]), true
	}
	return int(fns[1-a]), true
}

// abi0Of says which of an ABI pair is the ABI0 one (-1: cannot tell).
func (ft *funcTable) abi0Of(fns []int32) int {
	for _, suffix := range []string{".s", "<autogenerated>"} {
		abi0 := -1
		for i, fn := range fns {
			if strings.HasSuffix(ft.file(int(fn)), suffix) {
				abi0 = i
			}
		}
		if abi0 >= 0 {
			return abi0
		}
	}
	return -1
}

// file returns the source file of function i's entry ("" if unknown):
// the first value of its pcfile table, an index into its compilation
// unit's file list (Go ≥ 1.16).
func (ft *funcTable) file(i int) string {
	if ft.magic == magic12 {
		return ""
	}
	fd := ft.funcData(i)
	pcfileField, cuField := funcPcfile116, funcCU116
	if ft.field == 4 {
		pcfileField, cuField = funcPcfile118, funcCU118
	}
	pcfile := uint64(binary.LittleEndian.Uint32(fd[pcfileField:]))
	if pcfile >= uint64(len(ft.pctab)) {
		return ""
	}
	p := ft.pctab[pcfile:]
	uv, n := binary.Uvarint(p)
	if n <= 0 || uv > math.MaxUint32 {
		return ""
	}
	if pcdelta, m := binary.Uvarint(p[n:]); m <= 0 || pcdelta == 0 {
		return "" // the first range does not cover the entry
	}
	v := int64(uv >> 1) // zigzag
	if uv&1 != 0 {
		v = ^v
	}
	fileno := v - 1 // values start at -1
	if fileno < 0 {
		return ""
	}
	idx := (uint64(binary.LittleEndian.Uint32(fd[cuField:])) + uint64(fileno)) * 4
	if idx+4 > uint64(len(ft.cutab)) {
		return ""
	}
	s, _ := ft.files.at(uint64(binary.LittleEndian.Uint32(ft.cutab[idx:])))
	return s
}
