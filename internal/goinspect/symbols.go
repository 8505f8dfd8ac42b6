package goinspect

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// symbol is a function symbol of .symtab.
type symbol struct{ value, size uint64 }

const elf64SymSize = 24

// loadSymtab fills b.symtab with the function symbols of .symtab; it
// leaves it nil (and sets Stripped) when the binary has none. An error
// says why a .symtab present cannot be read: the caller then falls back
// on the pclntab. Names are read through a strtab, not debug/elf, which
// copies each out of .strtab up to its NUL.
func (b *Binary) loadSymtab() error {
	s := b.elf.SectionByType(elf.SHT_SYMTAB)
	if s == nil || s.Size <= elf64SymSize {
		b.Stripped = true // no symbols, or only the null one
		return nil
	}
	data, err := b.sectionData(s, ".symtab")
	if err != nil {
		return err
	}
	if len(data)%elf64SymSize != 0 {
		return fmt.Errorf(".symtab is %d bytes, not a multiple of %d", len(data), elf64SymSize)
	}
	if s.Link == 0 || int(s.Link) >= len(b.elf.Sections) || b.elf.Sections[s.Link].Type != elf.SHT_STRTAB {
		return fmt.Errorf(".symtab links to section %d, not a string table", s.Link)
	}
	strdata, err := b.sectionData(b.elf.Sections[s.Link], ".strtab")
	if err != nil {
		return err
	}
	names, err := newStrtab(strdata, ".strtab", b.bud)
	if err != nil {
		return err
	}
	n := len(data) / elf64SymSize
	if err := b.bud.alloc(48*uint64(n), ".symtab index"); err != nil {
		return err
	}
	syms := make(map[string]symbol, n/2)
	for i := 1; i < n; i++ { // symbol 0 is the null symbol
		if i%4096 == 0 {
			if err := b.bud.tick("reading .symtab"); err != nil {
				return err
			}
		}
		e := data[i*elf64SymSize:]
		info, shndx := e[4], elf.SectionIndex(binary.LittleEndian.Uint16(e[6:]))
		if elf.ST_TYPE(info) != elf.STT_FUNC || shndx == elf.SHN_UNDEF {
			continue
		}
		name, ok := names.at(uint64(binary.LittleEndian.Uint32(e)))
		if !ok {
			return fmt.Errorf(".symtab symbol %d: name offset %d outside .strtab (%d bytes)", i, binary.LittleEndian.Uint32(e), len(strdata))
		}
		if _, dup := syms[name]; !dup {
			syms[name] = symbol{value: binary.LittleEndian.Uint64(e[8:]), size: binary.LittleEndian.Uint64(e[16:])}
		}
	}
	if len(syms) == 0 {
		return errors.New(".symtab has no function symbol")
	}
	b.symtab = syms
	return nil
}

// checkSymtab compares .symtab with the pclntab: in a binary as linked
// every Go function the pclntab holds is in .symtab at the same address
// (under name.abi0 for the ABI0 half of a pair). A .symtab that agrees on
// less than half of them is garbage: not used at all. One that mostly
// agrees is kept, and Func refuses each function where it disagrees.
func (b *Binary) checkSymtab() error {
	ft := b.funcs
	agree := 0
	for i := 0; i < ft.nfunc; i++ {
		if i%4096 == 0 {
			if err := b.bud.tick("comparing .symtab with .gopclntab"); err != nil {
				return err
			}
		}
		name, entry := ft.name(i), ft.entry(i)
		if s, ok := b.symtab[name]; ok && s.value == entry {
			agree++
		} else if s, ok := b.symtab[name+".abi0"]; ok && s.value == entry {
			agree++
		}
	}
	if 2*agree < ft.nfunc {
		return fmt.Errorf(".symtab agrees with .gopclntab on %d of its %d functions", agree, ft.nfunc)
	}
	return nil
}

// sectionData reads a section, whose claimed size (uncompressed, for a
// compressed one) the budget must allow first.
func (b *Binary) sectionData(s *elf.Section, what string) ([]byte, error) {
	size, err := sectionSize(s)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := b.bud.alloc(size, what); err != nil {
		return nil, err
	}
	data, err := s.Data()
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", what, err)
	}
	return data, nil
}

// sectionSize is what reading a section allocates: its size, or for a
// compressed one the uncompressed size its header claims (debug/elf
// takes it from the compression header; for the old .zdebug sections it
// reads it only when the section is opened, from a "ZLIB" prefix).
func sectionSize(s *elf.Section) (uint64, error) {
	if s.Type == elf.SHT_NOBITS {
		return 0, errors.New("no data in the file (SHT_NOBITS)")
	}
	if s.Flags&elf.SHF_COMPRESSED == 0 && strings.HasPrefix(s.Name, ".zdebug") {
		var hdr [12]byte
		if n, _ := s.ReadAt(hdr[:], 0); n == len(hdr) && string(hdr[:4]) == "ZLIB" {
			return binary.BigEndian.Uint64(hdr[4:]), nil
		}
	}
	return s.Size, nil
}

// pclntab is the Go function table found in the file.
type pclntab struct {
	addr uint64 // virtual address of runtime.pclntab (the pcHeader)
	data []byte
}

// findPclntab finds the pclntab: by section name (".gopclntab", or
// ".data.rel.ro.gopclntab" in some PIE links), else by scanning the
// non-executable segments for a pcHeader (amd64: pad 0,0, minLC 1,
// ptrSize 8). nil, nil: there is none.
func (b *Binary) findPclntab() (*pclntab, error) {
	for _, name := range []string{".gopclntab", ".data.rel.ro.gopclntab"} {
		if s := b.elf.Section(name); s != nil && s.Type != elf.SHT_NOBITS {
			data, err := b.sectionData(s, name)
			if err != nil {
				return nil, err
			}
			if len(data) > 8 {
				return &pclntab{addr: s.Addr, data: data}, nil
			}
		}
	}
	for _, p := range b.elf.Progs {
		if p.Type != elf.PT_LOAD || p.Flags&elf.PF_X != 0 || p.Filesz < 64 {
			continue
		}
		seg, err := b.segmentData(p)
		if err != nil {
			return nil, err
		}
		if seg == nil {
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
					return &pclntab{addr: p.Vaddr + uint64(i), data: seg[i:]}, nil
				}
				i++
			}
		}
	}
	return nil, nil
}

// segmentData reads the file part of a segment (checkELF has checked it
// lies within the file); nil if it cannot be read.
func (b *Binary) segmentData(p *elf.Prog) ([]byte, error) {
	if err := b.bud.alloc(p.Filesz, fmt.Sprintf("segment at %#x", p.Vaddr)); err != nil {
		return nil, err
	}
	seg := make([]byte, p.Filesz)
	if _, err := p.ReadAt(seg, 0); err != nil {
		return nil, nil
	}
	return seg, nil
}

// loadPclntab parses the pclntab into b.funcs. Since Go 1.18 the
// function entries are offsets from runtime.text (the header's textStart
// field is unrelocated in PIE binaries and no longer written at all since
// Go 1.26): it is found in runtime.firstmoduledata (see textStart). The
// functions must lie in one executable segment.
func (b *Binary) loadPclntab(t *pclntab) error {
	if len(t.data) < 72 {
		return corrupt(corruptPclntab, "%d bytes, shorter than its header", len(t.data))
	}
	magic := binary.LittleEndian.Uint32(t.data)
	var text uint64
	if magic == magic118 || magic == magic120 {
		var err error
		text, b.TextStartFrom, err = b.textStart(t)
		if err != nil {
			return err
		}
		b.TextStart = text
	}
	ft, err := parseFuncTable(t.data, text, b.bud)
	if err != nil {
		return err
	}
	first, end := ft.entry(0), ft.entry(ft.nfunc)
	if p := b.segment(first); p == nil || p.Flags&elf.PF_X == 0 || end > p.Vaddr+p.Filesz {
		return corrupt(corruptPclntab, "its functions span [%#x, %#x), not inside one executable segment", first, end)
	}
	b.funcs = ft
	b.pclnStart, b.pclnEnd = t.addr, t.addr+uint64(len(t.data))
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
	md, ok, err := b.findModuledata(t.addr, t.addr+funcnameOff)
	if err != nil {
		return 0, "", err
	}
	if ok {
		return md, "moduledata", nil
	}
	if ts := binary.LittleEndian.Uint64(t.data[24:]); ts != 0 && b.isText(ts) {
		return ts, "pclntab-header", nil
	}
	if s := b.elf.Section(".text"); s != nil && b.isText(s.Addr) {
		return s.Addr, ".text-section", nil
	}
	return 0, "", fmt.Errorf("cannot find runtime.text: %w", ErrUnsupported)
}

func (b *Binary) isText(addr uint64) bool {
	p := b.segment(addr)
	return p != nil && p.Flags&elf.PF_X != 0
}

// findModuledata locates runtime.firstmoduledata and returns its text
// field; an error only when the budget runs out.
func (b *Binary) findModuledata(pcHeader, funcnametab uint64) (uint64, bool, error) {
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
			return text, true, nil
		}
	}
	// Scan the writable segments for a word equal to the pcHeader address.
	for _, p := range b.elf.Progs {
		if p.Type != elf.PT_LOAD || p.Flags&elf.PF_W == 0 || p.Filesz < mdSize {
			continue
		}
		seg, err := b.segmentData(p)
		if err != nil {
			return 0, false, err
		}
		start := (8 - p.Vaddr%8) % 8
		for i := start; seg != nil && i+mdSize <= uint64(len(seg)); i += 8 {
			if binary.LittleEndian.Uint64(seg[i:]) != pcHeader {
				continue
			}
			if text, ok := check(p.Vaddr + i); ok {
				return text, true, nil
			}
			if r.err != nil {
				return 0, false, r.err
			}
			if err := b.bud.tick("looking for runtime.firstmoduledata"); err != nil {
				return 0, false, err
			}
		}
	}
	// Pointers only present as RELA relocations (file word left zero).
	for _, m := range r.relocsWithAddend(pcHeader) {
		if text, ok := check(m); ok {
			return text, true, nil
		}
	}
	return 0, false, r.err
}

// relocReader reads pointer-sized words from the file image, applying
// R_X86_64_RELATIVE relocations (addend, for load bias 0) where the linker
// left the file word zero.
type relocReader struct {
	b      *Binary
	loaded bool
	rel    map[uint64]uint64 // r_offset -> addend
	err    error             // the budget ran out loading them
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
		data, err := r.b.sectionData(s, s.Name)
		if errors.Is(err, ErrBudget) {
			r.err = err
			return
		}
		if err != nil {
			continue
		}
		// A map entry and its share of the buckets per relocation.
		if r.err = r.b.bud.alloc(uint64(len(data))/24*32, s.Name+" index"); r.err != nil {
			return
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
