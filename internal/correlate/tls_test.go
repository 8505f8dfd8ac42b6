package correlate

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/tracerd/tracerd/internal/goprobe"
	"github.com/tracerd/tracerd/internal/loader"
	"github.com/tracerd/tracerd/internal/tlswire/tlswiretest"
)

// tlsRecord is a kernel record of connection sk read at rd, answered at
// wl, whose bytes read and written begin with in and out.
func tlsRecord(sk uint64, index uint32, rd, wl uint64, in, out []byte, end EndReason) loader.Record {
	rec := baseRecord()
	rec.Pid, rec.Goid, rec.Sk, rec.RequestIndex = 7, 5, sk, index
	rec.T_est, rec.T_acc, rec.T_rx, rec.T_tx, rec.T_ack, rec.T_wr = 0, 0, 0, 0, 0, 0
	rec.Flags = 0
	rec.T_rd, rec.T_wl = rd, wl
	rec.ReqLen = uint16(copy(rec.ReqHead[:], in))
	rec.RespLen = uint16(copy(rec.RespHead[:], out))
	rec.EndReason = uint8(end)
	return rec
}

var (
	clientHello = []byte{22, 3, 1, 0, 200, 1}
	serverHello = []byte{22, 3, 3, 0, 90, 2}
	ccs         = []byte{20, 3, 3, 0, 1, 1}
	appData     = []byte{23, 3, 3, 0, 40}
)

// TLS 1.2: two exchanges before the request; the third record is the
// first request, beginning at the ClientHello's read, its handshake
// ending where Go's serverHandshake returned.
func TestFoldTLS12WithGo(t *testing.T) {
	c, out := newCorrelator(time.Minute)
	c.SetGoProbes(7, goprobe.Probes{TLS: true, HTTP: true, ProbeCostNs: 100}, true)
	hs := goEvent(goTLSHandshake, 5, 900, 5100, uint32(tls.VersionTLS12)|uint32(tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)<<16)
	hs.TlsFlags = uint8(loader.TracerdGoTlsFlagsGO_TLS_KNOWN | loader.TracerdGoTlsFlagsGO_TLS_PEER_CERT)
	r1 := tlsRecord(1, 0, 1000, 2000, clientHello, serverHello, EndNextRequest)
	r2 := tlsRecord(1, 1, 4000, 4900, []byte{22, 3, 3, 0, 70, 16}, ccs, EndNextRequest)
	r3 := tlsRecord(1, 2, 6000, 9000, appData, appData, EndIdle)
	c.AddRecord(&r1)
	c.AddGo(&hs) // the call's end comes after the ClientHello's record
	c.AddRecord(&r2)
	if n := len(out.reqs); n != 0 {
		t.Fatalf("handshake exchanges emitted as requests: %d", n)
	}
	c.AddRecord(&r3)
	r := out.one(t)
	if v, ok := r.Phases.Get(TLSHandshake); !ok || v != 5000-1000 {
		t.Errorf("tls_handshake = %d %v, want 4000 (ClientHello read → serverHandshake's end, probe cost off)", v, ok)
	}
	if v, _ := r.Phases.Get(App); v != 9000-6000 {
		t.Errorf("app = %d, want 3000", v)
	}
	if r.StartUnixNano != 1000 || r.Conn.RequestIndex != 0 {
		t.Errorf("start %d index %d, want the ClientHello's record's", r.StartUnixNano, r.Conn.RequestIndex)
	}
	want := TLS{Known: true, Version: tls.VersionTLS12, CipherSuite: tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, ClientCert: true}
	if r.TLS == nil || *r.TLS != want {
		t.Errorf("tls = %+v, want %+v", r.TLS, want)
	}
	// Keep-alive: the next request on the connection is plain.
	r4 := tlsRecord(1, 3, 20000, 21000, appData, appData, EndIdle)
	c.AddRecord(&r4)
	if r := out.one(t); r.TLS != nil || r.Phases.Has(TLSHandshake) {
		t.Errorf("second request has the handshake: %+v", r)
	}
}

// TLS 1.3: the client's Finished is read in the request's own record;
// app starts at the handshake's end.
func TestFoldTLS13WithGo(t *testing.T) {
	c, out := newCorrelator(time.Minute)
	c.SetGoProbes(7, goprobe.Probes{TLS: true, ProbeCostNs: 100}, true)
	hs := goEvent(goTLSHandshake, 5, 900, 3100, uint32(tls.VersionTLS13)|uint32(tls.TLS_AES_128_GCM_SHA256)<<16)
	hs.TlsFlags = uint8(loader.TracerdGoTlsFlagsGO_TLS_KNOWN | loader.TracerdGoTlsFlagsGO_TLS_RESUMED)
	r1 := tlsRecord(1, 0, 1000, 2000, clientHello, serverHello, EndNextRequest)
	r2 := tlsRecord(1, 1, 2900, 8000, ccs, appData, EndClose)
	c.AddRecord(&r1)
	c.AddGo(&hs)
	c.AddRecord(&r2)
	r := out.one(t)
	if v, _ := r.Phases.Get(TLSHandshake); v != 2000 {
		t.Errorf("tls_handshake = %d, want 2000", v)
	}
	if v, _ := r.Phases.Get(App); v != 8000-3000 {
		t.Errorf("app = %d, want 5000 (from the handshake's end)", v)
	}
	if !r.TLS.Resumed || r.TLS.Version != tls.VersionTLS13 {
		t.Errorf("tls = %+v", r.TLS)
	}
}

// Without a probe on the server's TLS library the handshake is folded
// from the bytes alone, ending at the server's last handshake write;
// plain HTTP on other connections is untouched.
func TestFoldTLSWithoutProbe(t *testing.T) {
	c, out := newCorrelator(time.Minute)
	r1 := tlsRecord(1, 0, 1000, 2000, clientHello, serverHello, EndNextRequest)
	r2 := tlsRecord(1, 1, 2500, 7000, ccs, appData, EndIdle)
	plain := tlsRecord(2, 0, 1500, 1600, []byte("GET / HTTP/1.1\r\n\r\n"), []byte("HTTP/1.1 200 OK\r\n"), EndNextRequest)
	c.AddRecord(&r1)
	c.AddRecord(&plain)
	if r := out.one(t); r.TLS != nil || r.HTTP == nil {
		t.Errorf("plain request: %+v", r)
	}
	c.AddRecord(&r2)
	r := out.one(t)
	if v, _ := r.Phases.Get(TLSHandshake); v != 2500-1000 {
		t.Errorf("tls_handshake = %d, want 1500 (to the client's next flight's read)", v)
	}
	if r.TLS == nil || r.TLS.Known {
		t.Errorf("tls = %+v, want present, unknown", r.TLS)
	}
}

// A handshake whose connection sends nothing more goes out at the
// horizon as a record of its own; one ending its connection at once too.
func TestTLSHandshakeAlone(t *testing.T) {
	c, out := newCorrelator(time.Minute)
	r1 := tlsRecord(1, 0, 1000, 2000, clientHello, serverHello, EndNextRequest)
	c.AddRecord(&r1)
	c.Flush(1 << 62)
	r := out.one(t)
	if v, _ := r.Phases.Get(TLSHandshake); v != 1000 || r.TLS == nil {
		t.Errorf("alone: tls_handshake %d, tls %+v", v, r.TLS)
	}
	closed := tlsRecord(3, 0, 1000, 2000, clientHello, serverHello, EndClose)
	c.AddRecord(&closed)
	if r := out.one(t); r.TLS != nil {
		t.Errorf("a lone ClientHello record closing its connection: %+v", r.TLS)
	}
}

// An OpenSSL server (libssl probed): the handshake ends where
// SSL_do_handshake returned 1 on the thread; method and target from the
// request line SSL_read returned, status from SSL_write's.
func TestFoldTLSOpenSSL(t *testing.T) {
	c, out := newCorrelator(time.Minute)
	c.SetGoProbes(7, goprobe.Probes{TLS: true, OpenSSL: true}, true)
	ssl := func(fn goFunc, at uint64, arg uint32, line string) {
		ev := goEvent(fn, 42, at, at, arg)
		ev.Tid = 42
		for i := range line {
			ev.Path[i] = int8(line[i])
		}
		ev.PathLen = uint8(len(line))
		c.AddGo(&ev)
	}
	r1 := tlsRecord(1, 0, 1000, 2000, clientHello, serverHello, EndNextRequest)
	r1.Tid, r1.Goid = 42, 0
	r2 := tlsRecord(1, 1, 2500, 7000, ccs, appData, EndIdle)
	r2.Tid, r2.Goid = 42, 0
	c.AddRecord(&r1)
	ssl(sslHandshakeDone, 2600, 0, "")
	ssl(sslReadLine, 3000, 0, "GET /index.html?q=1 HTTP/1.1\r\n")
	ssl(sslWriteStatus, 6900, 404, "")
	c.AddRecord(&r2)
	r := out.one(t)
	if v, _ := r.Phases.Get(TLSHandshake); v != 1600 {
		t.Errorf("tls_handshake = %d, want 1600 (ClientHello read → SSL_do_handshake returned 1)", v)
	}
	if r.HTTP == nil || r.HTTP.Method != "GET" || r.HTTP.Target != "/index.html?q=1" || r.HTTP.Status != 404 {
		t.Errorf("http = %+v", r.HTTP)
	}
	if v, _ := r.Phases.Get(App); v != 7000-2600 {
		t.Errorf("app = %d", v)
	}
}

// A kept-alive TLS request read by net/http's background read on
// another goroutine: joined with its ServeHTTP by the client's address;
// an HTTP/2 stream's ServeHTTP never is (streams are records of their
// own).
func TestJoinServeByPeer(t *testing.T) {
	for _, proto := range []uint8{1, 2} {
		c, out := newCorrelator(time.Minute)
		c.SetGoProbes(7, goprobe.Probes{HTTP: true, TLS: true}, true)
		serve := goEvent(goServeHTTP, 9, 1200, 1800, 0)
		for i, b := range []byte("GET") {
			serve.Method[i] = int8(b)
		}
		for i, b := range []byte("/x") {
			serve.Path[i] = int8(b)
		}
		remote := "127.0.0.1:40000"
		for i := range remote {
			serve.Remote[i] = int8(remote[i])
		}
		serve.MethodLen, serve.PathLen, serve.RemoteLen = 3, 2, uint8(len(remote))
		serve.ProtoMajor = proto
		wh := goEvent(goWriteHeader, 9, 1500, 1500, 201)
		c.AddGo(&wh)
		c.AddGo(&serve)
		rec := tlsRecord(1, 3, 1000, 2000, appData, appData, EndIdle)
		rec.Goid = 11 // the background reader
		rec.Family, rec.Rport = uint16(loader.TracerdAddrFamilyFAMILY_INET), 40000
		copy(rec.Raddr[:], []byte{127, 0, 0, 1})
		c.AddRecord(&rec)
		r := out.one(t)
		if proto == 2 {
			if r.HTTP != nil {
				t.Errorf("HTTP/2: the connection's record took the stream's ServeHTTP: http = %+v", r.HTTP)
			}
			continue
		}
		if r.HTTP == nil || r.HTTP.Method != "GET" || r.HTTP.Target != "/x" || r.HTTP.Status != 201 {
			t.Errorf("http = %+v", r.HTTP)
		}
	}
}

// wirePieces sends stream (one direction's bytes, from its start) as
// the kernel does: a read of each record's header, then of its body
// (OpenSSL's reads), or one piece; cut bytes to keep of the last.
func wirePieces(c *Correlator, sk uint64, dir uint8, stream []byte, perRecord bool, cut int) {
	seq := uint32(1000)
	send := func(b []byte, total int) {
		var w loader.TLSWire
		w.Kind, w.Dir, w.Sk, w.Pid, w.Seq, w.Total = uint32(loader.KindTLSWire), dir, sk, 7, seq, uint32(total)
		w.Len = uint16(copy(w.B[:], b))
		c.AddTLSWire(&w)
		seq += uint32(total)
	}
	if !perRecord {
		if cut > 0 && cut < len(stream) {
			send(stream[:cut], len(stream))
			return
		}
		send(stream, len(stream))
		return
	}
	for len(stream) >= 5 {
		n := min(5+int(stream[3])<<8|int(stream[4]), len(stream))
		send(stream[:5], 5)
		send(stream[5:n], n-5)
		stream = stream[n:]
	}
}

// An OpenSSL server (libssl probed: the handshake's end, but nothing of
// what it negotiated): version, cipher, resumption and the client's
// certificate read from the handshake's bytes, crypto/tls's own
// ConnectionState the truth.
func TestFoldTLSOpenSSLWire(t *testing.T) {
	srvCert, cliCert := tlswiretest.Certificate(t, "server.test"), tlswiretest.Certificate(t, "client")
	for _, tc := range []struct {
		name    string
		v       uint16
		mtls    bool
		twice   bool
		cut     int // bytes of the server's flight captured, 0: all
		resumed string
		cert    string
	}{
		{name: "1.2 mTLS", v: tls.VersionTLS12, mtls: true, resumed: "false", cert: "true"},
		{name: "1.2 resumed", v: tls.VersionTLS12, twice: true, resumed: "true", cert: "false"},
		{name: "1.3 full", v: tls.VersionTLS13, resumed: "false", cert: "unknown"},
		{name: "1.3 resumed", v: tls.VersionTLS13, twice: true, resumed: "true", cert: "unknown"},
		{name: "1.2 cut after the ServerHello", v: tls.VersionTLS12, mtls: true, cut: -1, resumed: "unknown", cert: "true"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := &tls.Config{Certificates: []tls.Certificate{srvCert}, MinVersion: tc.v, MaxVersion: tc.v}
			cli := &tls.Config{InsecureSkipVerify: true, ServerName: "server.test", MinVersion: tc.v, MaxVersion: tc.v, ClientSessionCache: tls.NewLRUClientSessionCache(2)}
			if tc.mtls {
				srv.ClientAuth, cli.Certificates = tls.RequireAnyClientCert, []tls.Certificate{cliCert}
			}
			in, out, st := tlswiretest.Handshake(t, srv, cli)
			if tc.twice {
				in, out, st = tlswiretest.Handshake(t, srv, cli)
			}
			cut := tc.cut
			if cut < 0 { // the ServerHello and one byte more
				cut = 5 + 4 + (int(out[6])<<16 | int(out[7])<<8 | int(out[8])) + 1
			}
			c, o := newCorrelator(time.Minute)
			c.SetGoProbes(7, goprobe.Probes{TLS: true, OpenSSL: true}, true)
			wirePieces(c, 1, uint8(loader.TracerdTlsWireDirTLS_WIRE_READ), in, true, 0)
			wirePieces(c, 1, uint8(loader.TracerdTlsWireDirTLS_WIRE_WRITE), out, false, cut)
			r1 := tlsRecord(1, 0, 1000, 2000, clientHello, serverHello, EndNextRequest)
			r1.Tid, r1.Goid = 42, 0
			r2 := tlsRecord(1, 1, 2500, 7000, ccs, appData, EndIdle)
			r2.Tid, r2.Goid = 42, 0
			c.AddRecord(&r1)
			done := goEvent(sslHandshakeDone, 42, 2600, 2600, 0)
			done.Tid = 42
			c.AddGo(&done)
			c.AddRecord(&r2)
			r := o.one(t)
			if r.TLS == nil || !r.TLS.Known || !r.TLS.FromWire || r.TLS.Version != st.Version || r.TLS.CipherSuite != st.CipherSuite {
				t.Fatalf("tls = %+v; crypto/tls: %#x %#x", r.TLS, st.Version, st.CipherSuite)
			}
			tri := func(v, unknown bool) string {
				if unknown {
					return "unknown"
				}
				return map[bool]string{true: "true", false: "false"}[v]
			}
			if got := tri(r.TLS.Resumed, r.TLS.ResumedUnknown); got != tc.resumed || (got != "unknown" && r.TLS.Resumed != st.DidResume) {
				t.Errorf("resumed %s, want %s (crypto/tls %v)", got, tc.resumed, st.DidResume)
			}
			if got := tri(r.TLS.ClientCert, r.TLS.ClientCertUnknown); got != tc.cert {
				t.Errorf("client cert %s, want %s (crypto/tls: %d certs)", got, tc.cert, len(st.PeerCertificates))
			}
			if len(c.tlsWire) != 0 {
				t.Errorf("wire state left: %d", len(c.tlsWire))
			}
		})
	}
}

// Go's own account wins over the bytes; a stream with a gap is not read
// past the gap.
func TestWirePreferGoAndGaps(t *testing.T) {
	srv := &tls.Config{Certificates: []tls.Certificate{tlswiretest.Certificate(t, "s")}, MaxVersion: tls.VersionTLS12}
	_, out, _ := tlswiretest.Handshake(t, srv, &tls.Config{InsecureSkipVerify: true})
	c, o := newCorrelator(time.Minute)
	c.SetGoProbes(7, goprobe.Probes{TLS: true, HTTP: true, ProbeCostNs: 100}, true)
	wirePieces(c, 1, uint8(loader.TracerdTlsWireDirTLS_WIRE_WRITE), out, false, 0)
	hs := goEvent(goTLSHandshake, 5, 900, 5100, uint32(tls.VersionTLS13)|uint32(tls.TLS_AES_128_GCM_SHA256)<<16)
	hs.TlsFlags = uint8(loader.TracerdGoTlsFlagsGO_TLS_KNOWN)
	r1 := tlsRecord(1, 0, 1000, 2000, clientHello, serverHello, EndNextRequest)
	r2 := tlsRecord(1, 1, 6000, 9000, appData, appData, EndIdle)
	c.AddGo(&hs)
	c.AddRecord(&r1)
	c.AddRecord(&r2)
	if r := o.one(t); r.TLS == nil || r.TLS.FromWire || r.TLS.Version != tls.VersionTLS13 {
		t.Errorf("tls = %+v, want Go's", r.TLS)
	}

	var w loader.TLSWire
	w.Dir, w.Sk, w.Pid, w.Seq = uint8(loader.TracerdTlsWireDirTLS_WIRE_WRITE), 2, 7, 100
	w.Len = uint16(copy(w.B[:], out[:3]))
	w.Total = uint32(w.Len)
	c.AddTLSWire(&w)
	w.Seq = 200 // a gap: the rest is not appended
	w.Len = uint16(copy(w.B[:], out[3:]))
	w.Total = uint32(w.Len)
	c.AddTLSWire(&w)
	var tl TLS
	c.wireFacts(2, 7, &tl)
	if tl.Known {
		t.Errorf("read past a gap: %+v", tl)
	}
	c.Expire(1 << 62)
	c.Expire(1<<62 + 1)
	if len(c.tlsWire) != 0 {
		t.Errorf("wire state not expired: %d", len(c.tlsWire))
	}
}
