package goinspect

import (
	"bytes"
	"math"
	"sort"
)

// strtab is a table of NUL-terminated strings: an ELF string table, the
// pclntab's function or file names. A string read from it is a substring
// of one copy of the table, and its end is found by binary search in the
// positions of the table's NULs: reading n strings costs O(n log m)
// whatever their offsets. Scanning for the NUL at each read, as
// debug/elf and debug/gosym do, lets a crafted table whose strings all
// start inside one long name cost time and memory quadratic in its size.
type strtab struct {
	s    string
	nuls []uint32 // offsets of the NULs, ascending
}

func newStrtab(data []byte, what string, bud *budget) (strtab, error) {
	if len(data) > math.MaxUint32 {
		return strtab{}, corrupt(what, "%d bytes, more than 32-bit offsets reach", len(data))
	}
	n := bytes.Count(data, []byte{0})
	if err := bud.alloc(uint64(len(data))+4*uint64(n), what); err != nil {
		return strtab{}, err
	}
	t := strtab{s: string(data), nuls: make([]uint32, 0, n)}
	for i := 0; ; {
		j := bytes.IndexByte(data[i:], 0)
		if j < 0 {
			break
		}
		t.nuls = append(t.nuls, uint32(i+j))
		i += j + 1
	}
	return t, nil
}

// at returns the string at off; false if off is outside the table or the
// string has no terminating NUL.
func (t strtab) at(off uint64) (string, bool) {
	if off >= uint64(len(t.s)) {
		return "", false
	}
	i := sort.Search(len(t.nuls), func(i int) bool { return uint64(t.nuls[i]) >= off })
	if i == len(t.nuls) {
		return "", false
	}
	return t.s[off:t.nuls[i]], true
}
