package correlate

import (
	"cmp"
	"fmt"
	"math"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tracerd/tracerd/internal/goprobe"
	"github.com/tracerd/tracerd/internal/httpparse"
	"github.com/tracerd/tracerd/internal/loader"
)

// goFunc is a probed Go function's id (enum go_func, shared with the BPF
// programs); the short names below are this package's.
type goFunc = loader.TracerdGoFunc

const (
	goJSONMarshal   = loader.TracerdGoFuncGO_JSON_MARSHAL
	goJSONUnmarshal = loader.TracerdGoFuncGO_JSON_UNMARSHAL
	goJSONEncode    = loader.TracerdGoFuncGO_JSON_ENCODE
	goJSONDecode    = loader.TracerdGoFuncGO_JSON_DECODE
	goProtoMarshal  = loader.TracerdGoFuncGO_PROTO_MARSHAL
	goProtoUnmarsh  = loader.TracerdGoFuncGO_PROTO_UNMARSHAL
	goServeHTTP     = loader.TracerdGoFuncGO_SERVE_HTTP
	goWriteHeader   = loader.TracerdGoFuncGO_WRITE_HEADER
	goSTW           = loader.TracerdGoFuncGO_STW
	goGRPCMethod    = loader.TracerdGoFuncGO_GRPC_METHOD
	goGRPCStatus    = loader.TracerdGoFuncGO_GRPC_STATUS
)

// goFuncNames are the span names of timed Go functions.
var goFuncNames = map[goFunc]string{
	goJSONMarshal:   "encoding/json.Marshal",
	goJSONUnmarshal: "encoding/json.Unmarshal",
	goJSONEncode:    "encoding/json.(*Encoder).Encode",
	goJSONDecode:    "encoding/json.(*Decoder).Decode",
	goProtoMarshal:  "google.golang.org/protobuf/proto.Marshal",
	goProtoUnmarsh:  "google.golang.org/protobuf/proto.Unmarshal",
	goServeHTTP:     "net/http.serverHandler.ServeHTTP",
	goGRPCMethod:    "google.golang.org/grpc.(*Server).handleStream",
}

// isSerialization: calls whose time is the serialize phase.
func isSerialization(f goFunc) bool {
	switch f {
	case goJSONMarshal, goJSONUnmarshal, goJSONEncode, goJSONDecode, goProtoMarshal, goProtoUnmarsh:
		return true
	}
	return false
}

// stwReason is a stop-the-world pause's runtime.stwReason.
type stwReason = loader.TracerdStwReason

// isGCPause: other pauses (ReadMemStats, traces, profiles) are not GC and
// stay out of gc_stw.
func isGCPause(reason stwReason) bool {
	return reason == loader.TracerdStwReasonSTW_GC_MARK_TERM || reason == loader.TracerdStwReasonSTW_GC_SWEEP_TERM
}

// goCall is a Go event in wall-clock time.
type goCall struct {
	fn         goFunc
	goid       uint64
	start, end int64 // probe times: see goProc.end for the call's own end
	arg        uint32
	method     string
	path       string
	remote     string
	query      string // net/http's URL.RawQuery (HTTP/1 and 2 alike)
	pattern    string // the ServeMux route that matched (Go 1.23+, with DWARF)
	protoMajor uint8
	status     int    // ServeHTTP: the status its exit read (0: none; see exitStatus)
	implied    bool   // status is the 200 net/http sends for a handler that wrote none
	tlsFlags   uint8  // TLS handshakes: enum go_tls_flags
	tid        uint32 // client TLS handshakes: the thread at its entry
	joined     bool
	lists      uint8 // inByGoid | inServing: where it is referenced
}

// Where a goCall is referenced: once in neither, it is reused.
const (
	inByGoid = 1 << iota
	inServing
)

// maxFreeCalls bounds the goCalls kept for reuse. A joined ServeHTTP
// call leaves the serving list at the next Expire (the session's tick,
// every 150 ms): a tick frees a period's worth at once (8,250 at 55,000
// requests/s), which the next period's calls reuse. At ≈ 140 bytes a
// call, the free list holds at most ≈ 2.2 MiB, calls that were live
// anyway.
const maxFreeCalls = 16384

// newCall returns a zeroed goCall, reused when one is free: a Go
// event costs no allocation.
func (c *Correlator) newCall() *goCall {
	if n := len(c.freeCalls); n > 0 {
		call := c.freeCalls[n-1]
		c.freeCalls = c.freeCalls[:n-1]
		*call = goCall{}
		return call
	}
	return new(goCall)
}

// unlist says call left one of its lists; out of both, it is free.
func (c *Correlator) unlist(call *goCall, list uint8) {
	call.lists &^= list
	if call.lists == 0 && len(c.freeCalls) < maxFreeCalls {
		c.freeCalls = append(c.freeCalls, call)
	}
}

// goProc is what is known of one probed Go process.
type goProc struct {
	probes goprobe.Probes
	goneAt int64                // wall ns when the process lost its probes (exit), 0 while probed
	pauses []interval           // GC stop-the-world pauses, by start
	byGoid map[uint64]*callList // by goroutine (libssl's events: by thread)
	// the list looked up last (nil: none), and the emptied lists kept
	// for reuse: see callList
	lastGoid  uint64
	lastList  *callList
	freeLists []*callList
	serving   []*goCall               // ServeHTTP and gRPC calls not joined yet, oldest first
	comm      string                  // from its kernel records ("" until one came)
	held      map[uint64][]heldRecord // by goroutine
	nHeld     int
	// peers of its traced connections (wall ns last seen): a Go call
	// whose client is not among them was served on a connection the
	// kernel side did not trace (accepted before tracerd, filtered, or
	// the conns map full) and is not exported.
	peers map[netip.AddrPort]int64
	// crypto/tls client handshakes (outbound connections), by end: not
	// by goroutine (their records do not know it); see clientTLSCall.
	clientHandshakes []*goCall
	client           *goClientHTTP // its net/http client's calls (clienthttp_go.go)
}

// callList is one goroutine's calls, oldest first. byGoid holds them by
// pointer, so that adding a call looks the goroutine up once instead of
// once to read its list and once to store the longer one; and the list
// looked up last is remembered: a request's Go events and its record
// (four to six look-ups) come from one goroutine.
type callList struct{ calls []*goCall }

// maxFreeLists bounds the emptied lists a process keeps for reuse;
// maxReusedCap the calls' room a reused list keeps.
const (
	maxFreeLists = 256
	maxReusedCap = 64
)

// list is goid's list, nil when it has none.
func (gp *goProc) list(goid uint64) *callList {
	if gp.lastList != nil && gp.lastGoid == goid {
		return gp.lastList
	}
	l := gp.byGoid[goid]
	if l != nil {
		gp.lastGoid, gp.lastList = goid, l
	}
	return l
}

// callsOf is goid's calls, oldest first.
func (gp *goProc) callsOf(goid uint64) []*goCall {
	if l := gp.list(goid); l != nil {
		return l.calls
	}
	return nil
}

// addCall appends call to its goroutine's list.
func (gp *goProc) addCall(call *goCall) {
	l := gp.list(call.goid)
	if l == nil {
		if n := len(gp.freeLists); n > 0 {
			l = gp.freeLists[n-1]
			gp.freeLists = gp.freeLists[:n-1]
		} else {
			l = &callList{}
		}
		gp.byGoid[call.goid] = l
		gp.lastGoid, gp.lastList = call.goid, l
	}
	l.calls = append(l.calls, call)
}

// setCalls makes keep (what keepCalls left of goid's calls) its list;
// a goroutine left with none is forgotten.
func (gp *goProc) setCalls(goid uint64, keep []*goCall) {
	if len(keep) > 0 {
		if l := gp.list(goid); l != nil {
			l.calls = keep
		}
		return
	}
	l := gp.byGoid[goid]
	if l == nil {
		return
	}
	delete(gp.byGoid, goid)
	if gp.lastList == l {
		gp.lastList = nil
	}
	if len(gp.freeLists) < maxFreeLists {
		clear(l.calls[:cap(l.calls)])
		l.calls = l.calls[:0]
		if cap(l.calls) > maxReusedCap {
			l.calls = nil
		}
		gp.freeLists = append(gp.freeLists, l)
	}
}

// maxPeers bounds the traced peers remembered per process.
const maxPeers = 1 << 16

// peerTTL: a peer not seen in a kernel record for this long is forgotten
// (an HTTP/2 connection in use yields records far more often).
const peerTTL = 10 * time.Minute

// notePeer remembers that the process has a traced connection from peer.
func (gp *goProc) notePeer(peer netip.AddrPort, now int64) {
	if !peer.IsValid() {
		return
	}
	if gp.peers == nil {
		gp.peers = map[netip.AddrPort]int64{}
	}
	peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
	if _, ok := gp.peers[peer]; !ok && len(gp.peers) >= maxPeers {
		gp.forgetPeers(now - time.Minute.Nanoseconds())
		if len(gp.peers) >= maxPeers {
			clear(gp.peers)
		}
	}
	gp.peers[peer] = now
}

func (gp *goProc) forgetPeers(before int64) {
	for p, seen := range gp.peers {
		if seen < before {
			delete(gp.peers, p)
		}
	}
}

// exportable says whether a Go call no kernel record claimed becomes a
// request of its own: only HTTP/2 streams and gRPC calls (many on one
// connection: the kernel's records are per connection exchange, not per
// call), and only on a connection the kernel side traces. An HTTP/1
// call always has its kernel record when its connection is traced: one
// left alone was on an untraced connection, or its client reset the
// connection before the answer (the kernel's record, unanswered, already
// went out).
func (gp *goProc) exportable(call *goCall) bool {
	if call.fn == goGRPCMethod {
		// grpc-go's handleStream carries no peer address: any traced
		// connection of the process will do.
		return len(gp.peers) > 0
	}
	if call.protoMajor < 2 {
		return false
	}
	ap, err := netip.ParseAddrPort(call.remote)
	if err != nil {
		return false
	}
	_, ok := gp.peers[netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())]
	return ok
}

// maxHeld bounds the records held per process: past it, records go out
// at once (without a join if their ServeHTTP comes later).
const maxHeld = 4096

// heldRecord is a kernel record waiting for the Go call that serves it.
type heldRecord struct {
	rec   loader.Record
	since int64 // wall ns when it was held
}

// holdForGo says whether a kernel record must wait for its ServeHTTP: a
// handler that sends its whole answer before returning (Flush, or a
// streamed body) has the client's next request end this one while
// ServeHTTP is still running, and its end — the only event it sends —
// comes after the record. Held: HTTP/1 records of processes with
// net/http probes whose goroutine has no ServeHTTP in the request's
// window yet. Anything else goes out at once.
// A request that began before the probes were all on may have a
// ServeHTTP whose entry nobody saw (it then sends nothing): not held.
func (gp *goProc) holdForGo(r *Request, rec *loader.Record, clock Clock) bool {
	if !gp.probes.HTTP || gp.nHeld >= maxHeld || rec.Goid == 0 || rec.T_wl == 0 || !looksHTTP1(r, rec) {
		return false
	}
	from, to := clock.Wall(rec.T_rd), clock.Wall(rec.T_wl)
	if gp.probes.AttachedAt == 0 || from <= gp.probes.AttachedAt {
		return false
	}
	for _, call := range gp.callsOf(rec.Goid) {
		if call.fn == goServeHTTP && !call.joined && call.start >= from && call.start <= to {
			return false
		}
	}
	return true
}

// hold keeps a record until its ServeHTTP returns.
func (gp *goProc) hold(rec *loader.Record) {
	if gp.held == nil {
		gp.held = map[uint64][]heldRecord{}
	}
	gp.held[rec.Goid] = append(gp.held[rec.Goid], heldRecord{rec: *rec, since: time.Now().UnixNano()})
	gp.nHeld++
}

// releaseHeld releases the held records that call (a ServeHTTP that
// just returned) serves.
func (c *Correlator) releaseHeld(gp *goProc, call *goCall) {
	hs := gp.held[call.goid]
	keep := hs[:0]
	for i := range hs {
		h := &hs[i]
		if call.start >= c.clock.Wall(h.rec.T_rd) && call.start <= c.clock.Wall(h.rec.T_wl) {
			c.release(h)
			gp.nHeld--
			continue
		}
		keep = append(keep, *h)
	}
	gp.setHeld(call.goid, hs, keep)
}

func (gp *goProc) setHeld(goid uint64, old, keep []heldRecord) {
	clear(old[len(keep):])
	if len(keep) == 0 {
		delete(gp.held, goid)
	} else {
		gp.held[goid] = keep
	}
}

// releaseExpired releases the held records older than the join horizon
// (or all): their Go call is not coming.
func (c *Correlator) releaseExpired(gp *goProc, now int64, all bool) {
	for goid, hs := range gp.held {
		keep := hs[:0]
		for i := range hs {
			h := &hs[i]
			if all || h.since < now-c.goRetain.Nanoseconds() {
				c.release(h)
				gp.nHeld--
				continue
			}
			keep = append(keep, *h)
		}
		gp.setHeld(goid, hs, keep)
	}
}

// looksHTTP1: the bytes parsed as an HTTP/1 request, or are the start of
// one's method (net/http's background read takes a request's first byte
// alone).
func looksHTTP1(r *Request, rec *loader.Record) bool {
	if r.HTTP != nil {
		return true
	}
	n := min(int(rec.ReqLen), len(rec.ReqHead))
	return httpparse.IsRequestStart(rec.ReqHead[:n])
}

type interval struct {
	start, end int64
	reason     stwReason // GC pauses
}

// SetGoProbes records that pid has Go probes attached (or, with
// ok=false, that it has none any more).
func (c *Correlator) SetGoProbes(pid uint32, p goprobe.Probes, ok bool) {
	gp := c.goProc(pid)
	if !ok {
		// Its last requests' records (ended by the close at exit) may
		// still come: forget it after the join horizon.
		if gp != nil {
			gp.goneAt = time.Now().UnixNano()
		}
		return
	}
	if gp == nil {
		gp = &goProc{byGoid: map[uint64]*callList{}}
		c.goProcs[pid] = gp
	}
	gp.probes, gp.goneAt = p, 0
	if !p.HTTP && gp.nHeld > 0 {
		// No ServeHTTP will come (probes switched off): out they go.
		c.releaseExpired(gp, 0, true)
	}
}

// forgetGoProc forgets a process that lost its probes.
func (c *Correlator) forgetGoProc(pid uint32) {
	delete(c.goProcs, pid)
	if c.lastPID == pid {
		c.lastGP = nil
	}
}

// AddGo takes one Go event.
func (c *Correlator) AddGo(ev *loader.GoEvent) {
	gp := c.goProc(ev.Pid)
	if gp == nil {
		return // probes of a process we stopped following
	}
	fn := goFunc(ev.Func)
	if fn == goHTTPClientRequest || fn == goHTTPClientResponse {
		c.addGoClientHTTP(gp, fn, ev)
		return
	}
	if fn == goSTW {
		// Timed between two probes' clock reads like a call, whether it
		// ended at startTheWorldWithSema's entry or at its RET (see
		// go_stw_start): the same probe cost comes off when it is joined.
		if reason := stwReason(ev.Arg); isGCPause(reason) {
			gp.pauses = append(gp.pauses, interval{c.clock.Wall(ev.Start), c.clock.Wall(ev.End), reason})
		}
		return
	}
	call := c.newCall()
	call.fn, call.goid, call.arg = fn, ev.Goid, ev.Arg
	call.start, call.end = c.clock.Wall(ev.Start), c.clock.Wall(ev.End)
	switch call.fn {
	case goServeHTTP:
		call.method = c.strs.int8s(ev.Method[:], ev.MethodLen)
		call.path = c.strs.int8s(ev.Path[:], ev.PathLen)
		call.remote = c.strs.int8s(ev.Remote[:], ev.RemoteLen)
		call.query = c.strs.int8s(ev.Query[:], ev.QueryLen)
		call.pattern = c.strs.int8s(ev.Pattern[:], ev.PatternLen)
		call.protoMajor = ev.ProtoMajor
		call.status, call.implied = exitStatus(ev)
		gp.serving = append(gp.serving, call)
		call.lists = inServing | inByGoid
		if len(gp.held[call.goid]) > 0 {
			gp.addCall(call)
			c.releaseHeld(gp, call)
			return
		}
	case goGRPCMethod:
		call.path = c.strs.int8s(ev.Path[:], ev.PathLen)
		gp.serving = append(gp.serving, call)
		call.lists = inServing | inByGoid
	case goTLSHandshake:
		call.tlsFlags = ev.TlsFlags
		call.lists = inByGoid
	case goTLSClientHandshake:
		call.tlsFlags, call.tid = ev.TlsFlags, ev.Tid
		if len(gp.clientHandshakes) >= maxClientHandshakes {
			gp.clientHandshakes = append(gp.clientHandshakes[:0], gp.clientHandshakes[1:]...)
		}
		gp.clientHandshakes = append(gp.clientHandshakes, call) // in no list: never reused
		return
	case sslReadLine, sslWriteLine:
		// The first line read (a request line; a client's status line)
		// or written (a client's request line), CRLF included.
		call.path = c.strs.int8s(ev.Path[:], ev.PathLen)
		call.lists = inByGoid
	default:
		call.lists = inByGoid
	}
	gp.addCall(call)
}

// end is a timed call's own end: the probes' cost (calibrated, or the
// default until calibration ends) comes off the end probe's time when the
// call is joined, not when it arrives, so that calls seen before
// calibration finished get the calibrated cost too. Instants
// (WriteHeader, gRPC status) have no cost.
func (gp *goProc) end(call *goCall) int64 {
	if call.fn == goWriteHeader || call.fn == goGRPCStatus {
		return call.end
	}
	return max(call.start, call.end-gp.probes.ProbeCostNs)
}

// pruneGo forgets what is older than the join horizon (from Expire,
// on the session's tick: not per event), except the calls a serving
// call still waiting for it will claim.
func (c *Correlator) pruneGo(gp *goProc, now int64) {
	horizon := now - c.goRetain.Nanoseconds()
	i := 0
	for i < len(gp.pauses) && gp.pauses[i].end < horizon {
		i++
	}
	gp.pauses = gp.pauses[i:]
	gp.forgetPeers(now - peerTTL.Nanoseconds())
	i = 0
	for i < len(gp.clientHandshakes) && gp.clientHandshakes[i].end < horizon {
		i++
	}
	gp.clientHandshakes = append(gp.clientHandshakes[:0], gp.clientHandshakes[i:]...)
	if gp.client != nil {
		gp.client.prune(horizon)
	}
	for goid, l := range gp.byGoid {
		calls := l.calls
		// A serving call not joined yet (an HTTP/2 stream or gRPC call
		// waiting for the horizon) claims the calls its goroutine made
		// since it began, and those end before it does: they stay with
		// it, whatever their own end.
		waiting := int64(math.MaxInt64)
		for _, call := range calls {
			if isServing(call.fn) && !call.joined {
				waiting = min(waiting, call.start)
			}
		}
		keep := c.keepCalls(calls, func(call *goCall) bool {
			return call.end >= horizon || call.start >= waiting
		})
		gp.setCalls(goid, keep)
	}
}

// joinGo adds the Go view to a kernel request: GC pauses inside
// [T_rd, T_wl], serialization and ServeHTTP on the reading goroutine.
func (c *Correlator) joinGo(r *Request, rec *loader.Record) {
	gp := c.goProc(rec.Pid)
	if gp == nil || rec.T_wl == 0 {
		return
	}
	from, to := c.clock.Wall(rec.T_rd), c.clock.Wall(rec.T_wl)
	app, _ := r.Phases.Get(App)
	if gp.probes.GC {
		cost, pauses := gp.probes.ProbeCostNs, within(gp.pauses, from, to)
		r.Phases.Set(GCSTW, min(app, overlap(pauses, from, to, cost)))
		r.Spans = appendPauseSpans(r.Spans, pauses, from, to, cost)
	}
	if rec.Goid == 0 {
		sortSpans(r.Spans)
		return
	}
	ser := c.ser[:0]
	status := 0
	var served *goCall
	l := gp.list(rec.Goid)
	var calls []*goCall
	if l != nil {
		calls = l.calls
	}
	for _, call := range calls {
		if call.start < from || call.start > to || call.joined {
			continue
		}
		switch {
		case isSerialization(call.fn):
			end := gp.end(call)
			ser = append(ser, interval{start: call.start, end: end})
			r.Spans = append(r.Spans, Span{Name: goFuncNames[call.fn], StartUnixNano: call.start, DurationNs: end - call.start})
			call.joined = true
		case call.fn == goServeHTTP:
			call.joined = true
			r.Spans = append(r.Spans, Span{Name: goFuncNames[call.fn], StartUnixNano: call.start, DurationNs: gp.end(call) - call.start})
			applyServeHTTP(r, call)
			served = call
		case call.fn == goWriteHeader:
			// Applied after the loop: ServeHTTP, which may make r.HTTP,
			// arrives after the WriteHeader inside it.
			call.joined = true
			status = int(call.arg)
		}
	}
	if status != 0 && r.HTTP != nil {
		r.HTTP.Status = status
	} else if served != nil {
		served.applyStatus(r)
	}
	if gp.probes.Serialization {
		r.Phases.Set(Serialize, min(app, union(ser)))
	}
	c.ser = ser[:0]
	if served != nil {
		c.leaveServing(gp, served)
	}
	// The goroutine's records come in order: what started before this
	// request's end was joined now or belongs to no request. The
	// goroutine keeps its (maybe empty) list: net/http serves a
	// connection's requests on one goroutine (pruneGo drops it).
	keep := c.keepCalls(calls, func(call *goCall) bool { return call.start > to })
	if l != nil {
		l.calls = keep
	}
	sortSpans(r.Spans)
}

// keepCalls keeps, in place and in order, the calls of a goroutine's
// list that keep says to; the others leave it (unlisted).
func (c *Correlator) keepCalls(calls []*goCall, keep func(*goCall) bool) []*goCall {
	kept := calls[:0]
	for _, call := range calls {
		if keep(call) {
			kept = append(kept, call)
		} else {
			c.unlist(call, inByGoid)
		}
	}
	clear(calls[len(kept):])
	return kept
}

// sortSpans orders spans by start. A request's few spans (at most
// twelve) are sorted by insertion, as slices.SortFunc sorts so few (the
// same order for equal starts), without its generic call per compare.
func sortSpans(spans []Span) {
	if len(spans) > 12 {
		slices.SortFunc(spans, func(a, b Span) int { return cmp.Compare(a.StartUnixNano, b.StartUnixNano) })
		return
	}
	for i := 1; i < len(spans); i++ {
		for j := i; j > 0 && spans[j].StartUnixNano < spans[j-1].StartUnixNano; j-- {
			spans[j], spans[j-1] = spans[j-1], spans[j]
		}
	}
}

// applyServeHTTP: method and path from net/http win over the bytes; the
// bytes' target is kept when it names the same path (it has the query).
func applyServeHTTP(r *Request, call *goCall) {
	if call.method == "" {
		return
	}
	if r.HTTP == nil {
		r.HTTP = &HTTP{}
	}
	path, _, _ := strings.Cut(r.HTTP.Target, "?")
	if r.HTTP.Method != call.method || path != call.path {
		r.HTTP.Target = call.target()
	}
	r.HTTP.Method = call.method
	r.HTTP.Pattern = call.pattern
}

// target is the request target as net/http saw it: path, and the query
// when there is one (the exporters redact its values), so that a target
// reads the same from the socket's bytes and from the Go view.
func (call *goCall) target() string {
	if call.query == "" {
		return call.path
	}
	return call.path + "?" + call.query
}

// exitStatus is the response status a ServeHTTP call's exit read
// (bpf/goruntime.h exit_status; 0: none read, where the WriteHeader
// probes give it). A status of 0 there means the handler wrote nothing:
// net/http then sends 200 (HTTP/1's finishRequest, HTTP/2's
// handlerDone; implied), unless an HTTP/1 handler hijacked the
// connection (a WebSocket upgrade writes its own answer): then none.
// Whether it did is read where DWARF gives conn.hijackedv's offset;
// without (a stripped binary) 200 is taken, which the bytes' status
// overrides (applyStatus), as docs/go.md says.
func exitStatus(ev *loader.GoEvent) (status int, implied bool) {
	f := loader.TracerdGoStatusFlags(ev.StatusFlags)
	switch {
	case f&loader.TracerdGoStatusFlagsGO_STATUS_READ == 0:
		return 0, false
	case ev.Arg >= 100 && ev.Arg <= 999:
		return int(ev.Arg), false
	case ev.Arg != 0 || f&loader.TracerdGoStatusFlagsGO_STATUS_HIJACKED != 0:
		return 0, false
	}
	return 200, true
}

// applyStatus gives r the status the ServeHTTP call's exit read: one
// the handler set wins over the bytes' as a WriteHeader's does; the
// implied 200 only fills a status the bytes did not give (a hijacked
// connection's own status line, when hijacking could not be told).
func (call *goCall) applyStatus(r *Request) {
	if r.HTTP == nil || call.status == 0 || (call.implied && r.HTTP.Status != 0) {
		return
	}
	r.HTTP.Status = call.status
}

// leaveServing takes a ServeHTTP call that joined its record out of the
// serving list now, rather than at the next Expire: out of its
// goroutine's list too (keepCalls, right after), it is free, and the
// next Go event reuses it while it is still in the CPU's caches (a call
// freed at the tick, 150 ms later, was a cache miss at its reuse: ≈ 5 %
// of tracerd's CPU at saturation). The call came moments ago: it is
// looked for from the list's end, a few entries at most; one not found
// there stays for Expire.
func (c *Correlator) leaveServing(gp *goProc, call *goCall) {
	const look = 64
	for i := len(gp.serving) - 1; i >= max(0, len(gp.serving)-look); i-- {
		if gp.serving[i] == call {
			gp.serving = slices.Delete(gp.serving, i, i+1)
			c.unlist(call, inServing)
			return
		}
	}
}

func isServing(f goFunc) bool { return f == goServeHTTP || f == goGRPCMethod }

// Expire emits what waited past the join horizon: held records whose Go
// call did not come, and Go calls no kernel record claimed (HTTP/2
// streams and gRPC calls, whose handlers run on a goroutine of their
// own) as requests of their own. now is wall-clock ns.
func (c *Correlator) Expire(now int64) { c.expire(now, false) }

// Flush emits everything that waits, as Expire does once the horizon
// has passed (at stop).
func (c *Correlator) Flush(now int64) { c.expire(now, true) }

func (c *Correlator) expire(now int64, all bool) {
	c.expireClients(now, all)
	c.expireTLS(now, all)
	c.expireClientTLS(now, all)
	for pid, gp := range c.goProcs {
		gone := gp.goneAt != 0 && (all || gp.goneAt < now-c.goRetain.Nanoseconds())
		if gone {
			defer c.forgetGoProc(pid)
		}
		c.releaseExpired(gp, now, all || gone)
		keep := gp.serving[:0]
		for _, call := range gp.serving {
			switch {
			case call.joined:
				c.unlist(call, inServing)
			case all || call.end < now-c.goRetain.Nanoseconds():
				if gp.exportable(call) { // else left out: see exportable
					r := c.streamRequest(pid, gp, call)
					c.emit(&r)
				}
				call.joined = true
				c.unlist(call, inServing)
			default:
				keep = append(keep, call)
			}
		}
		clear(gp.serving[len(keep):])
		gp.serving = keep
		c.pruneGo(gp, now)
	}
}

func (c *Correlator) streamRequest(pid uint32, gp *goProc, call *goCall) Request {
	end := gp.end(call)
	r := Request{
		StartUnixNano: call.start,
		EndUnixNano:   end,
		DurationNs:    end - call.start,
		PID:           pid,
		Comm:          gp.commOf(pid),
		EndReason:     EndStream,
		Answered:      true,
		HTTP:          &HTTP{Method: call.method, Target: call.target(), Pattern: call.pattern},
		Spans:         []Span{{Name: goFuncNames[call.fn], StartUnixNano: call.start, DurationNs: end - call.start}},
	}
	if call.fn == goGRPCMethod {
		// gRPC is a POST of the method's path over HTTP/2.
		r.HTTP.Method = "POST"
		r.RPC = newGRPC(call.path)
	}
	r.Service = r.Comm
	if ap, err := netip.ParseAddrPort(call.remote); err == nil {
		r.Conn.Peer = ap
	}
	r.Phases.Set(App, r.DurationNs)
	if gp.probes.GC {
		cost, pauses := gp.probes.ProbeCostNs, within(gp.pauses, call.start, end)
		r.Phases.Set(GCSTW, min(r.DurationNs, overlap(pauses, call.start, end, cost)))
		r.Spans = appendPauseSpans(r.Spans, pauses, call.start, end, cost)
	}
	var ser []interval
	// Up to the end probe itself: a WriteHeader right before the handler
	// returned may fall in the margin the probes' cost takes off.
	until := call.end
	for _, other := range gp.callsOf(call.goid) {
		if other.start < call.start || other.start > until || other == call {
			continue
		}
		switch {
		case isSerialization(other.fn):
			oend := gp.end(other)
			ser = append(ser, interval{start: other.start, end: oend})
			r.Spans = append(r.Spans, Span{Name: goFuncNames[other.fn], StartUnixNano: other.start, DurationNs: oend - other.start})
		case other.fn == goWriteHeader && r.HTTP.Status == 0 && r.RPC == nil:
			r.HTTP.Status = int(other.arg)
		case other.fn == goGRPCStatus && r.RPC != nil:
			// The last status written wins (there is one per RPC).
			r.RPC.StatusCode, r.RPC.StatusKnown = int(int32(other.arg)), true
		}
		other.joined = true
	}
	if r.RPC == nil && r.HTTP.Status == 0 {
		call.applyStatus(&r)
	}
	if gp.probes.Serialization {
		r.Phases.Set(Serialize, min(r.DurationNs, union(ser)))
	}
	assignIDs(&r, c.rng)
	return r
}

// commOf is the process's comm for its Go-only requests: from its kernel
// records, else from /proc (a process whose connection had no record yet).
func (gp *goProc) commOf(pid uint32) string {
	if gp.comm == "" {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil {
			gp.comm = strings.TrimSuffix(string(b), "\n")
		}
	}
	return gp.comm
}

// GC pause spans in Request.Spans, by runtime.stwReason (pauses of other
// reasons are not kept).
var gcPauseSpans = [...]string{
	loader.TracerdStwReasonSTW_GC_MARK_TERM:  "runtime.GC stop-the-world (mark termination)",
	loader.TracerdStwReasonSTW_GC_SWEEP_TERM: "runtime.GC stop-the-world (sweep termination)",
}

// appendPauseSpans appends the GC pauses overlapping [from, to],
// clipped to it; cost comes off each pause's end (timed between two
// probes). ivs: sorted, best narrowed to within(…, from, to) first.
func appendPauseSpans(out []Span, ivs []interval, from, to, cost int64) []Span {
	for _, iv := range ivs {
		s, e := max(iv.start, from), min(max(iv.start, iv.end-cost), to)
		if e > s {
			name := "" // never: only GC pauses are kept
			if int(iv.reason) < len(gcPauseSpans) {
				name = gcPauseSpans[iv.reason]
			}
			out = append(out, Span{Name: name, StartUnixNano: s, DurationNs: e - s})
		}
	}
	return out
}

// within returns the intervals (sorted by start, not overlapping each
// other: one pause at a time) that may overlap [from, to].
func within(ivs []interval, from, to int64) []interval {
	if len(ivs) == 0 {
		return nil
	}
	i := sort.Search(len(ivs), func(i int) bool { return ivs[i].end > from })
	j := sort.Search(len(ivs), func(j int) bool { return ivs[j].start >= to })
	if j < i {
		return nil
	}
	return ivs[i:j]
}

// overlap is the time of [from, to] covered by the sorted intervals,
// cost off each one's end. ivs: best narrowed to within(…, from, to)
// first.
func overlap(ivs []interval, from, to, cost int64) int64 {
	var total int64
	for _, iv := range ivs {
		s, e := max(iv.start, from), min(max(iv.start, iv.end-cost), to)
		if e > s {
			total += e - s
		}
	}
	return total
}

// union is the total time covered by intervals that may nest or overlap
// (json.Marshal inside a MarshalJSON inside Encode counts once).
func union(ivs []interval) int64 {
	if len(ivs) <= 1 { // the most common: one call, or none
		if len(ivs) == 0 {
			return 0
		}
		return ivs[0].end - ivs[0].start
	}
	slices.SortFunc(ivs, func(a, b interval) int { return cmp.Compare(a.start, b.start) })
	var total, curS, curE int64
	for i, iv := range ivs {
		if i == 0 || iv.start > curE {
			total += curE - curS
			curS, curE = iv.start, iv.end
			continue
		}
		curE = max(curE, iv.end)
	}
	return total + curE - curS
}
