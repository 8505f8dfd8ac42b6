package correlate

import (
	"testing"
	"time"

	"github.com/tracerd/tracerd/internal/goprobe"
	"github.com/tracerd/tracerd/internal/loader"
)

// clientWrite is the Go client's (*Request).write entry at start on
// goroutine goid, for the *http.Request req.
func clientWrite(goid, req, start uint64, method, path, query string) loader.GoEvent {
	ev := goEvent(goHTTPClientRequest, goid, start, start, 0)
	ev.Req = req
	for i := range method {
		ev.Method[i] = int8(method[i])
	}
	for i := range path {
		ev.Path[i] = int8(path[i])
	}
	for i := range query {
		ev.Query[i] = int8(query[i])
	}
	ev.MethodLen, ev.PathLen, ev.QueryLen = uint8(len(method)), uint8(len(path)), uint8(len(query))
	return ev
}

// clientRead is its ReadResponse entry at start on the readLoop
// (goroutine goid): status 0 when the line was not in the buffer.
func clientRead(goid, req, start uint64, status uint32) loader.GoEvent {
	ev := goEvent(goHTTPClientResponse, goid, start, start, status)
	ev.Req = req
	return ev
}

// encrypted is a client record of connection sk whose last write was by
// goroutine goid: TLS application data both ways.
func encrypted(sk, goid uint64, index uint32, wr, wl, rd, rl uint64) loader.Record {
	rec := tlsCall(index, wr, wl, rd, rl, appData, appData, EndNextRequest)
	rec.Sk, rec.Goid = sk, goid
	return rec
}

// Two pooled connections in use at once (writeLoops 21 and 31, readLoops
// 22 and 32), keep-alive on the first: each record gets its own call's
// method, target (query included) and final status, though the next
// call's write entry and the other connection's events come before it.
func TestGoClientHTTPJoin(t *testing.T) {
	c, out := newCorrelator(time.Minute)
	c.SetGoProbes(7, goprobe.Probes{HTTPClient: true, TLS: true}, true)
	add := func(evs ...loader.GoEvent) {
		for i := range evs {
			c.AddGo(&evs[i])
		}
	}
	add(clientWrite(21, 0x100, 1000, "GET", "/a", "x=1"),
		clientWrite(31, 0x200, 1050, "POST", "/b", ""),
		clientRead(32, 0x200, 4000, 100), // 100 Continue, then the final one
		clientRead(22, 0x100, 5000, 200),
		clientRead(32, 0x200, 6000, 201),
		clientWrite(21, 0x300, 7000, "GET", "/missing", ""))
	// The first connection's first call ends at its next write (7010).
	a := encrypted(4, 21, 1, 1010, 1020, 4900, 5100)
	c.AddRecord(&a)
	add(clientRead(22, 0x300, 9000, 404))
	cc := encrypted(4, 21, 2, 7010, 7020, 8900, 9100)
	c.AddRecord(&cc)
	b := encrypted(5, 31, 1, 1060, 4100, 3900, 6100)
	c.AddRecord(&b)
	c.Flush(0)
	want := []HTTP{{Method: "GET", Target: "/a?x=1", Status: 200}, {Method: "GET", Target: "/missing", Status: 404},
		{Method: "POST", Target: "/b", Status: 201}}
	got := out.take()
	if len(got) != len(want) {
		t.Fatalf("%d calls emitted, want %d", len(got), len(want))
	}
	for i, r := range got {
		if r.HTTP == nil || *r.HTTP != want[i] {
			t.Errorf("call %d (conn %d): http %+v, want %+v", i, r.Conn.RequestIndex, r.HTTP, want[i])
		}
	}
	if cl := c.goProcs[7].client; cl.n != 0 || len(cl.byGoid) != 0 || len(cl.byReq) != 0 {
		t.Errorf("joined calls kept: n %d, %d goroutines, %d requests", cl.n, len(cl.byGoid), len(cl.byReq))
	}
}

// The bytes come first (a plaintext call); a final response whose status
// line was not buffered yet leaves no status (not the 1xx's); a record
// whose request's event was lost takes no older call's facts.
func TestGoClientHTTPEdges(t *testing.T) {
	c, out := newCorrelator(time.Minute)
	c.SetGoProbes(7, goprobe.Probes{HTTPClient: true}, true)
	evs := []loader.GoEvent{
		clientWrite(21, 0x100, 1000, "GET", "/probe", ""),
		clientRead(22, 0x100, 3000, 500),
		clientWrite(41, 0x400, 1000, "PUT", "/c", ""),
		clientRead(42, 0x400, 2000, 100),
		clientRead(42, 0x400, 2100, 0),
	}
	for i := range evs {
		c.AddGo(&evs[i])
	}
	plain := tlsCall(1, 1010, 1020, 2900, 3100, []byte("GET /wire HTTP/1.1\r\n\r\n"), []byte("HTTP/1.1 503 Busy\r\n"), EndNextRequest)
	plain.Goid = 21
	c.AddRecord(&plain)
	put := encrypted(6, 41, 1, 1010, 1900, 1990, 2500)
	c.AddRecord(&put)
	lost := encrypted(4, 21, 2, 5000, 5010, 6000, 6100) // its write's event never came
	c.AddRecord(&lost)
	c.Flush(0)
	got := out.take()
	if len(got) != 3 {
		t.Fatalf("%d calls emitted, want 3", len(got))
	}
	if h := got[0].HTTP; h == nil || *h != (HTTP{Method: "GET", Target: "/wire", Status: 503}) {
		t.Errorf("plaintext call: http %+v, want its own bytes' GET /wire 503", h)
	}
	if h := got[1].HTTP; h == nil || *h != (HTTP{Method: "PUT", Target: "/c"}) {
		t.Errorf("after a 100 Continue, the final status unread: http %+v, want PUT /c without a status", h)
	}
	if got[2].HTTP != nil {
		t.Errorf("a call whose event was lost: http %+v, want none", got[2].HTTP)
	}
}

// Calls whose records never come (an untraced connection, Request.Write
// into a buffer) are forgotten past the join horizon, and bounded.
func TestGoClientHTTPBounded(t *testing.T) {
	c, _ := newCorrelator(time.Second)
	c.SetGoProbes(7, goprobe.Probes{HTTPClient: true}, true)
	for i := range maxGoClientCalls + 10 {
		ev := clientWrite(uint64(100+i%7), uint64(0x1000+i), uint64(1000+i), "GET", "/x", "")
		c.AddGo(&ev)
	}
	cl := c.goProcs[7].client
	if cl.n > maxGoClientCalls || len(cl.byReq) > maxGoClientCalls {
		t.Errorf("%d calls kept (%d by request), bound %d", cl.n, len(cl.byReq), maxGoClientCalls)
	}
	c.Expire(int64(10 * time.Second))
	if cl.n != 0 || len(cl.byGoid) != 0 || len(cl.byReq) != 0 {
		t.Errorf("past the horizon: n %d, %d goroutines, %d requests kept", cl.n, len(cl.byGoid), len(cl.byReq))
	}
}
