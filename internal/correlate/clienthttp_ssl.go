package correlate

import (
	"strings"

	"github.com/tracerd/tracerd/internal/httpparse"
	"github.com/tracerd/tracerd/internal/loader"
)

// sslWriteLine: the first line of what SSL_write(_ex) was given when it
// begins with a method (an outbound call's request line; bpf/openssl.h).
const sslWriteLine = loader.TracerdGoFuncSSL_WRITE_LINE

// Outbound HTTP/1 calls over TLS made through OpenSSL's libssl: the
// process's libssl is probed (bpf/openssl.h) as a server's is, and the
// same probes see a client's plaintext: the request line SSL_write is
// given (SSL_WRITE_LINE) and the status line SSL_read returns (an
// SSL_READ_LINE that begins with "HTTP/"). They are instants on a
// thread; a call's record (internal/correlate/client.go) is joined with
// them by its thread (the thread that wrote the request) and time:
//
//   - the request line: SSL_write's entry precedes the write(2) that
//     sends its bytes, so the call's is the latest one on the thread at
//     or before the record's first write (T_wr), no older than
//     sslLineSlack. A connection's first call may begin with the end of
//     the handshake instead (TLS 1.3's client Finished is written by
//     SSL_connect, then the request in the same record): for it, the
//     first one inside (T_wr, T_wl] comes first.
//   - the status line: SSL_read returns after the read(2) that got its
//     bytes, so the call's is the earliest one on the thread at or after
//     the answer's first read (T_rd), up to sslLineSlack past its last
//     (T_rl).
//
// A line once joined is the call's; the server side (joinSSL) takes
// neither kind (a reverse proxy such as nginx is both a server and a
// client on one thread) and a call takes neither a request line read nor
// a status line written.

// sslLineSlack bounds the time between a line's event and the kernel's
// read or write of its bytes (encryption, a thread preempted between).
const sslLineSlack = int64(100e6) // 100 ms

// isClientSSLLine: an event of libssl's client side: a request line
// written or a status line read.
func isClientSSLLine(call *goCall) bool {
	return call.fn == sslWriteLine || (call.fn == sslReadLine && strings.HasPrefix(call.path, "HTTP/"))
}

// sslClientHTTP is what libssl's plaintext said of a call, kept with its
// record while the call waits for its parent (client.go: hold).
type sslClientHTTP struct {
	ok             bool
	method, target string
	status         int
}

// joinSSLClient finds the request and status lines of call rec (r, not
// plaintext: no HTTP from its bytes) among its process's libssl events;
// firstCall: the record is its connection's first call after a held
// handshake. The lines joined are forgotten.
func (c *Correlator) joinSSLClient(r *Request, rec *loader.Record, firstCall bool) sslClientHTTP {
	gp := c.goProc(rec.Pid)
	if r.HTTP != nil || gp == nil || !gp.probes.OpenSSL || rec.T_wr == 0 {
		return sslClientHTTP{}
	}
	key := uint64(rec.Tid)
	calls := gp.callsOf(key)
	if len(calls) == 0 {
		return sslClientHTTP{}
	}
	wr, wl := c.clock.Wall(rec.T_wr), c.clock.Wall(max(rec.T_wl, rec.T_wr))
	var before, inside *goCall
	for _, call := range calls {
		if call.fn != sslWriteLine || call.joined {
			continue
		}
		switch {
		case call.start <= wr && call.start >= wr-sslLineSlack:
			if before == nil || call.start > before.start {
				before = call
			}
		case call.start > wr && call.start <= wl && firstCall:
			if inside == nil || call.start < inside.start {
				inside = call
			}
		}
	}
	line := before
	if inside != nil {
		line = inside
	}
	if line == nil {
		return sslClientHTTP{}
	}
	req, ok := httpparse.ParseRequestWith([]byte(line.path), c.strs.str)
	if !ok {
		return sslClientHTTP{}
	}
	line.joined = true
	out := sslClientHTTP{ok: true, method: req.Method, target: req.Target}
	if rec.T_rd != 0 {
		rd, rl := c.clock.Wall(rec.T_rd), c.clock.Wall(max(rec.T_rl, rec.T_rd))
		var first *goCall
		for _, call := range calls {
			if call.fn != sslReadLine || call.joined || call.start < rd || call.start > rl+sslLineSlack ||
				!strings.HasPrefix(call.path, "HTTP/") {
				continue
			}
			if first == nil || call.start < first.start {
				first = call
			}
		}
		if first != nil {
			if status, ok := httpparse.ParseResponse([]byte(first.path)); ok {
				out.status = status
				first.joined = true
			}
		}
	}
	keep := c.keepCalls(calls, func(call *goCall) bool { return !call.joined })
	gp.setCalls(key, keep)
	return out
}

// apply gives r the call's HTTP (c.http: the emitted request's).
func (s sslClientHTTP) apply(c *Correlator, r *Request) {
	if !s.ok || r.HTTP != nil {
		return
	}
	c.http = HTTP{Method: s.method, Target: s.target, Status: s.status}
	r.HTTP = &c.http
}
