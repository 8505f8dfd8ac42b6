package goinspect

import (
	"debug/dwarf"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"strings"
)

// dwarf reads the binary's DWARF within the budget. debug/dwarf trusts
// what it parses: a compressed section claims its uncompressed size (a
// crafted one a thousand times the file's), and dwarf.New allocates a
// unit per unit header and parses the abbreviation table afresh from
// each distinct offset the units give (units crafted to start it at every
// byte of a long table cost memory quadratic in its size). So the
// sections' sizes and the unit headers are checked and charged first.
//
// Unlike elf.File.DWARF, relocations are not applied (a linked
// executable's DWARF has none) and .debug_types sections are left out
// (Go does not emit them; nothing read here is in them).
func (b *Binary) dwarf() (*dwarf.Data, error) {
	var total uint64
	var sects []*elf.Section
	for _, s := range b.elf.Sections {
		if dwarfSuffix(s) == "" || dwarfSuffix(s) == "types" {
			continue
		}
		size, err := sectionSize(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.Name, err)
		}
		if total += size; total < size {
			return nil, corrupt(corruptELF, "DWARF section sizes overflow")
		}
		sects = append(sects, s)
	}
	if err := b.bud.alloc(total, "DWARF sections"); err != nil {
		return nil, err
	}
	dat := map[string][]byte{}
	for _, s := range sects {
		data, err := s.Data()
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", s.Name, err)
		}
		dat[dwarfSuffix(s)] = data
	}
	if err := b.chargeUnits(dat["info"], len(dat["abbrev"])); err != nil {
		return nil, err
	}
	d, err := dwarf.New(dat["abbrev"], nil, nil, dat["info"], dat["line"], nil, dat["ranges"], dat["str"])
	if err != nil {
		return nil, err
	}
	for _, s := range sects { // DWARF 5's
		switch suffix := dwarfSuffix(s); suffix {
		case "abbrev", "info", "line", "ranges", "str":
		default:
			if err := d.AddSection(".debug_"+suffix, dat[suffix]); err != nil {
				return nil, err
			}
		}
	}
	return d, nil
}

func dwarfSuffix(s *elf.Section) string {
	if name, ok := strings.CutPrefix(s.Name, ".debug_"); ok {
		return name
	}
	if name, ok := strings.CutPrefix(s.Name, ".zdebug_"); ok {
		return name
	}
	return ""
}

// chargeUnits charges what dwarf.New will allocate for .debug_info: a
// unit per header (about 100 bytes), and an abbreviation table parsed
// from each distinct offset the units give, up to the end of
// .debug_abbrev (about 16 bytes per byte parsed). Go's linker writes one
// table, at offset 0, for every unit.
func (b *Binary) chargeUnits(info []byte, abbrevLen int) error {
	var units uint64
	seen := map[uint64]bool{}
	for p := info; len(p) >= 4; units++ {
		if units%4096 == 0 {
			if err := b.bud.alloc(4096*128, "DWARF units"); err != nil {
				return err
			}
		}
		n, hdr := uint64(binary.LittleEndian.Uint32(p)), uint64(4)
		is64 := n == 0xffffffff
		if is64 {
			if len(p) < 12 {
				break
			}
			n, hdr = binary.LittleEndian.Uint64(p[4:]), 12
		}
		if n > uint64(len(p))-hdr {
			break // dwarf.New will fail on it
		}
		unit := p[hdr : hdr+n]
		p = p[hdr+n:]
		// version (2), [unit type, address size (DWARF 5)], abbrev offset.
		at := 2
		if len(unit) >= 2 && binary.LittleEndian.Uint16(unit) >= 5 {
			at = 4
		}
		var off uint64
		switch {
		case is64 && len(unit) >= at+8:
			off = binary.LittleEndian.Uint64(unit[at:])
		case !is64 && len(unit) >= at+4:
			off = uint64(binary.LittleEndian.Uint32(unit[at:]))
		default:
			continue
		}
		if off < uint64(abbrevLen) && !seen[off] {
			seen[off] = true
			if err := b.bud.alloc(16*(uint64(abbrevLen)-off)+64, "DWARF abbreviation tables"); err != nil {
				return err
			}
		}
	}
	return nil
}
