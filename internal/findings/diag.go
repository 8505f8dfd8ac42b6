package findings

import (
	"encoding/binary"
	"errors"
	"syscall"

	"golang.org/x/sys/unix"
)

// listenerState is a listening socket's accept queue as `ss -lnt`
// shows it: connections waiting (Recv-Q) and the backlog limit (Send-Q,
// min(listen()'s backlog, net.core.somaxconn)).
type listenerState struct {
	Queue, Limit int64
}

// Sizes and offsets of the sock_diag structures (linux/inet_diag.h).
const (
	nlmsgHdrLen     = 16
	inetDiagReqLen  = 56 // family, protocol, ext, pad, states, inet_diag_sockid (48)
	inetDiagMsgLen  = 72
	tcpListen       = 10
	offMsgSport     = 4  // inet_diag_msg.id.idiag_sport, big endian
	offMsgRqueue    = 56 // idiag_rqueue: the accept queue of a listener
	offMsgWqueue    = 60 // idiag_wqueue: its backlog limit
	maxDiagMessages = 1 << 16
)

// listenerQueues asks the kernel (inet_diag, as ss does) for the TCP
// listeners of tracerd's network namespace on these ports, IPv4 and
// IPv6; a port listened on more than once keeps its fullest socket.
func listenerQueues(ports map[uint16]bool) (map[uint16]listenerState, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	// A dump never blocks for long, but a kernel that does not answer
	// must not hold the sampler.
	tv := unix.Timeval{Sec: 1}
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	out := map[uint16]listenerState{}
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		if err := diagDump(fd, family, ports, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func diagDump(fd int, family uint8, ports map[uint16]bool, out map[uint16]listenerState) error {
	req := make([]byte, nlmsgHdrLen+inetDiagReqLen)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(req[8:], 1) // sequence
	body := req[nlmsgHdrLen:]
	body[0] = family
	body[1] = unix.IPPROTO_TCP
	ne.PutUint32(body[4:], 1<<tcpListen)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 32<<10)
	for seen := 0; seen < maxDiagMessages; {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return err
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return err
		}
		for _, m := range msgs {
			seen++
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if e := int32(ne.Uint32(m.Data)); e != 0 {
						return unix.Errno(-e)
					}
				}
				return errors.New("inet_diag: error message")
			}
			if len(m.Data) < inetDiagMsgLen {
				continue
			}
			port := binary.BigEndian.Uint16(m.Data[offMsgSport:])
			if !ports[port] {
				continue
			}
			st := listenerState{Queue: int64(ne.Uint32(m.Data[offMsgRqueue:])), Limit: int64(ne.Uint32(m.Data[offMsgWqueue:]))}
			if cur, ok := out[port]; !ok || st.Queue > cur.Queue {
				out[port] = st
			}
		}
	}
	return errors.New("inet_diag: dump did not end")
}
