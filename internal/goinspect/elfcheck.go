package goinspect

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"io"
)

const (
	elf64HeaderSize = 64
	elf64PhdrSize   = 56
	elf64ShdrSize   = 64
)

const corruptELF = "truncated or corrupt ELF"

// checkELF validates the ELF header, the program and section header tables
// and the section name table before debug/elf sees the file: debug/elf
// trusts them, and a crafted one makes it allocate without bound (each
// section name is copied out of the name table up to its NUL, so 65535
// sections named at one offset of a long name cost 65535 copies of it).
// It also catches a truncated file with a clear error rather than
// debug/elf's EOF. Only x86-64 ELF64 files are inspected further.
func checkELF(r io.ReaderAt, size int64, bud *budget) error {
	var hdr [elf64HeaderSize]byte
	n, _ := r.ReadAt(hdr[:], 0)
	if n < 4 || !bytes.Equal(hdr[:4], []byte(elf.ELFMAG)) {
		return fmt.Errorf("not an ELF file: %w", ErrNotGo)
	}
	if n < elf64HeaderSize || size < elf64HeaderSize {
		return corrupt(corruptELF, "%d bytes, shorter than the ELF header", size)
	}
	class, data := elf.Class(hdr[elf.EI_CLASS]), elf.Data(hdr[elf.EI_DATA])
	machine := elf.Machine(binary.LittleEndian.Uint16(hdr[18:]))
	if class != elf.ELFCLASS64 || data != elf.ELFDATA2LSB || machine != elf.EM_X86_64 {
		return fmt.Errorf("%v %v %v: only x86-64 is supported: %w", class, data, machine, ErrUnsupported)
	}
	le := binary.LittleEndian
	phoff, shoff := le.Uint64(hdr[32:]), le.Uint64(hdr[40:])
	phentsize, phnum := uint64(le.Uint16(hdr[54:])), uint64(le.Uint16(hdr[56:]))
	shentsize, shnum := uint64(le.Uint16(hdr[58:])), uint64(le.Uint16(hdr[60:]))
	shstrndx := uint64(le.Uint16(hdr[62:]))

	if err := checkProgs(r, size, phoff, phentsize, phnum, bud); err != nil {
		return err
	}
	if shoff == 0 {
		return nil // no section headers: debug/elf reads nothing more
	}
	if shentsize != elf64ShdrSize {
		return corrupt(corruptELF, "section header size %d, want %d", shentsize, elf64ShdrSize)
	}
	if !within(shoff, elf64ShdrSize, size) {
		return corrupt(corruptELF, "section headers at %#x, past the end of the file (%d bytes)", shoff, size)
	}
	if shnum == 0 || shstrndx == uint64(elf.SHN_XINDEX) {
		// More sections than the header's 16 bits hold: section 0 has
		// the count in sh_size and the name table's index in sh_link.
		var s0 [elf64ShdrSize]byte
		if _, err := r.ReadAt(s0[:], int64(shoff)); err != nil {
			return corrupt(corruptELF, "reading section 0: %v", err)
		}
		if shnum == 0 {
			shnum = le.Uint64(s0[32:])
		}
		if shstrndx == uint64(elf.SHN_XINDEX) {
			shstrndx = uint64(le.Uint32(s0[40:]))
		}
	}
	if shnum > uint64(size)/elf64ShdrSize || !within(shoff, shnum*elf64ShdrSize, size) {
		return corrupt(corruptELF, "%d section headers at %#x end past the end of the file (%d bytes)", shnum, shoff, size)
	}
	// debug/elf keeps a Section of about 200 bytes per header.
	if err := bud.alloc(256*shnum, "section table"); err != nil {
		return err
	}
	return checkSections(r, size, shoff, shnum, shstrndx, bud)
}

// within reports whether [off, off+n) lies in a file of size bytes.
func within(off, n uint64, size int64) bool {
	return off <= uint64(size) && n <= uint64(size)-off
}

// readHeaders reads a table of n entries of entsize bytes at off, already
// checked to lie within the file.
func readHeaders(r io.ReaderAt, off, n, entsize uint64, what string, bud *budget) ([]byte, error) {
	if err := bud.alloc(n*entsize, what); err != nil {
		return nil, err
	}
	buf := make([]byte, n*entsize)
	if _, err := r.ReadAt(buf, int64(off)); err != nil {
		return nil, corrupt(corruptELF, "reading %s: %v", what, err)
	}
	return buf, nil
}

// checkProgs checks that the program headers, and the file part of every
// segment, lie within the file.
func checkProgs(r io.ReaderAt, size int64, phoff, phentsize, phnum uint64, bud *budget) error {
	if phnum == 0 {
		return nil
	}
	if phentsize != elf64PhdrSize {
		return corrupt(corruptELF, "program header size %d, want %d", phentsize, elf64PhdrSize)
	}
	if !within(phoff, phnum*elf64PhdrSize, size) {
		return corrupt(corruptELF, "%d program headers at %#x end past the end of the file (%d bytes)", phnum, phoff, size)
	}
	ph, err := readHeaders(r, phoff, phnum, elf64PhdrSize, "program headers", bud)
	if err != nil {
		return err
	}
	for i := uint64(0); i < phnum; i++ {
		p := ph[i*elf64PhdrSize:]
		off, filesz := binary.LittleEndian.Uint64(p[8:]), binary.LittleEndian.Uint64(p[32:])
		if filesz != 0 && !within(off, filesz, size) {
			return corrupt(corruptELF, "segment %d (%v) [%#x, +%#x) ends past the end of the file (%d bytes)",
				i, elf.ProgType(binary.LittleEndian.Uint32(p)), off, filesz, size)
		}
	}
	return nil
}

// checkSections checks that every section's file part lies within the
// file, and that the section names cost a bounded amount to read.
func checkSections(r io.ReaderAt, size int64, shoff, shnum, shstrndx uint64, bud *budget) error {
	sh, err := readHeaders(r, shoff, shnum, elf64ShdrSize, "section headers", bud)
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	for i := uint64(0); i < shnum; i++ {
		s := sh[i*elf64ShdrSize:]
		typ := elf.SectionType(le.Uint32(s[4:]))
		off, n := le.Uint64(s[24:]), le.Uint64(s[32:])
		if i > 0 && typ != elf.SHT_NOBITS && typ != elf.SHT_NULL && n != 0 && !within(off, n, size) {
			return corrupt(corruptELF, "section %d [%#x, +%#x) ends past the end of the file (%d bytes)", i, off, n, size)
		}
	}
	if shstrndx == 0 {
		return nil // no names: debug/elf leaves them empty
	}
	if shstrndx >= shnum {
		return corrupt(corruptELF, "section name table index %d, but %d sections", shstrndx, shnum)
	}
	s := sh[shstrndx*elf64ShdrSize:]
	if typ := elf.SectionType(le.Uint32(s[4:])); typ != elf.SHT_STRTAB {
		return corrupt(corruptELF, "section name table %d has type %v", shstrndx, typ)
	}
	if flags := elf.SectionFlag(le.Uint64(s[8:])); flags&elf.SHF_COMPRESSED != 0 {
		return corrupt(corruptELF, "section name table %d is compressed", shstrndx)
	}
	names, err := readHeaders(r, le.Uint64(s[24:]), le.Uint64(s[32:]), 1, "section name table", bud)
	if err != nil {
		return err
	}
	tab, err := newStrtab(names, "section name table", bud)
	if err != nil {
		return err
	}
	// debug/elf copies every name out of the table: account for that.
	var total uint64
	for i := uint64(0); i < shnum; i++ {
		name, ok := tab.at(uint64(le.Uint32(sh[i*elf64ShdrSize:])))
		if !ok {
			return corrupt(corruptELF, "section %d: name offset %d outside the section name table", i, le.Uint32(sh[i*elf64ShdrSize:]))
		}
		total += uint64(len(name))
	}
	return bud.alloc(total, "section names")
}
