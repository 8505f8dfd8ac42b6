package correlate

import (
	"github.com/tracerd/tracerd/internal/loader"
)

// goTLSClientHandshake: crypto/tls's client handshake, one call per
// outbound TLS connection of a Go process (probed like serverHandshake).
const goTLSClientHandshake = loader.TracerdGoFuncGO_TLS_CLIENT_HANDSHAKE

// Outbound TLS connections. The kernel engine cuts a client connection's
// records write → read, so the handshake's flights are records like any
// call's: the ClientHello written and the server's flight read (TLS 1.2:
// then the client's key exchange and the server's Finished). They are
// not calls: they are held here, by connection, and folded into the
// connection's first call as its tls_handshake phase (its connect phase
// with it), which then starts where the connection did.
//
// A client record is a handshake flight when it does not end its
// connection and
//   - what it wrote begins with a TLS handshake record (content type 22,
//     version 3.x) and what it read, if anything, with TLS records: the
//     ClientHello (the connection's first record) or, once one is held,
//     TLS 1.2's ClientKeyExchange;
//   - or its connection's handshake is held and the process's probed
//     client handshake (Go's clientHandshake) ended after the record's
//     last write (any other flight inside the handshake; TLS 1.3's client
//     Finished, when the session tickets the server sends after the
//     handshake were read before the app wrote its request).
//
// The first record on the connection that is neither is its first call.
// Its send then begins where the handshake ended: TLS 1.3's (and a
// resumed TLS 1.2's) client Finished is written just before the request,
// often as a part of that record.
//
// A client record that only wrote one small TLS alert or application
// data record (≤ 64 bytes) before its connection closed, and read
// nothing, is the client's close_notify (crypto/tls's Close sends it):
// the connection's end, not a call; it is dropped (isTLSCloseNotify).
//
// The handshake is timed by the probe when the process's crypto/tls
// client handshake is probed (entry → return, the probe's cost off): the
// call of the process whose window holds the ClientHello's write, on the
// thread that wrote it when there are several. Otherwise from the bytes:
// the ClientHello's first write → the first call's first write (TLS 1.3:
// the client's Finished; TLS 1.2: its first write after it read the
// server's Finished); the key generation before the ClientHello is then
// left out.

// maxClientHandshakes bounds the probed client handshakes kept per
// process (to the join horizon) for their connections' records.
const maxClientHandshakes = 1024

// clientTLSHeld is an outbound connection's handshake so far.
type clientTLSHeld struct {
	pid, tid   uint32 // the process, the ClientHello's writer
	comm       string
	cgroup     uint64
	conn       Conn
	syn, est   uint64 // monotonic ns: connect (0: not seen)
	synRetrans uint32
	firstWrite uint64 // monotonic ns: the ClientHello's write
	last       uint64 // monotonic ns: the flights' last read or write
	index      uint32 // request_index of the ClientHello's record
	since      int64  // wall ns when held (the join horizon)

	// The probed handshake, once found (wall ns).
	probed     bool
	start, end int64
	tls        TLS
}

// isTLSHandshakeWrite: the bytes written begin with a TLS handshake record.
func isTLSHandshakeWrite(rec *loader.Record) bool {
	n := min(int(rec.ReqLen), len(rec.ReqHead))
	return n >= 3 && rec.ReqHead[0] == tlsHandshake && rec.ReqHead[1] == tlsMajor && rec.ReqHead[2] <= 4
}

// isTLSAnswer: nothing was read, or it begins with a TLS record.
func isTLSAnswer(rec *loader.Record) bool {
	n := min(int(rec.RespLen), len(rec.RespHead))
	if rec.T_rd == 0 || n == 0 {
		return true
	}
	return n >= 2 && rec.RespHead[0] >= tlsChangeCipherSpec && rec.RespHead[0] <= tlsApplicationData && rec.RespHead[1] == tlsMajor
}

// holdClientTLS says whether rec, an outbound call's record, is a flight
// of its connection's TLS handshake (then kept for the first call).
func (c *Correlator) holdClientTLS(r *Request, rec *loader.Record) bool {
	if rec.EndReason != uint8(EndNextRequest) {
		return false // the connection's last record: it takes what is held
	}
	var h *clientTLSHeld
	if len(c.clientTLS) > 0 {
		h = c.clientTLS[rec.Sk]
	}
	flight := isTLSHandshakeWrite(rec) && isTLSAnswer(rec)
	switch {
	case h == nil:
		if !flight || rec.RequestIndex != 0 || len(c.clientTLS) >= maxTLSHeld {
			return false
		}
		if c.clientTLS == nil {
			c.clientTLS = map[uint64]*clientTLSHeld{}
		}
		h = &clientTLSHeld{pid: rec.Pid, tid: rec.Tid, comm: r.Comm, cgroup: r.CgroupID, conn: r.Conn,
			firstWrite: rec.T_wr, index: rec.RequestIndex, synRetrans: r.TCP.SynRetransmits}
		if r.Phases.Has(Connect) {
			h.syn, h.est = rec.T_syn, rec.T_est
		}
		c.clientTLS[rec.Sk] = h
	case h.pid != rec.Pid:
		return false
	case flight:
	default:
		// Wrote nothing after the handshake returned: its writes were
		// the handshake's (TLS 1.3's client Finished), what it read
		// after them post-handshake messages (session tickets) read
		// before the app wrote its request.
		c.findClientTLSCall(h)
		if !h.probed || c.clock.Wall(max(rec.T_wl, rec.T_wr)) > h.end {
			return false
		}
	}
	h.last = max(h.last, rec.T_wr, rec.T_wl, rec.T_rd, rec.T_rl)
	h.since = c.clock.Wall(h.last)
	return true
}

// findClientTLSCall looks for h's probed handshake among its process's
// (once found, it is h's: joined, its times and parameters copied).
func (c *Correlator) findClientTLSCall(h *clientTLSHeld) {
	if h.probed {
		return
	}
	gp := c.goProc(h.pid)
	if gp == nil || !gp.probes.TLS {
		return
	}
	at := c.clock.Wall(h.firstWrite)
	var best *goCall
	for _, call := range gp.clientHandshakes {
		if call.joined || call.start > at || call.end < at {
			continue
		}
		// Concurrent handshakes: the one on the ClientHello's thread,
		// else the latest begun (the ClientHello follows the entry by the
		// key generation alone).
		if best == nil {
			best = call
			continue
		}
		if mine, bests := call.tid == h.tid, best.tid == h.tid; mine != bests {
			if mine {
				best = call
			}
		} else if call.start > best.start {
			best = call
		}
	}
	if best == nil {
		return
	}
	best.joined = true
	h.probed, h.start, h.end = true, best.start, gp.end(best)
	h.tls = TLS{Outbound: true, Known: best.tlsFlags&uint8(loader.TracerdGoTlsFlagsGO_TLS_KNOWN) != 0,
		Failed: best.tlsFlags&uint8(loader.TracerdGoTlsFlagsGO_TLS_FAILED) != 0}
	if h.tls.Known {
		h.tls.Version, h.tls.CipherSuite = uint16(best.arg), uint16(best.arg>>16)
		h.tls.Resumed = best.tlsFlags&uint8(loader.TracerdGoTlsFlagsGO_TLS_RESUMED) != 0
	}
}

// takeClientTLS takes the held handshake of rec's connection, if any,
// when its first call's record comes: the probed handshake is found (its
// event is in by then: the call's write follows the handshake's return)
// and the facts read from the bytes, and the connection's entries are
// cleared at once, before the call may wait for its parent (a new
// connection on the same socket must not find them).
func (c *Correlator) takeClientTLS(rec *loader.Record) *clientTLSHeld {
	if len(c.clientTLS) == 0 {
		return nil
	}
	h := c.clientTLS[rec.Sk]
	if h == nil || h.pid != rec.Pid {
		return nil
	}
	delete(c.clientTLS, rec.Sk)
	c.findClientTLSCall(h)
	if !h.probed {
		h.tls = TLS{Outbound: true}
	}
	c.clientWireFacts(rec.Sk, h.pid, &h.tls)
	return h
}

// foldClientTLS makes r, the first call on an outbound connection whose
// handshake h was held (takeClientTLS; nil: none), begin where the
// connection began, with its connect and tls_handshake phases, its send
// from the handshake's end.
func (c *Correlator) foldClientTLS(r *Request, rec *loader.Record, h *clientTLSHeld) {
	if h == nil {
		return
	}
	c.tls = h.tls
	start, end := c.clock.Wall(h.firstWrite), c.clock.Wall(rec.T_wr)
	if rec.T_wr == 0 {
		end = c.clock.Wall(h.last) // the connection closed: the last flight
	}
	if h.probed {
		start, end = h.start, h.end
	}
	r.TLS = &c.tls
	r.Phases.Set(TLSHandshake, end-start)
	if rec.T_wr != 0 {
		sent := c.clock.Wall(max(rec.T_wl, rec.T_tx, rec.T_wr))
		r.Phases.Set(Send, sent-max(c.clock.Wall(rec.T_wr), end))
	}
	r.StartUnixNano = min(r.StartUnixNano, start)
	if h.syn != 0 && h.est >= h.syn {
		r.Phases.Set(Connect, int64(h.est-h.syn))
		r.TCP.SynRetransmits = h.synRetrans
		r.StartUnixNano = min(r.StartUnixNano, c.clock.Wall(h.syn))
	}
	r.EndUnixNano = max(r.EndUnixNano, end)
	r.DurationNs = r.EndUnixNano - r.StartUnixNano
	r.Conn.RequestIndex = h.index
}

// expireClientTLS sends out the handshakes held past tlsHoldFor (or
// all) whose connection sent nothing more: a call without a request
// (its connect and tls_handshake), so that the connection's cost is not
// lost.
func (c *Correlator) expireClientTLS(now int64, all bool) {
	for sk, h := range c.clientTLS {
		if !all && h.since >= now-tlsHoldFor.Nanoseconds() {
			continue
		}
		delete(c.clientTLS, sk)
		c.findClientTLSCall(h)
		c.req = Request{Direction: DirClient, PID: h.pid, TID: h.tid, Comm: h.comm, Service: h.comm,
			CgroupID: h.cgroup, Conn: h.conn, EndReason: EndIdle}
		r := &c.req
		start, end := c.clock.Wall(h.firstWrite), c.clock.Wall(h.last)
		c.tls = TLS{Outbound: true}
		if h.probed {
			start, end = h.start, h.end
			c.tls = h.tls
		}
		c.clientWireFacts(sk, h.pid, &c.tls)
		r.TLS = &c.tls
		r.Phases.Set(TLSHandshake, end-start)
		r.StartUnixNano = start
		if h.syn != 0 && h.est >= h.syn {
			r.Phases.Set(Connect, int64(h.est-h.syn))
			r.TCP.SynRetransmits = h.synRetrans
			r.StartUnixNano = min(start, c.clock.Wall(h.syn))
		}
		r.EndUnixNano = max(end, r.StartUnixNano)
		r.DurationNs = r.EndUnixNano - r.StartUnixNano
		if w, ok := c.clients.parent(r); ok {
			adopt(r, w)
		}
		assignIDs(r, c.rng)
		c.emit(r)
	}
}

// TLS content type 21 (alert); an encrypted alert is at most this long
// (TLS 1.2 AES-GCM: 26 bytes; TLS 1.3: 19).
const (
	tlsAlert          = 21
	tlsMaxAlertRecord = 64
)

// isTLSCloseNotify: an unanswered client record that ended its
// connection having written exactly one small TLS record of type alert
// or application data (encrypted, TLS 1.3 hides the alert's type):
// the close_notify crypto/tls sends at Close. No plaintext protocol's
// request begins with 0x15 0x03 or 0x17 0x03; a TLS call of ≤ 64
// bytes that got no answer before its connection closed is taken for
// one too.
func isTLSCloseNotify(rec *loader.Record) bool {
	if rec.T_rd != 0 || rec.EndReason == uint8(EndNextRequest) {
		return false
	}
	n := min(int(rec.ReqLen), len(rec.ReqHead))
	if n < 5 || (rec.ReqHead[0] != tlsAlert && rec.ReqHead[0] != tlsApplicationData) || rec.ReqHead[1] != tlsMajor {
		return false
	}
	// The head kept is the record, or its bytes up to a '\n' (the
	// kernel keeps a request line's worth of what is not HTTP).
	body := int(rec.ReqHead[3])<<8 | int(rec.ReqHead[4])
	return body <= tlsMaxAlertRecord && n <= 5+body
}
