package goinspect

import (
	"bytes"
	"debug/elf"
	"debug/gosym"
	"encoding/binary"
	"errors"
	"fmt"
)

// loadSymtab fills b.symtab from .symtab; it leaves it nil (and sets
// Stripped) when the binary has no .symtab.
func (b *Binary) loadSymtab() error {
	syms, err := b.elf.Symbols()
	if errors.Is(err, elf.ErrNoSymbols) || (err == nil && len(syms) == 0) {
		b.Stripped = true
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading .symtab: %w", err)
	}
	b.symtab = make(map[string]elf.Symbol, len(syms)/2)
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Section == elf.SHN_UNDEF {
			continue
		}
		if _, dup := b.symtab[s.Name]; !dup {
			b.symtab[s.Name] = s
		}
	}
	b.SymbolsFrom = "symtab"
	return nil
}

// pclntab is the Go function table found in the file.
type pclntab struct {
	addr uint64 // virtual address of runtime.pclntab (the pcHeader)
	data []byte
}

// pcHeader magics (runtime/symtab.go, debug/gosym).
const (
	magic12  = 0xfffffffb // Go 1.2 - 1.15
	magic116 = 0xfffffffa // Go 1.16 - 1.17
	magic118 = 0xfffffff0 // Go 1.18 - 1.19
	magic120 = 0xfffffff1 // Go 1.20 and later
)

// findPclntabSection finds the pclntab: by section name (".gopclntab", or
// ".data.rel.ro.gopclntab" in some PIE links), else by scanning the
// non-executable segments for a pcHeader (amd64: pad 0,0, minLC 1, ptrSize 8).
func findPclntabSection(f *elf.File) *pclntab {
	for _, name := range []string{".gopclntab", ".data.rel.ro.gopclntab"} {
		if s := f.Section(name); s != nil && s.Type != elf.SHT_NOBITS {
			data, err := s.Data()
			if err == nil && len(data) > 8 {
				return &pclntab{addr: s.Addr, data: data}
			}
		}
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD || p.Flags&elf.PF_X != 0 || p.Filesz < 64 {
			continue
		}
		seg := make([]byte, p.Filesz)
		if _, err := p.ReadAt(seg, 0); err != nil {
			continue
		}
		for _, m := range []uint32{magic120, magic118, magic116, magic12} {
			var pat [8]byte
			binary.LittleEndian.PutUint32(pat[:], m)
			pat[6], pat[7] = 1, 8
			for i := 0; ; {
				j := bytes.Index(seg[i:], pat[:])
				if j < 0 {
					break
				}
				i += j
				if (p.Vaddr+uint64(i))%8 == 0 {
					return &pclntab{addr: p.Vaddr + uint64(i), data: seg[i:]}
				}
				i++
			}
		}
	}
	return nil
}

// loadPclntab builds the symbol table from the pclntab. Since Go 1.18 the
// function entries are offsets from runtime.text, which debug/gosym takes as
// NewLineTable's second argument (it does not trust the header's textStart
// field, which is unrelocated in PIE binaries and is no longer written at all
// since Go 1.26). In a stripped binary runtime.text is found in
// runtime.firstmoduledata (see textStart).
func (b *Binary) loadPclntab(t *pclntab) error {
	if len(t.data) < 72 {
		return errors.New("pclntab too short")
	}
	magic := binary.LittleEndian.Uint32(t.data)
	var text uint64
	switch magic {
	case magic118, magic120:
		var err error
		text, b.TextStartFrom, err = b.textStart(t)
		if err != nil {
			return err
		}
		b.TextStart = text
	case magic116, magic12:
		// Entries are absolute addresses.
	default:
		return fmt.Errorf("unknown pclntab magic %#x", magic)
	}
	lt := gosym.NewLineTable(t.data, text)
	tab, err := gosym.NewTable(nil, lt)
	if err != nil {
		return err
	}
	if len(tab.Funcs) == 0 {
		return errors.New("no functions in pclntab")
	}
	b.pcln = tab
	b.SymbolsFrom = "pclntab"
	return nil
}

// Layout of runtime.moduledata on 64-bit, unchanged from Go 1.16 to 1.26:
// pcHeader *pcHeader; funcnametab, cutab, filetab, pctab, pclntable, ftab
// (six slices); findfunctab, minpc, maxpc, text, etext uintptr.
const (
	mdFuncnametab = 8
	mdMinpc       = 8 + 6*24 + 8
	mdMaxpc       = mdMinpc + 8
	mdText        = mdMaxpc + 8
	mdEtext       = mdText + 8
	mdSize        = mdEtext + 8
)

// textStart returns the address of runtime.text for a Go 1.18+ pclntab.
//
// In order: runtime.firstmoduledata.text (the moduledata is the only data
// structure whose first word points at the pcHeader and whose second
// points at the function name table; it lives in .go.module since Go 1.26,
// in .noptrdata before); the pcHeader's textStart field when set (Go
// 1.18-1.25; relocated by the linker); the .text section address (wrong
// for externally linked binaries, whose .text begins with C start-up code).
func (b *Binary) textStart(t *pclntab) (uint64, string, error) {
	funcnameOff := binary.LittleEndian.Uint64(t.data[32:])
	if md, ok := b.findModuledata(t.addr, t.addr+funcnameOff); ok {
		return md, "moduledata", nil
	}
	if ts := binary.LittleEndian.Uint64(t.data[24:]); ts != 0 && b.isText(ts) {
		return ts, "pclntab-header", nil
	}
	if s := b.elf.Section(".text"); s != nil && b.isText(s.Addr) {
		return s.Addr, ".text-section", nil
	}
	return 0, "", errors.New("cannot find runtime.text")
}

func (b *Binary) isText(addr uint64) bool {
	p := b.segment(addr)
	return p != nil && p.Flags&elf.PF_X != 0
}

// findModuledata locates runtime.firstmoduledata and returns its text field.
func (b *Binary) findModuledata(pcHeader, funcnametab uint64) (uint64, bool) {
	r := &relocReader{b: b}
	check := func(m uint64) (uint64, bool) {
		if w, ok := r.word(m); !ok || w != pcHeader {
			return 0, false
		}
		if w, ok := r.word(m + mdFuncnametab); !ok || w != funcnametab {
			return 0, false
		}
		minpc, _ := r.word(m + mdMinpc)
		maxpc, _ := r.word(m + mdMaxpc)
		text, _ := r.word(m + mdText)
		etext, _ := r.word(m + mdEtext)
		if !b.isText(text) || text > minpc || minpc > maxpc || maxpc > etext {
			return 0, false
		}
		return text, true
	}
	if s := b.elf.Section(".go.module"); s != nil {
		if text, ok := check(s.Addr); ok {
			return text, true
		}
	}
	// Scan the writable segments for a word equal to the pcHeader address.
	for _, p := range b.elf.Progs {
		if p.Type != elf.PT_LOAD || p.Flags&elf.PF_W == 0 || p.Filesz < mdSize {
			continue
		}
		seg := make([]byte, p.Filesz)
		if _, err := p.ReadAt(seg, 0); err != nil {
			continue
		}
		start := (8 - p.Vaddr%8) % 8
		for i := start; i+mdSize <= uint64(len(seg)); i += 8 {
			if binary.LittleEndian.Uint64(seg[i:]) == pcHeader {
				if text, ok := check(p.Vaddr + i); ok {
					return text, true
				}
			}
		}
	}
	// Pointers only present as RELA relocations (file word left zero).
	for _, m := range r.relocsWithAddend(pcHeader) {
		if text, ok := check(m); ok {
			return text, true
		}
	}
	return 0, false
}

// relocReader reads pointer-sized words from the file image, applying
// R_X86_64_RELATIVE relocations (addend, for load bias 0) where the linker
// left the file word zero.
type relocReader struct {
	b      *Binary
	loaded bool
	rel    map[uint64]uint64 // r_offset -> addend
}

func (r *relocReader) load() {
	if r.loaded {
		return
	}
	r.loaded = true
	r.rel = map[uint64]uint64{}
	for _, s := range r.b.elf.Sections {
		if s.Type != elf.SHT_RELA {
			continue
		}
		data, err := s.Data()
		if err != nil {
			continue
		}
		for i := 0; i+24 <= len(data); i += 24 {
			off := binary.LittleEndian.Uint64(data[i:])
			info := binary.LittleEndian.Uint64(data[i+8:])
			add := binary.LittleEndian.Uint64(data[i+16:])
			if elf.R_X86_64(info&0xffffffff) == elf.R_X86_64_RELATIVE {
				r.rel[off] = add
			}
		}
	}
}

func (r *relocReader) word(addr uint64) (uint64, bool) {
	buf, err := r.b.readAt(addr, 8)
	if err != nil {
		return 0, false
	}
	w := binary.LittleEndian.Uint64(buf)
	if w == 0 {
		r.load()
		if a, ok := r.rel[addr]; ok {
			return a, true
		}
	}
	return w, true
}

func (r *relocReader) relocsWithAddend(addend uint64) []uint64 {
	r.load()
	var out []uint64
	for off, a := range r.rel {
		if a == addend {
			out = append(out, off)
		}
	}
	return out
}
