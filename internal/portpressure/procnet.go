package portpressure

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"io"
	"net/netip"
	"strconv"
)

// TCP states as /proc/net/tcp's st column shows them (the kernel's
// TCP_* values).
const (
	stateEstablished = 0x01
	stateSynSent     = 0x02
	stateTimeWait    = 0x06
	stateListen      = 0x0A
)

// socket is one line of /proc/net/tcp{,6}: what port pressure needs.
type socket struct {
	local  netip.AddrPort
	remote netip.AddrPort
	state  uint8
}

// scanSockets calls fn for each socket in /proc/net/tcp or tcp6 text
// ("sl local_address rem_address st …", addresses as HEX:HEX). Lines
// it cannot read are skipped.
func scanSockets(r io.Reader, fn func(socket)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 512), 4096)
	first := true
	for sc.Scan() {
		if first { // header
			first = false
			continue
		}
		var f [4][]byte
		n := fields(sc.Bytes(), f[:])
		if n < 4 {
			continue
		}
		local, ok1 := parseHexAddrPort(f[1])
		remote, ok2 := parseHexAddrPort(f[2])
		st, err := strconv.ParseUint(string(f[3]), 16, 8)
		if !ok1 || !ok2 || err != nil {
			continue
		}
		fn(socket{local: local, remote: remote, state: uint8(st)})
	}
	return sc.Err()
}

// fields splits b at spaces into out, returning how many it filled.
func fields(b []byte, out [][]byte) int {
	n := 0
	for i := 0; i < len(b) && n < len(out); {
		for i < len(b) && b[i] == ' ' {
			i++
		}
		j := i
		for j < len(b) && b[j] != ' ' {
			j++
		}
		if j > i {
			out[n] = b[i:j]
			n++
		}
		i = j
	}
	return n
}

// parseHexAddrPort reads "0100007F:1F90" (IPv4) or 32 hex digits and a
// port (IPv6): the address as the kernel's 32-bit words in host order
// (little-endian here), the port in hex. IPv4-mapped IPv6 addresses are
// unmapped, so that a dual-stack socket and ss agree on its address.
func parseHexAddrPort(b []byte) (netip.AddrPort, bool) {
	i := len(b) - 5
	if i < 0 || b[i] != ':' {
		return netip.AddrPort{}, false
	}
	port, err := strconv.ParseUint(string(b[i+1:]), 16, 16)
	if err != nil {
		return netip.AddrPort{}, false
	}
	var raw [16]byte
	h := b[:i]
	if len(h) != 8 && len(h) != 32 {
		return netip.AddrPort{}, false
	}
	if _, err := hex.Decode(raw[:len(h)/2], h); err != nil {
		return netip.AddrPort{}, false
	}
	// Each 32-bit word was printed from host order: swap its bytes back.
	for w := 0; w < len(h)/8; w++ {
		v := binary.BigEndian.Uint32(raw[w*4:])
		binary.LittleEndian.PutUint32(raw[w*4:], v)
	}
	var a netip.Addr
	if len(h) == 8 {
		a = netip.AddrFrom4([4]byte(raw[:4]))
	} else {
		a = netip.AddrFrom16(raw).Unmap()
	}
	return netip.AddrPortFrom(a, uint16(port)), true
}
