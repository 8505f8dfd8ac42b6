package correlate

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/tracerd/tracerd/internal/goprobe"
	"github.com/tracerd/tracerd/internal/loader"
)

// tlsCall is a client record of pid 7's connection sk by thread 3: its
// writes from wr to wl (the first beginning with out), its answer read
// from rd to rl (beginning with in; rd 0: none).
func tlsCall(index uint32, wr, wl, rd, rl uint64, out, in []byte, end EndReason) loader.Record {
	rec := loader.Record{Kind: 1, Pid: 7, Tid: 3, Direction: uint8(DirClient), Sk: 4, RequestIndex: index,
		T_wr: wr, T_wl: wl, T_tx: wl, T_rd: rd, T_rl: rl, EndReason: uint8(end)}
	if index == 0 {
		rec.T_syn, rec.T_est, rec.Flags = 100, 200, uint32(loader.TracerdReqFlagsREQ_HAS_EST)
		rec.SynRetrans = 1
	}
	rec.ReqLen = uint16(copy(rec.ReqHead[:], out))
	rec.RespLen = uint16(copy(rec.RespHead[:], in))
	return rec
}

// clientHandshake is Go's clientHandshake on goroutine 9, thread 3.
func clientHandshake(start, end uint64, version, cipher uint16, flags loader.TracerdGoTlsFlags) loader.GoEvent {
	ev := goEvent(goTLSClientHandshake, 9, start, end, uint32(version)|uint32(cipher)<<16)
	ev.Tid, ev.TlsFlags = 3, uint8(flags)
	return ev
}

// checkFolded: the one call emitted begins at its connect, has connect
// and tls_handshake (want), request_index 0, and send from sendFrom.
func checkFolded(t *testing.T, r Request, handshake int64, sentAt, sendFrom uint64) {
	t.Helper()
	if r.Direction != DirClient || r.Conn.RequestIndex != 0 || r.StartUnixNano != 100 {
		t.Errorf("direction %v index %d start %d, want a call at its connect (100), index 0", r.Direction,
			r.Conn.RequestIndex, r.StartUnixNano)
	}
	if v, ok := r.Phases.Get(Connect); !ok || v != 100 || r.TCP.SynRetransmits != 1 {
		t.Errorf("connect = %d %v, syn_retransmits %d; want 100, 1", v, ok, r.TCP.SynRetransmits)
	}
	if v, ok := r.Phases.Get(TLSHandshake); !ok || v != handshake {
		t.Errorf("tls_handshake = %d %v, want %d", v, ok, handshake)
	}
	if v, ok := r.Phases.Get(Send); !ok || v != int64(sentAt-sendFrom) {
		t.Errorf("send = %d %v, want %d (from the handshake's end)", v, ok, sentAt-sendFrom)
	}
	if r.TLS == nil || !r.TLS.Outbound || r.TLS.ClientCert {
		t.Errorf("tls %+v, want an outbound handshake's", r.TLS)
	}
}

// TLS 1.3, probed: the ClientHello's flight is no call; the client's
// Finished is written in the request's own record; the handshake is
// clientHandshake's call (the probes' cost off), send begins at its end.
func TestClientTLS13WithGo(t *testing.T) {
	c, out := newCorrelator(time.Minute)
	c.SetGoProbes(7, goprobe.Probes{TLS: true, ProbeCostNs: 100}, true)
	hello := tlsCall(0, 1000, 1000, 3000, 3100, clientHello, serverHello, EndNextRequest)
	c.AddRecord(&hello)
	hs := clientHandshake(900, 3600, tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256,
		loader.TracerdGoTlsFlagsGO_TLS_KNOWN|loader.TracerdGoTlsFlagsGO_TLS_RESUMED)
	c.AddGo(&hs)
	call := tlsCall(1, 3450, 3700, 33000, 33200, ccs, appData, EndIdle)
	c.AddRecord(&call)
	c.Flush(0)
	got := out.take()
	if len(got) != 1 {
		t.Fatalf("%d calls emitted, want 1 (the handshake's flight folded in)", len(got))
	}
	r := got[0]
	checkFolded(t, r, 3500-900, 3700, 3500)
	want := TLS{Known: true, Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256, Resumed: true, Outbound: true}
	if *r.TLS != want {
		t.Errorf("tls %+v, want %+v", *r.TLS, want)
	}
	if r.EndUnixNano != 33200 || r.DurationNs != 33200-100 {
		t.Errorf("end %d duration %d", r.EndUnixNano, r.DurationNs)
	}
	// Pooled: the next call on the connection has neither.
	next := tlsCall(2, 40000, 40100, 70000, 70100, appData, appData, EndIdle)
	c.AddRecord(&next)
	c.Flush(0)
	if r := out.one(t); r.TLS != nil || r.Phases.Has(TLSHandshake) || r.Phases.Has(Connect) {
		t.Errorf("a pooled call has the handshake: %+v", r)
	}
}

// TLS 1.3, probed, the session tickets read between the client's
// Finished and its request: that record (its writes all inside the
// handshake) is a flight too.
func TestClientTLS13TicketsBeforeRequest(t *testing.T) {
	c, out := newCorrelator(time.Minute)
	c.SetGoProbes(7, goprobe.Probes{TLS: true, ProbeCostNs: 100}, true)
	hello := tlsCall(0, 1000, 1000, 3000, 3100, clientHello, serverHello, EndNextRequest)
	c.AddRecord(&hello)
	finished := tlsCall(1, 3400, 3450, 3550, 3560, ccs, appData, EndNextRequest)
	hs := clientHandshake(900, 3600, tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256, loader.TracerdGoTlsFlagsGO_TLS_KNOWN)
	c.AddGo(&hs)
	c.AddRecord(&finished)
	call := tlsCall(2, 3800, 3900, 34000, 34100, appData, appData, EndIdle)
	c.AddRecord(&call)
	c.Flush(0)
	got := out.take()
	if len(got) != 1 {
		t.Fatalf("%d calls emitted, want 1", len(got))
	}
	checkFolded(t, got[0], 3500-900, 3900, 3800)
}

// TLS 1.2 without probes: both client flights begin with a handshake
// record; the handshake runs from the ClientHello's write to the
// request's first write; what was negotiated is unknown.
func TestClientTLS12Bytes(t *testing.T) {
	c, out := newCorrelator(time.Minute)
	hello := tlsCall(0, 1000, 1000, 3000, 3100, clientHello, serverHello, EndNextRequest)
	kex := tlsCall(1, 3500, 3500, 5000, 5000, []byte{22, 3, 3, 0, 37, 16}, ccs, EndNextRequest)
	call := tlsCall(2, 5200, 5300, 36000, 36100, appData, appData, EndClose)
	for _, rec := range []*loader.Record{&hello, &kex, &call} {
		c.AddRecord(rec)
	}
	c.Flush(0)
	got := out.take()
	if len(got) != 1 {
		t.Fatalf("%d calls emitted, want 1", len(got))
	}
	checkFolded(t, got[0], 5200-1000, 5300, 5200)
	if got[0].TLS.Known {
		t.Errorf("tls %+v known without probes", got[0].TLS)
	}
}

// A handshake whose connection never carried a call (it closed, or its
// first call has not ended by the horizon) goes out as a call of its
// own, with its connect and tls_handshake.
func TestClientTLSHandshakeAlone(t *testing.T) {
	c, out := newCorrelator(time.Minute)
	hello := tlsCall(0, 1000, 1000, 3000, 3100, clientHello, serverHello, EndNextRequest)
	c.AddRecord(&hello)
	c.Flush(0)
	r := out.one(t)
	if v, _ := r.Phases.Get(TLSHandshake); r.Direction != DirClient || v != 3100-1000 || !r.Phases.Has(Connect) {
		t.Errorf("direction %v phases tls_handshake %d connect %v", r.Direction, v, r.Phases.Has(Connect))
	}
}

// crypto/tls's close_notify at Close (one small encrypted record, no
// answer, the connection's end) is no call; a small unanswered write
// that is not a TLS record is.
func TestClientTLSCloseNotify(t *testing.T) {
	c, out := newCorrelator(time.Minute)
	c.NoteCaller(7)
	alert13 := []byte{23, 3, 3, 0, 19, 0xaa, 0x0a, 0xbb} // cut at a '\n' as the kernel keeps it
	rec := tlsCall(3, 5000, 5000, 0, 0, alert13, nil, EndClose)
	c.AddRecord(&rec)
	alert12 := make([]byte, 31)
	copy(alert12, []byte{21, 3, 3, 0, 26})
	rec = tlsCall(3, 5000, 5000, 0, 0, alert12, nil, EndClose)
	c.AddRecord(&rec)
	c.Flush(0)
	if n := len(out.take()); n != 0 {
		t.Fatalf("%d calls emitted for close_notify alerts", n)
	}
	plain := tlsCall(3, 5000, 5000, 0, 0, []byte("PING\r\n"), nil, EndClose)
	c.AddRecord(&plain)
	big := tlsCall(4, 5000, 5000, 0, 0, []byte{23, 3, 3, 1, 0, 1, 2}, nil, EndClose)
	c.AddRecord(&big)
	c.Flush(0)
	if n := len(out.take()); n != 2 {
		t.Fatalf("%d calls emitted, want the plaintext and the large record's", n)
	}
}

// Two handshakes of the process at once: the one on the ClientHello's
// thread is its connection's.
func TestClientTLSConcurrentHandshakes(t *testing.T) {
	c, out := newCorrelator(time.Minute)
	c.SetGoProbes(7, goprobe.Probes{TLS: true}, true)
	mine := clientHandshake(900, 3600, tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256, loader.TracerdGoTlsFlagsGO_TLS_KNOWN)
	other := clientHandshake(950, 4000, tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, loader.TracerdGoTlsFlagsGO_TLS_KNOWN)
	other.Tid, other.Goid = 4, 11
	hello := tlsCall(0, 1000, 1000, 3000, 3100, clientHello, serverHello, EndNextRequest)
	c.AddRecord(&hello)
	c.AddGo(&mine)
	c.AddGo(&other)
	call := tlsCall(1, 3450, 3700, 33000, 33200, ccs, appData, EndIdle)
	c.AddRecord(&call)
	c.Flush(0)
	r := out.one(t)
	if v, _ := r.Phases.Get(TLSHandshake); v != 3600-900 || r.TLS.Version != tls.VersionTLS13 {
		t.Errorf("tls_handshake %d version %x, want thread 3's handshake (2700, TLS 1.3)", v, r.TLS.Version)
	}
}
