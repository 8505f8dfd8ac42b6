package correlate

import (
	"testing"
	"time"

	"github.com/tracerd/tracerd/internal/goprobe"
	"github.com/tracerd/tracerd/internal/loader"
)

// sslLine adds a libssl event of pid 7 on thread 3 at at (an instant).
func sslLine(c *Correlator, fn goFunc, at uint64, arg uint32, line string) {
	ev := goEvent(fn, 3, at, at, arg)
	ev.Pid, ev.Tid = 7, 3
	for i := range line {
		ev.Path[i] = int8(line[i])
	}
	ev.PathLen = uint8(len(line))
	c.AddGo(&ev)
}

func wantHTTP(t *testing.T, what string, r Request, method, target string, status int) {
	t.Helper()
	if r.HTTP == nil || r.HTTP.Method != method || r.HTTP.Target != target || r.HTTP.Status != status {
		t.Errorf("%s: http %+v, want %s %s %d", what, r.HTTP, method, target, status)
	}
}

// A libssl client (curl): TLS 1.3, the client's Finished written by
// SSL_connect in the first call's record before the request; a second
// call kept alive. Each call gets the request line SSL_write was given
// and the status line SSL_read returned on its thread.
func TestSSLClientHTTP(t *testing.T) {
	c, out := newCorrelator(time.Minute)
	c.SetGoProbes(7, goprobe.Probes{TLS: true, OpenSSL: true}, true)
	hello := tlsCall(0, 1000, 1000, 3000, 3100, clientHello, serverHello, EndNextRequest)
	c.AddRecord(&hello)
	// An earlier call's line on the thread, never joined (its record
	// lost): older than the call's first write, not inside its writes.
	sslLine(c, sslWriteLine, 900, 0, "DELETE /old HTTP/1.1\r\n")
	sslLine(c, sslWriteLine, 3420, 0, "POST /items?x=1 HTTP/1.1\r\n")
	sslLine(c, sslReadLine, 5100, 0, "HTTP/1.1 201 Created\r\n")
	sslLine(c, sslWriteLine, 6000, 0, "GET /items/7?fields=a,b HTTP/1.1\r\n")
	first := tlsCall(1, 3400, 3450, 5000, 5200, ccs, appData, EndNextRequest)
	c.AddRecord(&first)
	sslLine(c, sslReadLine, 7050, 0, "HTTP/1.1 404 Not Found\r\n")
	second := tlsCall(2, 6010, 6010, 7000, 7100, appData, appData, EndIdle)
	c.AddRecord(&second)
	c.Flush(0)
	got := out.take()
	if len(got) != 2 {
		t.Fatalf("%d calls, want 2", len(got))
	}
	wantHTTP(t, "first call (after the handshake)", got[0], "POST", "/items?x=1", 201)
	wantHTTP(t, "kept-alive call", got[1], "GET", "/items/7?fields=a,b", 404)
	if got[0].TLS == nil || !got[0].Phases.Has(TLSHandshake) {
		t.Errorf("first call: tls %+v phases %v, want the handshake folded", got[0].TLS, got[0].Phases)
	}
}

// A reverse proxy (nginx): a served request and the call it makes on
// one thread, the call's lines inside the served request's window. The
// served request gets its own request line and status, the call its
// own, whichever record comes first.
func TestSSLClientHTTPProxy(t *testing.T) {
	for _, callFirst := range []bool{false, true} {
		c, out := newCorrelator(time.Minute)
		c.SetGoProbes(7, goprobe.Probes{TLS: true, OpenSSL: true}, true)
		sslLine(c, sslReadLine, 1100, 0, "GET /front?id=9 HTTP/1.1\r\n") // served: read
		sslLine(c, sslWriteLine, 1500, 0, "PUT /up?id=9 HTTP/1.1\r\n")   // call: written
		sslLine(c, sslReadLine, 2600, 0, "HTTP/1.1 201 Created\r\n")     // call: answer read
		sslLine(c, sslWriteStatus, 2900, 200, "")                        // served: status written
		served := tlsRecord(1, 5, 1000, 3000, appData, appData, EndIdle)
		served.Tid, served.Goid = 3, 0
		call := tlsCall(3, 1510, 1510, 2500, 2700, appData, appData, EndIdle)
		recs := []*loader.Record{&served, &call}
		if callFirst {
			recs[0], recs[1] = recs[1], recs[0]
		}
		for _, r := range recs {
			c.AddRecord(r)
		}
		c.Flush(0)
		for _, r := range out.take() {
			if r.Direction == DirClient {
				wantHTTP(t, "call", r, "PUT", "/up?id=9", 201)
			} else {
				wantHTTP(t, "served", r, "GET", "/front?id=9", 200)
			}
		}
	}
}

// A call whose record waits for its parent (a process that serves
// nothing) keeps what libssl said past the join horizon of its events.
func TestSSLClientHTTPHeld(t *testing.T) {
	c, out := newCorrelator(time.Millisecond)
	c.SetGoProbes(7, goprobe.Probes{TLS: true, OpenSSL: true}, true)
	sslLine(c, sslWriteLine, 1000, 0, "HEAD /h HTTP/1.1\r\n")
	sslLine(c, sslReadLine, 2100, 0, "HTTP/1.1 200 OK\r\n")
	call := tlsCall(3, 1010, 1010, 2000, 2200, appData, appData, EndIdle)
	c.AddRecord(&call)
	c.Expire(time.Now().Add(time.Hour).UnixNano()) // events pruned, the call released
	wantHTTP(t, "held call", out.one(t), "HEAD", "/h", 200)
}
