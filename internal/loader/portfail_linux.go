package loader

import (
	"net/netip"
)

// ConnectFail is one count of connect() failures with EADDRNOTAVAIL: a
// process, its network namespace and the destination it could not
// reach for want of a local port.
type ConnectFail struct {
	PID   uint32
	NetNS uint32         // inode of the caller's network namespace
	Dest  netip.AddrPort // zero: destinations past the map's capacity
	Count uint64
}

// ConnectFailures reads the EADDRNOTAVAIL counts since the engine
// started, and the failures that found the map full (lost).
func (t *Tracer) ConnectFailures() (fails []ConnectFail, lost uint64, err error) {
	m := t.coll.Maps[TracerdMapConnectFails]
	var k TracerdConnectFailKey
	var n uint64
	it := m.Iterate()
	for it.Next(&k, &n) {
		f := ConnectFail{PID: k.Tgid, NetNS: k.Netns, Count: n}
		switch k.Family {
		case uint16(TracerdAddrFamilyFAMILY_INET):
			f.Dest = netip.AddrPortFrom(netip.AddrFrom4([4]byte(k.Addr[:4])), k.Port)
		case uint16(TracerdAddrFamilyFAMILY_INET6):
			f.Dest = netip.AddrPortFrom(netip.AddrFrom16(k.Addr).Unmap(), k.Port)
		}
		fails = append(fails, f)
	}
	if err := it.Err(); err != nil {
		return nil, 0, err
	}
	if err := t.coll.Maps[TracerdMapConnectFailsLost].Lookup(uint32(0), &lost); err != nil {
		return nil, 0, err
	}
	return fails, lost, nil
}

// TracedPIDs are the processes that own a traced connection now (at
// most the map's 4096; exited ones leave at their exit).
func (t *Tracer) TracedPIDs() ([]uint32, error) {
	var pid uint32
	var v uint8
	var out []uint32
	it := t.coll.Maps[TracerdMapTracedTgids].Iterate()
	for it.Next(&pid, &v) {
		out = append(out, pid)
	}
	return out, it.Err()
}
