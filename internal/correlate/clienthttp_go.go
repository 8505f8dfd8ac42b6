package correlate

import (
	"github.com/tracerd/tracerd/internal/loader"
)

// The Go HTTP/1 client's view of its outbound calls: method, target and
// status, which the kernel cannot read from a call under TLS (its bytes
// are encrypted), from two probed entries (goinspect.HTTPClientWrite,
// goinspect.HTTPClientReadResponse):
//
//   - goHTTPClientRequest: (*http.Request).write about to write a request:
//     its method, URL path and query, the *http.Request, the writing
//     goroutine (a connection's writeLoop: one per connection) and when.
//   - goHTTPClientResponse: http.ReadResponse about to parse a response:
//     its status (read from the bytes the readLoop peeked at; 0 when not
//     there yet) and the *http.Request it answers. After a 1xx (100
//     Continue) the readLoop calls it again for the final response.
//
// A call's record joins its request by goroutine and time: the client
// record's goid is the goroutine that wrote last (bpf/send.h), the
// connection's writeLoop, and its request is that goroutine's latest
// begun before that write (keep-alive: one writeLoop writes the
// connection's requests one after the other, each after the previous
// answer was read, so the next one begins after this record's writes).
// A TLS 1.3 connection's first record begins with the client Finished
// its dialer wrote: the last write, the request's, is the writeLoop's.
// Responses join their request by the *http.Request both probes see
// (the readLoop and the writeLoop are given the same one); the status
// kept is the last response's, when it is final (≥ 200, or 101): a
// final response whose status line was not in the buffer yet (after a
// 100 Continue, it usually is not) leaves the call without a status
// rather than with the 1xx's.
//
// Every response is read before its connection's next request is
// written, so a call's responses are in before its record, which ends at
// that next write (or at the close, or at the idle sweep). What the
// probes say fills what the bytes did not: a plaintext call's own
// request line and status line come first.
//
// HTTP/2 calls (ALPN h2) run neither function: they get no method,
// target or status (the kernel's write → read cut does not follow their
// streams either).

const (
	goHTTPClientRequest  = loader.TracerdGoFuncGO_HTTP_CLIENT_REQUEST
	goHTTPClientResponse = loader.TracerdGoFuncGO_HTTP_CLIENT_RESPONSE
)

// maxGoClientCalls bounds the client requests kept per process (to the
// join horizon) for their records.
const maxGoClientCalls = 4096

// goClientCall is one request the Go client wrote, and its answer.
type goClientCall struct {
	goid   uint64 // the writing goroutine
	req    uint64 // its *http.Request
	start  int64  // wall ns: the write's entry
	method string
	target string
	status int // the last response's status (0: none seen, or not readable)
	joined bool
}

// goClientHTTP is what one process's Go client wrote and read, waiting
// for its records.
type goClientHTTP struct {
	byGoid map[uint64][]*goClientCall // by writing goroutine, oldest first
	byReq  map[uint64]*goClientCall   // the latest call of each *http.Request
	n      int
	buf    []byte // a target being built
}

// addGoClientHTTP takes a Go client event of process gp.
func (c *Correlator) addGoClientHTTP(gp *goProc, fn goFunc, ev *loader.GoEvent) {
	if gp.client == nil {
		gp.client = &goClientHTTP{byGoid: map[uint64][]*goClientCall{}, byReq: map[uint64]*goClientCall{}}
	}
	cl := gp.client
	at := c.clock.Wall(ev.Start)
	if fn == goHTTPClientResponse {
		if call := cl.byReq[ev.Req]; call != nil && !call.joined && call.start <= at {
			call.status = int(ev.Arg)
		}
		return
	}
	if cl.n >= maxGoClientCalls {
		// Records that never come (calls on untraced connections, or
		// Request.Write into a buffer): the oldest go.
		cl.prune(at - c.goRetain.Nanoseconds()/2)
		if cl.n >= maxGoClientCalls {
			cl.prune(at + 1)
		}
	}
	call := &goClientCall{goid: ev.Goid, req: ev.Req, start: at,
		method: c.strs.int8s(ev.Method[:], ev.MethodLen)}
	path := int8Bytes(ev.Path[:], ev.PathLen)
	query := int8Bytes(ev.Query[:], ev.QueryLen)
	if len(query) == 0 {
		call.target = c.strs.str(path)
	} else {
		cl.buf = append(append(append(cl.buf[:0], path...), '?'), query...)
		call.target = c.strs.str(cl.buf)
	}
	cl.byGoid[call.goid] = append(cl.byGoid[call.goid], call)
	cl.byReq[call.req] = call
	cl.n++
}

// joinGoClientHTTP fills what r's bytes did not say of its HTTP (method,
// target, status) from the Go client's call whose write the record
// holds, if the process's client is probed.
func (c *Correlator) joinGoClientHTTP(r *Request, rec *loader.Record) {
	gp := c.goProc(rec.Pid)
	if gp == nil || gp.client == nil || rec.Goid == 0 || rec.T_wr == 0 {
		return
	}
	cl := gp.client
	calls := cl.byGoid[rec.Goid]
	at := c.clock.Wall(max(rec.T_wl, rec.T_wr))
	i := len(calls) - 1
	for i >= 0 && calls[i].start > at {
		i--
	}
	if i < 0 || calls[i].joined {
		return // its event was lost, or the record is no request of the client's
	}
	call := calls[i]
	call.joined = true
	// The goroutine's older calls are done: theirs came or will not.
	for _, old := range calls[:i+1] {
		if cl.byReq[old.req] == old {
			delete(cl.byReq, old.req)
		}
	}
	cl.n -= i + 1
	keep := append(calls[:0], calls[i+1:]...)
	clear(calls[len(keep):])
	if len(keep) == 0 {
		delete(cl.byGoid, rec.Goid)
	} else {
		cl.byGoid[rec.Goid] = keep
	}
	if r.HTTP == nil {
		if call.method == "" {
			return
		}
		c.http = HTTP{Method: call.method, Target: call.target}
		r.HTTP = &c.http
	}
	if r.HTTP.Status == 0 && (call.status >= 200 || call.status == 101) {
		r.HTTP.Status = call.status
	}
}

// prune forgets the calls begun before horizon (a joined call is
// forgotten at once).
func (cl *goClientHTTP) prune(horizon int64) {
	for goid, calls := range cl.byGoid {
		keep := calls[:0]
		for _, call := range calls {
			if call.start >= horizon {
				keep = append(keep, call)
				continue
			}
			if cl.byReq[call.req] == call {
				delete(cl.byReq, call.req)
			}
			cl.n--
		}
		clear(calls[len(keep):])
		if len(keep) == 0 {
			delete(cl.byGoid, goid)
		} else {
			cl.byGoid[goid] = keep
		}
	}
}
