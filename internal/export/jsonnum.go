package export

import (
	"math/bits"
	"net/netip"
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

// appendUint is strconv.AppendUint(b, u, 10).
func appendUint(b []byte, u uint64) []byte {
	if u < 10 {
		return append(b, byte('0'+u))
	}
	n := decimalLen(u)
	l := len(b)
	if cap(b)-l < n {
		b = append(b, make([]byte, n)...)
	} else {
		b = b[:l+n]
	}
	d := b[l : l+n]
	i := n
	// 8-digit chunks in 32-bit arithmetic (divisions by constants are
	// cheaper on 32 bits), as strconv does.
	for u >= 1e8 {
		lo := uint32(u % 1e8)
		u /= 1e8
		for range 4 {
			dd := lo % 100 * 2
			lo /= 100
			i -= 2
			d[i], d[i+1] = decimalPairs[dd], decimalPairs[dd+1]
		}
	}
	lo := uint32(u)
	for lo >= 100 {
		dd := lo % 100 * 2
		lo /= 100
		i -= 2
		d[i], d[i+1] = decimalPairs[dd], decimalPairs[dd+1]
	}
	if lo >= 10 {
		d[i-2], d[i-1] = decimalPairs[lo*2], decimalPairs[lo*2+1]
	} else {
		d[i-1] = byte('0' + lo)
	}
	return b
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

// appendHex is hex.AppendEncode(b, src).
func appendHex(b []byte, src []byte) []byte {
	for _, c := range src {
		b = append(b, hexPairs[2*int(c)], hexPairs[2*int(c)+1])
	}
	return b
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
