package correlate

import (
	"encoding/binary"
	"math/rand/v2"
	"time"

	"github.com/tracerd/tracerd/internal/loader"
)

// Correlator turns kernel records and Go events into Requests and hands
// each finished one to its emit function: the one way out, whichever
// call finished it. Not safe for concurrent use.
type Correlator struct {
	clock   Clock
	rng     *rand.ChaCha8
	emit    func(*Request) // must not keep the request: see Request.Clone
	goProcs map[uint32]*goProc
	// the process looked up last in goProcs (nil: none): a request's
	// record and Go events look their process up some ten times
	lastPID  uint32
	lastGP   *goProc
	comms    map[uint32]string
	goRetain time.Duration

	// Reused from one request to the next, so that a request costs no
	// allocation: the emitted request, its HTTP and Spans, strings, Go
	// calls, serialization intervals.
	req       Request
	http      HTTP
	spans     []Span
	strs      interner
	freeCalls []*goCall
	ser       []interval

	clients clientJoin          // outbound calls waiting for their inbound request
	tlsHeld map[uint64]*tlsHeld // by connection: TLS handshakes waiting for their first request
	// by connection: outbound TLS handshakes waiting for their first call
	clientTLS map[uint64]*clientTLSHeld
	tlsWire   map[uint64]*tlsWire // by connection: its handshake's bytes (bpf/tlswire.h)
	wireNow   int64               // the last Expire's now
	tls       TLS                 // the emitted request's TLS
}

// New returns a Correlator whose clock offset is measured now; finished
// requests go to emit. Go events are kept for goRetain to be joined with
// kernel records, which arrive when a request ends (up to the idle
// timeout after its answer).
func New(goRetain time.Duration, emit func(*Request)) *Correlator {
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], uint64(time.Now().UnixNano()))
	binary.LittleEndian.PutUint64(seed[8:], rand.Uint64())
	binary.LittleEndian.PutUint64(seed[16:], rand.Uint64())
	binary.LittleEndian.PutUint64(seed[24:], rand.Uint64())
	return &Correlator{clock: NewClock(), rng: rand.NewChaCha8(seed), emit: emit,
		goProcs: map[uint32]*goProc{}, comms: map[uint32]string{}, goRetain: goRetain}
}

// goProc is goProcs[pid] (nil: not a probed Go process).
func (c *Correlator) goProc(pid uint32) *goProc {
	if c.lastGP != nil && c.lastPID == pid {
		return c.lastGP
	}
	gp := c.goProcs[pid]
	if gp != nil {
		c.lastPID, c.lastGP = pid, gp
	}
	return gp
}

// maxComms bounds the pid → comm cache.
const maxComms = 4096

// AddRecord takes one kernel record. Its request, with the Go view of
// its process joined in, is emitted now, or, when the Go call serving it
// has not returned yet (see holdForGo), once that call comes or the join
// horizon passes (Expire).
func (c *Correlator) AddRecord(rec *loader.Record) {
	r := &c.req
	c.decode(r, rec)
	if r.Direction == DirClient {
		if c.holdClientTLS(r, rec) || isTLSCloseNotify(rec) {
			return
		}
		c.joinGoClientHTTP(r, rec)
		c.addClient(r, rec, c.takeClientTLS(rec))
		return
	}
	gp := c.goProc(rec.Pid)
	if gp != nil {
		gp.notePeer(r.Conn.Peer, r.EndUnixNano)
	}
	if c.holdTLS(r, rec) {
		return
	}
	if gp != nil {
		if gp.holdForGo(r, rec, c.clock) {
			gp.hold(rec)
			return
		}
	}
	c.finish(r, rec)
}

// release emits a held record's request now that its Go view is known
// (or will not come).
func (c *Correlator) release(h *heldRecord) {
	c.decode(&c.req, &h.rec)
	c.finish(&c.req, &h.rec)
}

// finish joins the Go view to a record's request and emits it.
func (c *Correlator) finish(r *Request, rec *loader.Record) {
	r.Spans = c.spans[:0]
	server := r.Direction == DirServer
	if server {
		c.foldTLS(r, rec)
		c.joinGo(r, rec)
		c.joinServeByPeer(r, rec)
		c.joinSSL(r, rec)
	}
	assignIDs(r, c.rng)
	c.emit(r)
	c.spans = r.Spans[:0]
	if server {
		// r is c.req: the calls it made are decoded into it next.
		c.clients.noteServer(r)
		c.serverDone(r.PID)
	}
}

// decode is FromRecord into *r, with the process's comm string reused.
func (c *Correlator) decode(r *Request, rec *loader.Record) {
	// A process's comm rarely changes: reuse its string.
	comm, ok := c.comms[rec.Pid]
	if !ok || !sameCString(rec.Comm[:], comm) {
		comm = cString(rec.Comm[:])
		if len(c.comms) >= maxComms {
			clear(c.comms) // a cache: host-wide tracing sees pids come and go
		}
		c.comms[rec.Pid] = comm
	}
	if gp := c.goProc(rec.Pid); gp != nil {
		gp.comm = comm
	}
	if rec.Direction == uint8(DirClient) {
		fromClientRecord(r, rec, c.clock, comm, &c.http, &c.strs)
		return
	}
	fromRecord(r, rec, c.clock, comm, &c.http, &c.strs)
}
