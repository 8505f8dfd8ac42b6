package correlate

import (
	"net/netip"
	"time"

	"github.com/tracerd/tracerd/internal/httpparse"
	"github.com/tracerd/tracerd/internal/loader"
	"github.com/tracerd/tracerd/internal/tlswire"
)

// TLS is what a connection's TLS handshake negotiated, on its first
// request. Known is false when the server's TLS library was not probed
// or its fields could not be read (a stripped Go binary): the handshake
// is then timed from the bytes alone and the rest is unknown.
type TLS struct {
	Known       bool
	Version     uint16 // crypto/tls.VersionTLS13 etc.
	CipherSuite uint16 // IANA id
	Resumed     bool
	ClientCert  bool // the client sent a certificate (mTLS)
	Failed      bool // the handshake returned an error
	// Outbound: the traced process was the client (an outbound call's
	// handshake): ClientCert is not known.
	Outbound bool
	// Read from the handshake's bytes (internal/tlswire), when the
	// server's TLS library gave nothing (OpenSSL): Known then says that
	// version and cipher were read; resumption or the client's
	// certificate may still be unknown (TLS 1.3 encrypts the client's
	// certificate; a capture cut before the fact).
	FromWire          bool
	ResumedUnknown    bool
	ClientCertUnknown bool
}

// The handshake's end, from the server's TLS library: Go's crypto/tls
// (a call on the goroutine), OpenSSL's libssl (an instant on the
// thread, its goid the thread id); HTTP/1 under TLS from libssl.
const (
	goTLSHandshake   = loader.TracerdGoFuncGO_TLS_HANDSHAKE
	sslHandshakeDone = loader.TracerdGoFuncSSL_HANDSHAKE_DONE
	sslReadLine      = loader.TracerdGoFuncSSL_READ_LINE
	sslWriteStatus   = loader.TracerdGoFuncSSL_WRITE_STATUS
)

// A TLS handshake's exchanges reach the kernel engine as reads and
// writes like any request's: the ClientHello read, the server's flight
// written, the client's next flight read... Each such exchange is a
// kernel record ended by the next one. They are not requests: they are
// held here, by connection, and folded into the connection's first
// request as its tls_handshake phase (from the ClientHello's read to the
// handshake's end).
//
// A record is a handshake exchange when
//   - its first bytes read are a TLS handshake record (content type 22,
//     version 3.x) and what it wrote, if anything, is TLS records too;
//   - or its connection has exchanges held and the server's TLS library
//     (Go's serverHandshake, probed) says the handshake ended after the
//     record's last write (TLS 1.3 with a client certificate: the
//     client's second flight is encrypted).
//
// The first record on the connection that is not one is its first
// request. One that ends its connection (close, idle, flush) takes
// the held exchanges with it too: a handshake that never led to a
// request is then a record of its own.

// tlsHeld is a connection's handshake so far.
type tlsHeld struct {
	pid       uint32
	tid       uint32
	goid      uint64
	comm      string
	cgroup    uint64
	conn      Conn
	start     int64  // wall ns: the request's start (accept queue, first bytes queued)
	firstRead uint64 // monotonic ns: the ClientHello's read (T_rd)
	lastWrite uint64 // monotonic ns: the server's last handshake write
	index     uint32 // request_index of the ClientHello's record
	phases    Phases // accept_queue, softirq, recv_queue of the ClientHello
	since     int64  // wall ns when held, for the join horizon
}

// maxTLSHeld bounds the connections whose handshake is held: past it,
// exchanges go out as records of their own.
const maxTLSHeld = 1 << 14

// TLS record content types (RFC 8446 §5.1) and the major version 3.
const (
	tlsChangeCipherSpec = 20
	tlsHandshake        = 22
	tlsApplicationData  = 23
	tlsMajor            = 3
)

// isTLSHandshakeRead: the bytes read begin with a TLS handshake record.
func isTLSHandshakeRead(rec *loader.Record) bool {
	n := min(int(rec.ReqLen), len(rec.ReqHead))
	return n >= 3 && rec.ReqHead[0] == tlsHandshake && rec.ReqHead[1] == tlsMajor && rec.ReqHead[2] <= 4
}

// isTLSWrite: nothing was written, or it begins with a TLS record.
func isTLSWrite(rec *loader.Record) bool {
	n := min(int(rec.RespLen), len(rec.RespHead))
	if rec.T_wl == 0 || n == 0 {
		return true
	}
	return n >= 2 && rec.RespHead[0] >= tlsChangeCipherSpec && rec.RespHead[0] <= tlsApplicationData && rec.RespHead[1] == tlsMajor
}

// holdTLS says whether rec is a handshake exchange held for the
// connection's first request (then kept).
func (c *Correlator) holdTLS(r *Request, rec *loader.Record) bool {
	if rec.EndReason != uint8(EndNextRequest) {
		return false // the connection's last record: it takes what is held
	}
	var h *tlsHeld
	if len(c.tlsHeld) > 0 {
		h = c.tlsHeld[rec.Sk]
	}
	switch {
	case isTLSHandshakeRead(rec) && isTLSWrite(rec):
	case h != nil && rec.T_wl != 0:
		call := c.tlsCall(h, rec)
		if call == nil || c.clock.Wall(rec.T_wl) > call.end {
			return false
		}
	default:
		return false
	}
	if h == nil {
		if len(c.tlsHeld) >= maxTLSHeld {
			return false
		}
		if c.tlsHeld == nil {
			c.tlsHeld = map[uint64]*tlsHeld{}
		}
		h = &tlsHeld{pid: rec.Pid, tid: rec.Tid, goid: rec.Goid, comm: r.Comm, cgroup: r.CgroupID, conn: r.Conn,
			start: r.StartUnixNano, firstRead: rec.T_rd, index: rec.RequestIndex}
		for _, p := range []Phase{AcceptQueue, Softirq, RecvQueue} {
			if v, ok := r.Phases.Get(p); ok {
				h.phases.Set(p, v)
			}
		}
		c.tlsHeld[rec.Sk] = h
	}
	h.lastWrite = max(h.lastWrite, rec.T_wl)
	h.since = c.clock.Wall(rec.T_rd)
	return true
}

// tlsCall is the probed handshake that read the held ClientHello: Go's
// serverHandshake on the goroutine that read it, begun before and ended
// after that read; libssl's first successful SSL_do_handshake on the
// thread that read it (or that reads rec) after that read (OpenSSL
// writes TLS 1.3's session tickets before it returns). nil when none is
// known (yet).
func (c *Correlator) tlsCall(h *tlsHeld, rec *loader.Record) *goCall {
	gp := c.goProc(h.pid)
	if gp == nil || !gp.probes.TLS {
		return nil
	}
	first := c.clock.Wall(h.firstRead)
	if gp.probes.OpenSSL {
		var best *goCall
		for _, tid := range []uint32{h.tid, rec.Tid} {
			for _, call := range gp.callsOf(uint64(tid)) {
				if call.fn == sslHandshakeDone && !call.joined && call.end >= first && (best == nil || call.end < best.end) {
					best = call
				}
			}
		}
		return best
	}
	for _, goid := range []uint64{h.goid, rec.Goid} {
		for _, call := range gp.callsOf(goid) {
			if call.fn == goTLSHandshake && call.start <= first && call.end >= first {
				return call
			}
		}
	}
	return nil
}

// foldTLS makes r, the first request of a connection whose handshake is
// held, begin where the handshake began, with its tls_handshake phase,
// and app from the handshake's end (the wait for the request's bytes
// after it included). The Go handshake call, if known, is joined here
// (joinGo would drop it: it began before the request's first read); it
// is the phase, not a span of its own (spans lie inside app).
func (c *Correlator) foldTLS(r *Request, rec *loader.Record) {
	if len(c.tlsHeld) == 0 {
		return
	}
	h := c.tlsHeld[rec.Sk]
	if h == nil || h.pid != rec.Pid {
		return
	}
	delete(c.tlsHeld, rec.Sk)
	c.tls = TLS{}
	r.TLS = &c.tls
	first := c.clock.Wall(h.firstRead)
	// Without a probe, the handshake is over at the server's last
	// handshake write (TLS 1.2), or at this record's first read (TLS
	// 1.3: the client's Finished) when that comes later.
	end := c.clock.Wall(max(h.lastWrite, min(rec.T_rd, max(rec.T_wl, rec.T_rd))))
	if call := c.tlsCall(h, rec); call != nil {
		gp := c.goProc(h.pid)
		end = gp.end(call)
		call.joined = true
		c.tls.Known = call.tlsFlags&uint8(loader.TracerdGoTlsFlagsGO_TLS_KNOWN) != 0
		if c.tls.Known {
			c.tls.Version, c.tls.CipherSuite = uint16(call.arg), uint16(call.arg>>16)
			c.tls.Resumed = call.tlsFlags&uint8(loader.TracerdGoTlsFlagsGO_TLS_RESUMED) != 0
			c.tls.ClientCert = call.tlsFlags&uint8(loader.TracerdGoTlsFlagsGO_TLS_PEER_CERT) != 0
		}
		c.tls.Failed = call.tlsFlags&uint8(loader.TracerdGoTlsFlagsGO_TLS_FAILED) != 0
	}
	if !c.tls.Known {
		c.wireFacts(rec.Sk, h.pid, &c.tls)
	}
	c.dropWire(rec.Sk)
	r.Phases.Set(TLSHandshake, end-first)
	for _, p := range []Phase{AcceptQueue, Softirq, RecvQueue} {
		r.Phases.Delete(p)
		if v, ok := h.phases.Get(p); ok {
			r.Phases.Set(p, v)
		}
	}
	if rec.T_wl != 0 {
		app := c.clock.Wall(rec.T_wl) - max(end, c.clock.Wall(rec.T_rd))
		r.Phases.Set(App, app)
		for _, p := range []Phase{Runqueue, CFSThrottle} {
			if v, ok := r.Phases.Get(p); ok {
				r.Phases.Set(p, min(v, max(app, 0)))
			}
		}
	} else {
		r.Phases.Delete(App)
	}
	r.StartUnixNano = min(r.StartUnixNano, h.start)
	r.DurationNs = r.EndUnixNano - r.StartUnixNano
	r.Conn.RequestIndex = h.index
	r.FirstWriteNs = 0 // from the request's first read: not known here
	if rec.T_wr != 0 && c.clock.Wall(rec.T_wr) > end {
		r.FirstWriteNs = c.clock.Wall(rec.T_wr) - end
	}
}

// tlsHoldFor is how long a handshake waits for its connection's next
// record, which comes when that request ends (a slow request's first
// request after the handshake may take long).
const tlsHoldFor = time.Minute

// expireTLS sends out the handshakes held past the join horizon (or
// all) whose connection sent nothing more: as they are, without a
// request, so that the connection's time is not lost.
func (c *Correlator) expireTLS(now int64, all bool) {
	c.wireNow = now
	for sk, w := range c.tlsWire {
		if c.tlsHeld[sk] == nil && c.clientTLS[sk] == nil && (all || w.since < now-tlsHoldFor.Nanoseconds()) {
			delete(c.tlsWire, sk)
		}
	}
	for sk, h := range c.tlsHeld {
		if !all && h.since >= now-tlsHoldFor.Nanoseconds() {
			continue
		}
		delete(c.tlsHeld, sk)
		c.req = Request{PID: h.pid, TID: h.tid, Comm: h.comm, Service: h.comm, CgroupID: h.cgroup, Conn: h.conn, EndReason: EndIdle}
		r := &c.req
		r.StartUnixNano = h.start
		end := c.clock.Wall(h.lastWrite)
		r.EndUnixNano = max(end, h.start)
		r.DurationNs = r.EndUnixNano - r.StartUnixNano
		r.Phases = h.phases
		r.Phases.Set(TLSHandshake, end-c.clock.Wall(h.firstRead))
		c.tls = TLS{}
		c.wireFacts(sk, h.pid, &c.tls)
		c.dropWire(sk)
		r.TLS = &c.tls
		assignIDs(r, c.rng)
		c.emit(r)
	}
}

// joinSSL gives a request of a process whose libssl is probed its HTTP/1
// method and target (the first request line SSL_read returned on its
// thread within [T_rd, T_wl]) and status (the status line SSL_write was
// given), unless the bytes had them (plaintext). The thread's events up
// to the request's end are then forgotten: a thread serves its
// connections' requests in turn (one nginx worker, many connections:
// interleaved requests on one thread are told apart by time alone, and
// may be joined wrongly).
func (c *Correlator) joinSSL(r *Request, rec *loader.Record) {
	gp := c.goProc(rec.Pid)
	if gp == nil || !gp.probes.OpenSSL || rec.T_wl == 0 {
		return
	}
	key := uint64(rec.Tid)
	calls := gp.callsOf(key)
	if len(calls) == 0 {
		return
	}
	from, to := c.clock.Wall(rec.T_rd), c.clock.Wall(rec.T_wl)
	status := 0
	for _, call := range calls {
		if call.start < from || call.start > to || call.joined {
			continue
		}
		switch call.fn {
		case sslReadLine:
			if r.HTTP != nil || isClientSSLLine(call) {
				continue
			}
			if req, ok := httpparse.ParseRequestWith([]byte(call.path), c.strs.str); ok {
				c.http = HTTP{Method: req.Method, Target: req.Target}
				r.HTTP = &c.http
				call.joined = true
			}
		case sslWriteStatus:
			if status == 0 {
				status = int(call.arg)
				call.joined = true
			}
		}
	}
	if r.HTTP != nil && r.HTTP.Status == 0 {
		r.HTTP.Status = status
	}
	// A handshake's end on this thread may be another connection's,
	// whose first request is not in yet, and a call's lines (a reverse
	// proxy's) are its call's (clienthttp_ssl.go): kept (to the join
	// horizon).
	keep := c.keepCalls(calls, func(call *goCall) bool {
		return call.start > to || (!call.joined && (call.fn == sslHandshakeDone || isClientSSLLine(call)))
	})
	gp.setCalls(key, keep)
}

// joinServeByPeer joins a Go process's record that has no HTTP yet
// (TLS: the bytes are encrypted) with the unjoined ServeHTTP of the
// same client that began inside it: on a kept-alive TLS connection
// net/http's background read takes the whole next request (one TLS
// record) on a goroutine of its own, so the record's goroutine is not
// the one serving it. Its status is the WriteHeader on the serving
// goroutine during the call, else the one the call's exit read.
func (c *Correlator) joinServeByPeer(r *Request, rec *loader.Record) {
	gp := c.goProc(rec.Pid)
	if r.HTTP != nil || gp == nil || !gp.probes.HTTP || rec.T_wl == 0 || !r.Conn.Peer.IsValid() {
		return
	}
	peer := netip.AddrPortFrom(r.Conn.Peer.Addr().Unmap(), r.Conn.Peer.Port())
	from, to := c.clock.Wall(rec.T_rd), c.clock.Wall(rec.T_wl)
	for _, call := range gp.serving {
		// HTTP/2 calls are streams, records of their own (exportable).
		if call.joined || call.fn != goServeHTTP || call.protoMajor >= 2 || call.start < from || call.start > to {
			continue
		}
		ap, err := netip.ParseAddrPort(call.remote)
		if err != nil || netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()) != peer {
			continue
		}
		call.joined = true
		r.Spans = append(r.Spans, Span{Name: goFuncNames[call.fn], StartUnixNano: call.start, DurationNs: gp.end(call) - call.start})
		applyServeHTTP(r, call)
		for _, o := range gp.callsOf(call.goid) {
			if o.fn == goWriteHeader && !o.joined && o.start >= call.start && o.start <= call.end && r.HTTP != nil {
				r.HTTP.Status, o.joined = int(o.arg), true
				break
			}
		}
		if r.HTTP != nil && r.HTTP.Status == 0 {
			call.applyStatus(r) // read at its exit (no WriteHeader probe)
		}
		sortSpans(r.Spans)
		return
	}
}

// tlsWire is what the kernel sent of a connection's handshake bytes
// (bpf/tlswire.h): each direction's stream from its start, as long as
// it is contiguous (by TCP sequence number) and uncut.
type tlsWire struct {
	pid     uint32
	since   int64 // the last Expire's now when it was made
	in, out wireStream
}

type wireStream struct {
	b      []byte
	next   uint32
	broken bool // a piece was cut or missing: nothing more is appended
}

// maxWireBytes bounds each direction's stream kept: the client's second
// flight (TLS 1.2) and the server's first flight fit.
const maxWireBytes = 16 << 10

func (s *wireStream) add(w *loader.TLSWire) {
	if s.broken {
		return
	}
	if len(s.b) > 0 && w.Seq != s.next {
		s.broken = true
		return
	}
	n := int(w.Len)
	if len(s.b)+n > maxWireBytes {
		s.broken = true
		return
	}
	s.b = append(s.b, w.B[:n]...)
	s.next = w.Seq + uint32(n)
	if uint32(n) < w.Total {
		s.broken = true // the rest of this read or write was not captured
	}
}

// AddTLSWire takes the bytes of one read or write of a TLS handshake's
// exchange; they come before the exchange's record.
func (c *Correlator) AddTLSWire(w *loader.TLSWire) {
	st := c.tlsWire[w.Sk]
	if st == nil || st.pid != w.Pid {
		if len(c.tlsWire) >= maxTLSHeld {
			return
		}
		if c.tlsWire == nil {
			c.tlsWire = map[uint64]*tlsWire{}
		}
		st = &tlsWire{pid: w.Pid, since: c.wireNow}
		c.tlsWire[w.Sk] = st
	}
	switch w.Dir {
	case uint8(loader.TracerdTlsWireDirTLS_WIRE_READ):
		st.in.add(w)
	case uint8(loader.TracerdTlsWireDirTLS_WIRE_WRITE):
		st.out.add(w)
	}
}

// wireFacts fills t from the connection's handshake bytes, when the
// server's ServerHello was read in them.
func (c *Correlator) wireFacts(sk uint64, pid uint32, t *TLS) {
	st := c.tlsWire[sk]
	if st == nil || st.pid != pid {
		return
	}
	srv := tlswire.ParseServer(st.out.b)
	if !srv.OK {
		return
	}
	serverFacts(t, srv)
	cert := tlswire.ClientCert(srv, tlswire.ParseClient(st.in.b))
	t.ClientCert, t.ClientCertUnknown = cert == tlswire.Yes, cert == tlswire.Unknown
}

// serverFacts: what the server's flight says, for either end's record.
func serverFacts(t *TLS, srv tlswire.Server) {
	t.Known, t.FromWire = true, true
	t.Version, t.CipherSuite = srv.Hello.Version, srv.Hello.CipherSuite
	t.Resumed, t.ResumedUnknown = srv.Resumed == tlswire.Yes, srv.Resumed == tlswire.Unknown
}

func (c *Correlator) dropWire(sk uint64) {
	if len(c.tlsWire) > 0 {
		delete(c.tlsWire, sk)
	}
}
