package export

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"testing"
	"unicode/utf8"

	"github.com/tracerd/tracerd/internal/correlate"
)

// The line's own number, id and address writers write what strconv,
// encoding/hex and netip write: every power of ten and its neighbours,
// the extremes, and random values of every length.
func TestAppendNumbersMatchStrconv(t *testing.T) {
	prefix := []byte(`{"x":`) // they append, never overwrite
	ints := []int64{0, 1, -1, 9, 10, 11, 99, 100, 101, math.MaxInt64, math.MinInt64, math.MinInt64 + 1, 1764575227123456789}
	for p := int64(1); p <= 1e18; p *= 10 {
		ints = append(ints, p-1, p, p+1, -p, -p+1, -p-1)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 100_000 {
		ints = append(ints, rng.Int64()>>rng.IntN(64), -(rng.Int64() >> rng.IntN(64)))
	}
	for _, v := range ints {
		if got, want := appendInt(bytes.Clone(prefix), v), strconv.AppendInt(bytes.Clone(prefix), v, 10); !bytes.Equal(got, want) {
			t.Fatalf("appendInt(%d) = %s, want %s", v, got, want)
		}
		u := uint64(v)
		if got, want := appendUint(prefix[:len(prefix):len(prefix)], u), strconv.AppendUint(bytes.Clone(prefix), u, 10); !bytes.Equal(got, want) {
			t.Fatalf("appendUint(%d) = %s, want %s", u, got, want)
		}
	}
	for _, u := range []uint64{math.MaxUint64, math.MaxUint64 - 1, 1e19, 1e19 - 1} {
		if got, want := appendUint(nil, u), strconv.AppendUint(nil, u, 10); !bytes.Equal(got, want) {
			t.Fatalf("appendUint(%d) = %s, want %s", u, got, want)
		}
	}
	for range 1000 {
		var id [16]byte
		for i := range id {
			id[i] = byte(rng.Uint32())
		}
		if got, want := appendHex(bytes.Clone(prefix), id[:]), hex.AppendEncode(bytes.Clone(prefix), id[:]); !bytes.Equal(got, want) {
			t.Fatalf("appendHex(%x) = %s, want %s", id, got, want)
		}
	}
}

func TestAppendAddrPortMatchesString(t *testing.T) {
	addrs := []netip.AddrPort{{}, netip.AddrPortFrom(netip.Addr{}, 80)}
	for _, s := range []string{"0.0.0.0:0", "127.0.0.1:8080", "255.255.255.255:65535", "10.0.100.9:9", "[::1]:80",
		"[::ffff:127.0.0.1]:443", "[fe80::1%eth0]:22", "[2001:db8::5]:65535"} {
		addrs = append(addrs, netip.MustParseAddrPort(s))
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 10_000 {
		var a [4]byte
		for i := range a {
			a[i] = byte(rng.Uint32())
		}
		addrs = append(addrs, netip.AddrPortFrom(netip.AddrFrom4(a), uint16(rng.Uint32())))
	}
	for _, p := range addrs {
		if got, want := appendAddrPort(nil, p), strconv.AppendQuote(nil, p.String()); !bytes.Equal(got, want) {
			t.Fatalf("appendAddrPort(%v) = %s, want %s", p, got, want)
		}
	}
}

// AppendJSON stays encoding/json's rendering of ToJSON over random
// numbers, ids, addresses and phase sets, not only the fixed requests.
func TestAppendJSONMatchesEncodingJSONRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	num := func() int64 { return rng.Int64() >> rng.IntN(64) }
	for i := range 20_000 {
		r := fixedRequests()[i%2]
		r.StartUnixNano, r.EndUnixNano, r.DurationNs = num(), num(), -num()
		r.PID, r.TID, r.CgroupID = rng.Uint32()>>rng.IntN(32), rng.Uint32(), rng.Uint64()>>rng.IntN(64)
		r.Conn.RequestIndex = rng.Uint32() >> rng.IntN(32)
		r.Conn.Local = netip.AddrPortFrom(netip.AddrFrom4([4]byte{byte(rng.Uint32()), byte(rng.Uint32()), 0, byte(rng.Uint32())}), uint16(rng.Uint32()))
		if i%7 == 0 {
			r.Conn.Peer = netip.AddrPortFrom(netip.AddrFrom16([16]byte{0xfe, 0x80, 15: byte(i)}), uint16(i))
		}
		for j := range r.TraceID {
			r.TraceID[j] = byte(rng.Uint32())
		}
		for j := range r.ParentSpanID {
			r.ParentSpanID[j] = byte(rng.Uint32() * uint32(i%2))
		}
		r.Phases = correlate.Phases{}
		for p := range correlate.NumPhases {
			if rng.IntN(3) == 0 {
				r.Phases.Set(p, num())
			}
		}
		r.TCP.Valid, r.TCP.Nagle = rng.IntN(2) == 0, rng.IntN(2) == 0
		r.TCP.SrttUs, r.TCP.Retransmits, r.TCP.SndCwnd = rng.Uint32()>>rng.IntN(32), rng.Uint32()>>rng.IntN(32), rng.Uint32()
		r.Spans = nil
		for range rng.IntN(4) {
			r.Spans = append(r.Spans, correlate.Span{Name: "runtime.GC", StartUnixNano: num(), DurationNs: num()})
		}
		if r.HTTP != nil {
			h := *r.HTTP
			h.Status = int(rng.Int32N(1000)) - 10
			r.HTTP = &h
		}
		want, err := json.Marshal(ToJSON(&r))
		if err != nil {
			t.Fatal(err)
		}
		if got := AppendJSON(nil, &r); !bytes.Equal(got, want) {
			t.Fatalf("AppendJSON:\n%s\nencoding/json:\n%s", got, want)
		}
	}
}

// digits8 is exact for every x < 1e8: each of its two 4-digit halves
// against its digits spelled by strconv.
func TestDigits8AllValues(t *testing.T) {
	var four [10000]uint64 // n's four digits, as digits8 packs them
	for n := range four {
		var d [8]byte
		copy(d[:], fmt.Sprintf("%04d", n))
		four[n] = binary.LittleEndian.Uint64(d[:])
	}
	for hi := range uint32(10000) {
		wantHi := four[hi]
		for lo := range uint32(10000) {
			if got, want := digits8(hi*10000+lo), wantHi|four[lo]<<32; got != want {
				t.Fatalf("digits8(%d) = %#x, want %#x", hi*10000+lo, got, want)
			}
		}
	}
}

// appendUint writes into the room past a slice's length that it
// returns as its own only where the number goes: what follows the
// number in the backing array (the next append's room) may be
// overwritten, what comes before it never.
func TestAppendUintKeepsPrefix(t *testing.T) {
	for _, u := range []uint64{123, 12345678, 123456789, 1234567890123456, 12345678901234567, math.MaxUint64} {
		buf := make([]byte, 3, 64)
		copy(buf, "abc")
		got := appendUint(buf, u)
		if want := strconv.AppendUint([]byte("abc"), u, 10); !bytes.Equal(got, want) || &got[0] != &buf[0] {
			t.Fatalf("appendUint(abc, %d) = %q, want %q in the same array", u, got, want)
		}
	}
}

// appendEscaped (its 8-byte scan and its byte loop) escapes as
// encoding/json does: every byte value at every place of a word and of
// the tail, and random strings of ASCII, specials, runes and invalid
// UTF-8.
func TestAppendEscapedMatchesEncodingJSON(t *testing.T) {
	check := func(s string) {
		t.Helper()
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendString([]byte{}, s); !bytes.Equal(got, want) {
			t.Fatalf("appendString(%q) = %s, want %s", s, got, want)
		}
	}
	plain := "abcdefghijklmnopqrstuvw" // 23 bytes: two words and a tail
	for c := range 256 {
		for i := range len(plain) {
			check(plain[:i] + string([]byte{byte(c)}) + plain[i+1:])
		}
	}
	pieces := []string{"a", "Z", "/", "?", "=", "0", " ", "~", "\x7f", "\"", "\\", "<", ">", "&", "\n", "\r", "\t", "\x00", "\x1f",
		"é", "€", "😀", "\u2028", "\u2029", "\xff", "\xc3", "\xe2\x82", "abcdefgh", "/api/v1/users"}
	rng := rand.New(rand.NewPCG(7, 8))
	for range 50_000 {
		var s []byte
		for range rng.IntN(12) {
			s = append(s, pieces[rng.IntN(len(pieces))]...)
		}
		check(string(s))
	}
}

// escapes8 finds the bytes appendEscaped does not copy as they are, in
// any lane, whatever the other lanes hold.
func TestEscapes8(t *testing.T) {
	needs := func(c byte) bool { return c >= utf8.RuneSelf || !jsonSafe[c] }
	rng := rand.New(rand.NewPCG(9, 10))
	for range 200_000 {
		var w [8]byte
		want := false
		for i := range w {
			w[i] = byte(rng.Uint32())
			if rng.IntN(2) == 0 { // mostly plain, so that one special byte decides
				w[i] = 0x20 + w[i]%0x5f
			}
			want = want || needs(w[i])
		}
		if got := escapes8(binary.LittleEndian.Uint64(w[:])); got != want {
			t.Fatalf("escapes8(%q) = %v, want %v", w[:], got, want)
		}
	}
	for c := range 256 {
		for i := range 8 {
			w := []byte("abcdefgh")
			w[i] = byte(c)
			if got, want := escapes8(binary.LittleEndian.Uint64(w)), needs(byte(c)); got != want {
				t.Fatalf("escapes8(%q) = %v, want %v", w, got, want)
			}
		}
	}
}

// appendHex (hex4's words and the byte loop's tail) writes what
// encoding/hex does: every byte value in every place of a word, random
// words, and every length up to 17.
func TestAppendHexMatchesEncodingHex(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	check := func(src []byte) {
		t.Helper()
		prefix := []byte("id:")
		if got, want := appendHex(bytes.Clone(prefix), src), hex.AppendEncode(bytes.Clone(prefix), src); !bytes.Equal(got, want) {
			t.Fatalf("appendHex(%x) = %s, want %s", src, got, want)
		}
	}
	for c := range 256 {
		for i := range 4 {
			w := []byte{byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32())}
			w[i] = byte(c)
			check(w)
		}
	}
	for n := range 18 {
		for range 2000 {
			src := make([]byte, n)
			for i := range src {
				src[i] = byte(rng.Uint32())
			}
			check(src)
		}
	}
}

// timeDigits writes what strconv does for runs of times that share
// their first digits, cross a 100 ms boundary, jump, or are no times at
// all (small, negative), in any order.
func TestTimeDigitsMatchStrconv(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	base := []int64{1_700_000_000_000_000_000, 1_764_575_227_099_999_990, 9_999_999_999_999_999, 1e16, 1e18 - 1, 1e18, math.MaxInt64}
	for range 20_000 {
		var td timeDigits
		b := []byte("[")
		want := []byte("[")
		v := base[rng.IntN(len(base))]
		for range 1 + rng.IntN(6) {
			switch rng.IntN(5) {
			case 0:
				v = rng.Int64() >> rng.IntN(64)
			case 1:
				v = -v
			default:
				v += rng.Int64N(200_000_000) - 100_000_000 // within ±100 ms
			}
			b = append(td.append(b, v), ',')
			want = append(strconv.AppendInt(want, v, 10), ',')
		}
		if !bytes.Equal(b, want) {
			t.Fatalf("timeDigits: %s, want %s", b, want)
		}
	}
}
