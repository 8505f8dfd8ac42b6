package correlate

import (
	"bytes"
	"net/netip"

	"github.com/tracerd/tracerd/internal/httpparse"
	"github.com/tracerd/tracerd/internal/loader"
)

func has(flags uint32, f loader.TracerdReqFlags) bool { return flags&uint32(f) != 0 }

// FromRecord builds a Request from a kernel record.
func FromRecord(rec *loader.Record, clock Clock) Request {
	var r Request
	fromRecord(&r, rec, clock, cString(rec.Comm[:]), new(HTTP), new(interner))
	return r
}

// recordBase is what every record says the same way, served or sent:
// who, which connection, why it ended, whether its bytes were TLS.
// It overwrites all of *r (the correlator decodes into one Request,
// not a 544-byte value copied from call to call).
func recordBase(r *Request, rec *loader.Record, comm string) {
	*r = Request{
		PID:       rec.Pid,
		TID:       rec.Tid,
		Comm:      comm,
		CgroupID:  rec.CgroupId,
		EndReason: EndReason(rec.EndReason),
		Encrypted: isTLSRequestHead(rec),
	}
	r.Service = r.Comm
	r.Conn = Conn{
		Local:        addrPort(rec.Family, rec.Laddr, rec.Lport),
		Peer:         addrPort(rec.Family, rec.Raddr, rec.Rport),
		RequestIndex: rec.RequestIndex,
		Sock:         rec.Sk,
	}
}

// fromRecord builds into *r a Request whose comm is already decoded;
// its HTTP, if any, is http, its strings from strs.
func fromRecord(r *Request, rec *loader.Record, clock Clock, comm string, http *HTTP, strs *interner) {
	recordBase(r, rec, comm)
	r.Answered = rec.T_wl != 0
	derivePhases(&r.Phases, rec)
	if rec.T_wr != 0 && rec.T_wr > rec.T_rd {
		r.FirstWriteNs = int64(rec.T_wr - rec.T_rd)
	}

	// Start: first byte queued (or the connection entering the accept
	// queue, for the first request); end: the answer's last byte left.
	start := rec.T_rd
	if has(rec.Flags, loader.TracerdReqFlagsREQ_HAS_RX) && rec.T_rx != 0 && rec.T_rx < start {
		start = rec.T_rx
	}
	if rec.RequestIndex == 0 && has(rec.Flags, loader.TracerdReqFlagsREQ_HAS_EST) && rec.T_est != 0 && rec.T_est < start {
		start = rec.T_est
	}
	end := rec.T_rd
	for _, t := range []uint64{rec.T_wl, rec.T_tx} {
		if t > end {
			end = t
		}
	}
	r.StartUnixNano = clock.Wall(start)
	r.EndUnixNano = clock.Wall(end)
	r.DurationNs = int64(end - start)

	r.TCP = TCP{
		Valid:       has(rec.Flags, loader.TracerdReqFlagsREQ_HAS_TCP),
		SrttUs:      rec.SrttUs,
		Retransmits: rec.Retransmits,
		ZeroWindow:  rec.ZeroWindow,
		SndCwnd:     rec.SndCwnd,
		Nagle:       rec.Nagle != 0,
		Retrans: RetransShape{
			MaxSeg: rec.RtMaxSeg, Repeats: rec.RtRepeats, RepeatSeg: rec.RtRepeatSeg,
			MSSFirst: rec.RtMssFirst, MSSLast: rec.RtMssLast, PMTUFirst: rec.RtPmtuFirst, PMTULast: rec.RtPmtuLast,
		},
		AcceptQueueLen: rec.AccQueue, AcceptQueueMax: rec.AccQueueMax,
		OwnWindow: OwnWindow{Zero: rec.RwndZero, UnreadNs: int64(rec.RwndUnreadNs), ReadingNs: int64(rec.RwndReadingNs)},
	}
	parseHTTP(r, rec, http, strs)
}

// derivePhases computes each phase the record's timestamps allow.
func derivePhases(ps *Phases, rec *loader.Record) {
	f := rec.Flags
	if rec.RequestIndex == 0 && has(f, loader.TracerdReqFlagsREQ_HAS_EST) && rec.T_est != 0 && rec.T_acc >= rec.T_est {
		ps.Set(AcceptQueue, int64(rec.T_acc-rec.T_est))
	}
	if has(f, loader.TracerdReqFlagsREQ_HAS_SOFTIRQ) {
		ps.Set(Softirq, int64(rec.SoftirqNs))
	}
	if has(f, loader.TracerdReqFlagsREQ_HAS_RX) && rec.T_rx != 0 {
		from := rec.T_rx
		if rec.RequestIndex == 0 && rec.T_acc > from {
			from = rec.T_acc // bytes cannot be read before accept()
		}
		ps.Set(RecvQueue, int64(rec.T_rd)-int64(from))
	}
	if has(f, loader.TracerdReqFlagsREQ_HAS_SCHED) && rec.T_wl != 0 {
		ps.Set(Runqueue, int64(rec.RunqNs))
		ps.Set(CFSThrottle, int64(rec.ThrottleNs))
	}
	if rec.T_wl != 0 {
		ps.Set(App, int64(rec.T_wl)-int64(rec.T_rd))
	}
	if rec.T_wl != 0 && rec.T_tx != 0 {
		ps.Set(SendQueue, int64(rec.T_tx)-int64(rec.T_wl))
	}
	if rec.T_tx != 0 && rec.T_ack != 0 {
		ps.Set(AckWait, int64(rec.T_ack)-int64(rec.T_tx))
	}
}

// isTLSRequestHead: the request's first bytes (read by a server, written
// by a client) are a TLS record's header: content type 20–23, version
// 3.x. Plaintext HTTP never begins so (a method is ASCII letters).
func isTLSRequestHead(rec *loader.Record) bool {
	n := min(int(rec.ReqLen), len(rec.ReqHead))
	return n >= 3 && rec.ReqHead[0] >= tlsChangeCipherSpec && rec.ReqHead[0] <= tlsApplicationData &&
		rec.ReqHead[1] == tlsMajor && rec.ReqHead[2] <= 4
}

func parseHTTP(r *Request, rec *loader.Record, http *HTTP, strs *interner) {
	n := min(int(rec.ReqLen), len(rec.ReqHead))
	req, ok := httpparse.ParseRequestWith(rec.ReqHead[:n], strs.str)
	if !ok {
		return
	}
	*http = HTTP{Method: req.Method, Target: req.Target}
	r.HTTP = http
	if tp := req.TraceParent; tp.Valid {
		r.TraceID = tp.TraceID
		r.ParentSpanID = tp.SpanID
		r.TraceFlags = tp.Flags
	}
	m := min(int(rec.RespLen), len(rec.RespHead))
	if status, ok := httpparse.ParseResponse(rec.RespHead[:m]); ok {
		r.HTTP.Status = status
	}
}

func addrPort(family uint16, raw [16]uint8, port uint16) netip.AddrPort {
	var a netip.Addr
	if family == uint16(loader.TracerdAddrFamilyFAMILY_INET6) {
		a = netip.AddrFrom16(raw).Unmap()
	} else {
		a = netip.AddrFrom4([4]byte(raw[:4]))
	}
	return netip.AddrPortFrom(a, port)
}

// sameCString says whether the NUL-terminated b spells s (a valid
// UTF-8 string that cString made before), without allocating.
func sameCString(b []int8, s string) bool {
	n := 0
	for n < len(b) && b[n] != 0 {
		n++
	}
	if n != len(s) {
		return false
	}
	for i := 0; i < n; i++ {
		if byte(b[i]) != s[i] {
			return false
		}
	}
	return true
}

func cString(b []int8) string {
	buf := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		buf = append(buf, byte(c))
	}
	return string(bytes.ToValidUTF8(buf, []byte("?")))
}
