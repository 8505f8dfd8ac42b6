package export

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
	"slices"
)

// The JSON line's numbers, ids and addresses, written straight into the
// line's buffer: byte for byte what strconv, encoding/hex and netip
// write, without their stack buffer and its copy (a line has some
// twenty numbers, five of them 19-digit times; at 20k requests/s the
// copies were a tenth of the line's formatting).

// decimalPairs holds "00" to "99".
const decimalPairs = "00010203040506070809" +
	"10111213141516171819" +
	"20212223242526272829" +
	"30313233343536373839" +
	"40414243444546474849" +
	"50515253545556575859" +
	"60616263646566676869" +
	"70717273747576777879" +
	"80818283848586878889" +
	"90919293949596979899"

// pow10[i] is 10^i.
var pow10 = [20]uint64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9,
	1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19}

// decimalLen is how many decimal digits u has (u > 0).
func decimalLen(u uint64) int {
	n := bits.Len64(u) * 1233 >> 12 // ⌊log10(2^len)⌋: n or n+1 digits
	if u >= pow10[n] {
		n++
	}
	return n
}

// digits8 is x (< 1e8) as eight ASCII digits, leading zeros included,
// the first digit in the lowest byte (a little-endian store writes them
// in order): the four 2-digit halves of its two 4-digit halves split in
// one 64-bit word's 16-bit lanes at once, by multiplications that are
// exact divisions in their range (x/100 = x*10486>>20 for x < 10^4,
// x/10 = x*103>>10 for x < 100), instead of four rounds of a
// division, a table look-up and two byte stores.
func digits8(x uint32) uint64 {
	merged := uint64(x/10000) | uint64(x%10000)<<32   // 32-bit lanes: high 4 digits, low 4
	top := (merged * 10486 >> 20) & (0x7f<<32 | 0x7f) // each lane /100
	bot := merged - 100*top                           // each lane %100
	pairs := bot<<16 | top                            // 16-bit lanes: the 2-digit pairs in order
	tens := (pairs * 103 >> 10) & (0xf<<48 | 0xf<<32 | 0xf<<16 | 0xf)
	tens |= (pairs - 10*tens) << 8 // each pair's units in its high byte
	return tens | 0x3030303030303030
}

// appendUint is strconv.AppendUint(b, u, 10). The digits go in 8-byte
// stores (digits8), from a leading group of 1 to 8 digits (its store
// shifted past the group's leading zeros: what it writes beyond the
// group the next store overwrites, or lies past the result's length)
// then whole groups of 8; the room for three stores is made first.
func appendUint(b []byte, u uint64) []byte {
	if u < 10 { // inlined: a third of a line's numbers are 0
		return append(b, byte('0'+u))
	}
	return appendUint10(b, u)
}

// appendUint10 is appendUint for u ≥ 10.
func appendUint10(b []byte, u uint64) []byte {
	if u < 1e4 { // statuses, ports, the addresses' bytes: pairs from the table
		if u < 100 {
			return append(b, decimalPairs[2*u], decimalPairs[2*u+1])
		}
		hi, lo := 2*(u/100), 2*(u%100)
		if hi < 20 {
			return append(b, decimalPairs[hi+1], decimalPairs[lo], decimalPairs[lo+1])
		}
		return append(b, decimalPairs[hi], decimalPairs[hi+1], decimalPairs[lo], decimalPairs[lo+1])
	}
	n := decimalLen(u)
	if cap(b)-len(b) < 24 {
		b = slices.Grow(b, 24)
	}
	l := len(b)
	d := b[l : l+24 : l+24]
	switch {
	case u < 1e8:
		binary.LittleEndian.PutUint64(d, digits8(uint32(u))>>(8*(8-n)))
	case u < 1e16:
		k := n - 8
		hi, lo := u/1e8, u%1e8
		binary.LittleEndian.PutUint64(d, digits8(uint32(hi))>>(8*(8-k)))
		binary.LittleEndian.PutUint64(d[k:], digits8(uint32(lo)))
	default:
		k := n - 16
		top, mid := u/1e16, u%1e16
		hi, lo := mid/1e8, mid%1e8
		binary.LittleEndian.PutUint64(d, digits8(uint32(top))>>(8*(8-k)))
		binary.LittleEndian.PutUint64(d[k:], digits8(uint32(hi)))
		binary.LittleEndian.PutUint64(d[8+k:], digits8(uint32(lo)))
	}
	return b[:l+n]
}

// timeDigits writes a line's times (ns since 1970: 19 digits), whose
// first eleven (the 100 ms they fall in) are most often the same for all
// of a line's times (its start, its end, its spans' starts): they are
// kept from the time before, and only the last eight are made.
type timeDigits struct {
	hi uint64 // the first digits' value (v/1e8), 0 when none are kept
	n  int
	d  [32]byte // room for appendUint
}

// append is appendInt(b, v).
func (t *timeDigits) append(b []byte, v int64) []byte {
	if v < 1e16 { // not a time of this century (or negative)
		return appendInt(b, v)
	}
	hi, lo := uint64(v)/1e8, uint64(v)%1e8
	if hi != t.hi {
		t.hi, t.n = hi, len(appendUint(t.d[:0], hi))
	}
	b = slices.Grow(b, t.n+8)
	b = append(b, t.d[:t.n]...)
	l := len(b)
	binary.LittleEndian.PutUint64(b[l:l+8], digits8(uint32(lo)))
	return b[:l+8]
}

// appendInt is strconv.AppendInt(b, v, 10).
func appendInt(b []byte, v int64) []byte {
	if v < 0 {
		return appendUint(append(b, '-'), -uint64(v))
	}
	return appendUint(b, uint64(v))
}

// hexPairs holds the two lower-case hex digits of each byte.
var hexPairs = func() (t [512]byte) {
	for i := range 256 {
		t[2*i], t[2*i+1] = hexDigits[i>>4], hexDigits[i&0xf]
	}
	return t
}()

// appendHex is hex.AppendEncode(b, src): four bytes at a time, their
// eight nibbles spread one a byte and made ASCII in one word (hex4).
func appendHex(b []byte, src []byte) []byte {
	n := 2 * len(src)
	b = slices.Grow(b, n)
	l := len(b)
	d := b[l : l+n]
	for len(src) >= 4 {
		binary.LittleEndian.PutUint64(d, hex4(binary.BigEndian.Uint32(src)))
		src, d = src[4:], d[8:]
	}
	for i, c := range src {
		d[2*i], d[2*i+1] = hexPairs[2*int(c)], hexPairs[2*int(c)+1]
	}
	return b[:l+n]
}

// hex4 is the lower-case hex of x's four bytes, most significant first,
// the first digit in the lowest byte: each nibble spread to a byte of its
// own, then made ASCII.
func hex4(x uint32) uint64 {
	v := uint64(x)
	v = (v&0xffff0000)<<16 | v&0xffff                    // its 16-bit halves to 32-bit lanes
	v = (v&0x0000ff000000ff00)<<8 | v&0x000000ff000000ff // its bytes to 16-bit lanes, x's last byte lowest
	v = (v&0x00f000f000f000f0)<<4 | v&0x000f000f000f000f // each byte's low nibble in the lane's low byte
	v = bits.ReverseBytes64(v)                           // x's first byte's high nibble lowest
	// Then per byte: '0'+n below 10, 'a'+n-10 from 10 ('a'-'0'-10 = 39 more).
	ten := (v + 0x0606060606060606) >> 4 & 0x0101010101010101
	return v + 0x3030303030303030 + ten*39
}

// appendAddrPort appends p as a JSON string, as p.String() spells it,
// without the string (addresses need no escaping).
func appendAddrPort(b []byte, p netip.AddrPort) []byte {
	a := p.Addr()
	if a.Is4() {
		v4 := a.As4()
		b = append(b, '"')
		b = appendUint(b, uint64(v4[0]))
		b = append(b, '.')
		b = appendUint(b, uint64(v4[1]))
		b = append(b, '.')
		b = appendUint(b, uint64(v4[2]))
		b = append(b, '.')
		b = appendUint(b, uint64(v4[3]))
		b = append(b, ':')
		b = appendUint(b, uint64(p.Port()))
		return append(b, '"')
	}
	if !p.IsValid() {
		return appendString(b, p.String())
	}
	b = append(b, '"')
	b = p.AppendTo(b)
	return append(b, '"')
}
