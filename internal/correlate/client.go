package correlate

import (
	"time"

	"github.com/tracerd/tracerd/internal/httpparse"
	"github.com/tracerd/tracerd/internal/loader"
)

// Direction says which side of its connection a request's process was.
type Direction uint8

const (
	// DirServer: the process accepted the connection and served the request.
	DirServer = Direction(loader.TracerdDirectionDIR_SERVER)
	// DirClient: the process opened the connection and sent the request
	// (an outbound call).
	DirClient = Direction(loader.TracerdDirectionDIR_CLIENT)
)

// String is the direction's name in JSON lines ("server", "client").
func (d Direction) String() string {
	if d == DirClient {
		return "client"
	}
	return "server"
}

// fromClientRecord builds the Request of an outbound call: the request
// the traced process wrote on a connection it opened, and its answer.
//
//	connect:  T_syn → T_est (the connection's first request only)
//	send:     T_wr → its last byte leaving (T_tx; T_wl when unseen)
//	wait:     → the answer's first byte arriving (T_rx; T_rd when unseen;
//	          bytes that arrived before the request's last write are not
//	          the answer's: see bpf/client.h)
//	receive:  → the app's last read of the answer (T_rl)
func fromClientRecord(r *Request, rec *loader.Record, clock Clock, comm string, http *HTTP, strs *interner) {
	recordBase(r, rec, comm)
	r.Direction, r.Answered = DirClient, rec.T_rd != 0
	start := rec.T_wr
	connected := rec.RequestIndex == 0 && has(rec.Flags, loader.TracerdReqFlagsREQ_HAS_EST) &&
		rec.T_syn != 0 && rec.T_est >= rec.T_syn
	if connected {
		r.Phases.Set(Connect, int64(rec.T_est-rec.T_syn))
		start = rec.T_syn
	}
	sent := max(rec.T_wl, rec.T_tx, rec.T_wr)
	r.Phases.Set(Send, int64(sent)-int64(rec.T_wr))
	end := sent
	if rec.T_rd != 0 {
		arrived := rec.T_rd
		end = max(rec.T_rl, rec.T_rd)
		if has(rec.Flags, loader.TracerdReqFlagsREQ_HAS_RX) && rec.T_rx != 0 {
			// After T_rd when the first read took only bytes that
			// arrived before the request's last write (bpf/client.h:
			// TLS 1.3's session tickets): the answer began with a later
			// read.
			arrived = min(max(rec.T_rx, sent), end)
		}
		r.Phases.Set(Wait, int64(arrived)-int64(sent))
		r.Phases.Set(Receive, int64(end)-int64(arrived))
	}
	r.StartUnixNano = clock.Wall(start)
	r.EndUnixNano = clock.Wall(end)
	r.DurationNs = int64(end - start)
	r.TCP = TCP{
		Valid:          has(rec.Flags, loader.TracerdReqFlagsREQ_HAS_TCP),
		SrttUs:         rec.SrttUs,
		Retransmits:    rec.Retransmits,
		ZeroWindow:     rec.ZeroWindow,
		SndCwnd:        rec.SndCwnd,
		Nagle:          rec.Nagle != 0,
		SynRetransmits: uint32(rec.SynRetrans),
	}
	n := min(int(rec.ReqLen), len(rec.ReqHead))
	if req, ok := httpparse.ParseRequestWith(rec.ReqHead[:n], strs.str); ok {
		// The call's own traceparent, if the app sent one, names the app's
		// span, not ours: the parent comes from the inbound request.
		*http = HTTP{Method: req.Method, Target: req.Target}
		m := min(int(rec.RespLen), len(rec.RespHead))
		if status, ok := httpparse.ParseResponse(rec.RespHead[:m]); ok {
			http.Status = status
		}
		r.HTTP = http
	}
}

// An inbound request's place, kept for a while after it was emitted:
// outbound calls that ran inside it become its children.
type serverWindow struct {
	pid, tid   uint32
	start, end int64 // wall ns
	trace      TraceID
	span       SpanID
	inbound    Inbound
	emitted    int64 // wall ns: the ring is in this order
}

// A client record waiting for the inbound request that issued it.
type heldClient struct {
	rec   loader.Record
	since int64 // wall ns when it came
	start int64 // wall ns: the call's start
	done  bool  // released (still listed)
	// Its HTTP when it came: the probes' facts joined then (the record
	// is decoded again at its release, which parses only its bytes).
	http    HTTP
	hasHTTP bool

	// HTTP from libssl's plaintext (clienthttp_ssl.go); the connection's
	// handshake, for its first call (clienttls.go)
	ssl  sslClientHTTP
	tlsh *clientTLSHeld
}

// Bounds on the parent search's memory and time: the windows of a
// process's latest maxServerWindows requests are searched (under load,
// a call whose record comes after more of them keeps no parent), of at
// most maxWindowProcs processes.
const (
	maxServerWindows = 1024
	maxWindowProcs   = 256
	maxHeldClients   = 4096
	maxHeldPerProc   = 256
)

// clientJoin parents outbound calls to the inbound requests that made
// them: same process, the call's start inside the request's window, on
// the request's thread, or, when no request of the process on that
// thread contains it, the only one that does (Go runs a call's write on
// another goroutine than the handler's: its thread is often not the
// request's). The inbound request may end before or after the call's
// record comes, so each side waits a while for the other (goRetain).
type clientJoin struct {
	procs   map[uint32]*windowRing
	callers map[uint32]struct{} // processes that opened outbound connections

	// Held calls: in arrival order (order[head:], for the horizon) and
	// per process (for the requests that end); a released one is marked
	// done and dropped from both lists lazily.
	order  []*heldClient
	head   int
	byProc map[uint32][]*heldClient
	free   []*heldClient
	nHeld  int
}

// NoteCaller says that process pid opens outbound connections (the
// kernel's PROC_CALLS note, before any record of a request that made a
// call): the windows of its served requests are kept from now on. A
// process that makes no call costs its requests one map lookup.
func (c *Correlator) NoteCaller(pid uint32) {
	j := &c.clients
	if j.callers == nil || len(j.callers) >= maxCallers {
		j.callers = map[uint32]struct{}{}
	}
	j.callers[pid] = struct{}{}
}

// maxCallers bounds the callers set (a cache, cleared when full).
const maxCallers = 4096

// windowRing holds a process's latest request windows, next at pos.
type windowRing struct {
	w   []serverWindow
	pos int
}

// noteServer remembers an emitted inbound request's window, if its
// process makes calls.
func (j *clientJoin) noteServer(r *Request) {
	if _, ok := j.callers[r.PID]; !ok {
		return
	}
	w := serverWindow{pid: r.PID, tid: r.TID, start: r.StartUnixNano, end: r.EndUnixNano, trace: r.TraceID, span: r.SpanID,
		inbound: Inbound{Valid: true, DurationNs: r.DurationNs, ParentSpanID: r.ParentSpanID, TraceFlags: r.TraceFlags},
		emitted: time.Now().UnixNano()}
	ring := j.procs[r.PID]
	if ring == nil {
		if j.procs == nil || len(j.procs) >= maxWindowProcs {
			j.procs = map[uint32]*windowRing{} // a cache: host-wide tracing sees pids come and go
		}
		ring = &windowRing{}
		j.procs[r.PID] = ring
	}
	if len(ring.w) < maxServerWindows {
		ring.w = append(ring.w, w)
		ring.pos = len(ring.w) % maxServerWindows
		return
	}
	ring.w[ring.pos] = w
	ring.pos = (ring.pos + 1) % maxServerWindows
}

// newest is the window noted last of process pid.
func (j *clientJoin) newest(pid uint32) (serverWindow, bool) {
	ring := j.procs[pid]
	if ring == nil || len(ring.w) == 0 {
		return serverWindow{}, false
	}
	return ring.w[(ring.pos+len(ring.w)-1)%len(ring.w)], true
}

// parent finds the inbound request that issued call among those known.
func (j *clientJoin) parent(call *Request) (serverWindow, bool) {
	ring := j.procs[call.PID]
	if ring == nil {
		return serverWindow{}, false
	}
	var only serverWindow
	n := 0
	// Newest first; a request emitted before the call began ended
	// before it, as did all those emitted earlier still.
	for k := 1; k <= len(ring.w); k++ {
		w := &ring.w[(ring.pos-k+len(ring.w))%len(ring.w)]
		if w.emitted < call.StartUnixNano {
			break
		}
		if call.StartUnixNano < w.start || call.StartUnixNano > w.end {
			continue
		}
		if w.tid == call.TID {
			return *w, true
		}
		only = *w
		n++
	}
	return only, n == 1
}

// adopt makes r a child of w.
func adopt(r *Request, w serverWindow) {
	r.TraceID = w.trace
	r.ParentSpanID = w.span
	r.Inbound = w.inbound
}

// addClient emits an outbound call's request now when its inbound
// request is known, else holds it.
// (its connection's handshake h, when it is the first call, is folded
// in as it goes).
func (c *Correlator) addClient(r *Request, rec *loader.Record, h *clientTLSHeld) {
	if _, ok := c.clients.callers[r.PID]; !ok {
		c.NoteCaller(r.PID) // its note was lost (ring buffer full)
	}
	ssl := c.joinSSLClient(r, rec, h != nil)
	if w, ok := c.clients.parent(r); ok {
		adopt(r, w)
		ssl.apply(c, r)
		c.foldClientTLS(r, rec, h)
		c.finish(r, rec)
		return
	}
	c.hold(rec, r.HTTP, ssl, h)
}

// hold keeps a call's record, and its HTTP (Go's client probes) or
// libssl's lines and its connection's handshake, until its inbound
// request comes or the horizon passes; past the bounds, the oldest held
// call goes now.
func (c *Correlator) hold(rec *loader.Record, http *HTTP, ssl sslClientHTTP, tlsh *clientTLSHeld) {
	j := &c.clients
	var kept HTTP
	if http != nil {
		kept = *http // c.http: a release below decodes into it
	}
	if j.nHeld >= maxHeldClients {
		c.releaseOldest(nil)
	}
	if len(j.byProc[rec.Pid]) >= maxHeldPerProc {
		c.releaseOldest(j.byProc[rec.Pid])
	}
	var h *heldClient
	if n := len(j.free); n > 0 {
		h, j.free = j.free[n-1], j.free[:n-1]
	} else {
		h = new(heldClient)
	}
	h.rec, h.since, h.start, h.done = *rec, time.Now().UnixNano(), c.clock.Wall(callStart(rec)), false
	h.http, h.hasHTTP = kept, http != nil
	h.ssl, h.tlsh = ssl, tlsh
	if j.byProc == nil {
		j.byProc = map[uint32][]*heldClient{}
	}
	j.order = append(j.order, h)
	j.byProc[rec.Pid] = append(j.byProc[rec.Pid], h)
	j.nHeld++
}

// releaseOldest releases the oldest held call (of list, when given),
// with the parent the known requests give.
func (c *Correlator) releaseOldest(list []*heldClient) {
	if list == nil {
		list = c.clients.order[c.clients.head:]
	}
	for _, h := range list {
		if !h.done {
			w, ok := c.clients.parent(&Request{PID: h.rec.Pid, TID: h.rec.Tid, StartUnixNano: h.start})
			c.releaseClient(h, w, ok)
			return
		}
	}
}

// releaseClient emits held call h, a child of w when ok.
func (c *Correlator) releaseClient(h *heldClient, w serverWindow, ok bool) {
	j := &c.clients
	h.done = true
	j.nHeld--
	c.decode(&c.req, &h.rec)
	if h.hasHTTP {
		c.http = h.http
		c.req.HTTP = &c.http
	}
	h.ssl.apply(c, &c.req)
	if ok {
		adopt(&c.req, w)
	}
	c.foldClientTLS(&c.req, &h.rec, h.tlsh)
	h.tlsh = nil
	c.finish(&c.req, &h.rec)
	j.compact(h.rec.Pid)
}

// compact drops the released calls from the lists' ends (the order's
// front, the process's list) and recycles them once off both.
func (j *clientJoin) compact(pid uint32) {
	list := j.byProc[pid]
	keep := list[:0]
	for _, h := range list {
		if !h.done {
			keep = append(keep, h)
		}
	}
	clear(list[len(keep):])
	if len(keep) == 0 {
		delete(j.byProc, pid)
	} else {
		j.byProc[pid] = keep
	}
	for j.head < len(j.order) && j.order[j.head].done {
		j.free = append(j.free, j.order[j.head])
		j.order[j.head] = nil
		j.head++
	}
	if j.head > 0 && j.head*2 >= len(j.order) {
		n := copy(j.order, j.order[j.head:])
		clear(j.order[n:])
		j.order, j.head = j.order[:n], 0
	}
}

// serverDone releases the held calls that the inbound request of pid
// just emitted (whose window is its newest) issued.
func (c *Correlator) serverDone(pid uint32) {
	j := &c.clients
	list := j.byProc[pid]
	if len(list) == 0 {
		return
	}
	w, ok := j.newest(pid)
	if !ok {
		return
	}
	var match []*heldClient
	for _, h := range list {
		if h.done || h.start < w.start || h.start > w.end {
			continue
		}
		if p, ok := j.parent(&Request{PID: pid, TID: h.rec.Tid, StartUnixNano: h.start}); ok && p.span == w.span {
			match = append(match, h)
		}
	}
	for _, h := range match {
		c.releaseClient(h, w, true)
	}
}

// expireClients emits the held calls older than the join horizon (or
// all) with the parent the known requests give, if any.
func (c *Correlator) expireClients(now int64, all bool) {
	j := &c.clients
	for j.head < len(j.order) {
		h := j.order[j.head]
		if !h.done && !all && h.since >= now-c.goRetain.Nanoseconds() {
			break // arrival order: the rest came later
		}
		if !h.done {
			w, ok := j.parent(&Request{PID: h.rec.Pid, TID: h.rec.Tid, StartUnixNano: h.start})
			c.releaseClient(h, w, ok)
		} else {
			j.compact(h.rec.Pid)
		}
	}
}

// callStart is where a client record's request starts (its connect for
// a connection's first request), as fromClientRecord places it.
func callStart(rec *loader.Record) uint64 {
	if rec.RequestIndex == 0 && has(rec.Flags, loader.TracerdReqFlagsREQ_HAS_EST) && rec.T_syn != 0 && rec.T_est >= rec.T_syn {
		return rec.T_syn
	}
	return rec.T_wr
}
