package findings

import (
	"crypto/tls"
	"net/netip"
	"strings"
	"testing"

	"github.com/tracerd/tracerd/internal/correlate"
)

// tlsReq is a connection's first request from client (address:port)
// starting at start, whose handshake took hs on a path of srtt.
func tlsReq(client string, start int64, version uint16, resumed bool, hs int64, srttUs uint32) *correlate.Request {
	r := req(hs+2*ms, map[correlate.Phase]int64{correlate.TLSHandshake: hs, correlate.App: ms, correlate.RecvQueue: 0})
	r.StartUnixNano, r.EndUnixNano = start, start+r.DurationNs
	r.Conn.Local = netip.MustParseAddrPort("10.0.0.1:443")
	r.Conn.Peer = netip.MustParseAddrPort(client)
	r.TCP.SrttUs = srttUs
	r.TLS = &correlate.TLS{Known: true, Version: version, CipherSuite: tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, Resumed: resumed}
	return r
}

// TestTLSFullHandshake: a TLS 1.2 full handshake by a client that had
// completed one with the same server in the last minutes costs one
// round trip; a first visit, a resumed session, TLS 1.3, another server
// or an old visit do not.
func TestTLSFullHandshake(t *testing.T) {
	const sec = int64(1e9)
	t0 := int64(1e18)
	a := New(DefaultConfig(), nil)
	// The first handshake of 10.0.0.2 with :443: nothing to resume.
	if fs := a.Analyze(tlsReq("10.0.0.2:40000", t0, tls.VersionTLS12, false, 8*ms, 3000)); len(fs) != 0 {
		t.Fatalf("first visit: %s", codes(fs))
	}
	// 30 s later, from another port: full again.
	fs := a.Analyze(tlsReq("10.0.0.2:40001", t0+30*sec, tls.VersionTLS12, false, 8*ms, 3000))
	if codes(fs) != "tls_full_handshake" || fs[0].LostNs != 3*ms || fs[0].Phase != correlate.TLSHandshake {
		t.Fatalf("returning client: %+v", fs)
	}
	if e, _ := fs[0].Lookup("previous_handshake_age_ms"); e.Int != 30000 {
		t.Errorf("previous_handshake_age_ms %+v", e)
	}
	if e, _ := fs[0].Lookup("tls_handshake_ns"); e.Int != 8*ms {
		t.Errorf("tls_handshake_ns %+v", e)
	}
	if c := Confirm(tlsReq("10.0.0.2:40001", t0, tls.VersionTLS12, false, 8*ms, 3000), &fs[0]); !strings.Contains(c, "openssl s_client -connect 10.0.0.1:443 -tls1_2 -reconnect") {
		t.Errorf("confirm: %s", c)
	}
	// The loss is at most the handshake.
	if fs := a.Analyze(tlsReq("10.0.0.2:40002", t0+31*sec, tls.VersionTLS12, false, 2*ms, 9000)); codes(fs) != "tls_full_handshake" || fs[0].LostNs != 2*ms {
		t.Errorf("srtt over the handshake: %+v", fs)
	}
	for name, r := range map[string]*correlate.Request{
		"resumed":                   tlsReq("10.0.0.2:40003", t0+32*sec, tls.VersionTLS12, true, 8*ms, 3000),
		"TLS 1.3":                   tlsReq("10.0.0.2:40004", t0+33*sec, tls.VersionTLS13, false, 8*ms, 3000),
		"another client":            tlsReq("10.0.0.3:40000", t0+34*sec, tls.VersionTLS12, false, 8*ms, 3000),
		"round trip under 1 ms":     tlsReq("10.0.0.2:40005", t0+35*sec, tls.VersionTLS12, false, 8*ms, 500),
		"round trip under 20 %":     tlsReq("10.0.0.2:40006", t0+36*sec, tls.VersionTLS12, false, 80*ms, 2000),
		"previous visit 6 min back": tlsReq("10.0.0.2:40007", t0+36*sec+6*60*sec, tls.VersionTLS12, false, 8*ms, 3000),
	} {
		if fs := a.Analyze(r); len(fs) != 0 {
			t.Errorf("%s: %s", name, codes(fs))
		}
	}
	// Another server (port) of the same process: its own clients.
	other := tlsReq("10.0.0.9:40000", t0+40*sec, tls.VersionTLS12, false, 8*ms, 3000)
	a.Analyze(other)
	other = tlsReq("10.0.0.9:40001", t0+41*sec, tls.VersionTLS12, false, 8*ms, 3000)
	other.Conn.Local = netip.MustParseAddrPort("10.0.0.1:8443")
	if fs := a.Analyze(other); len(fs) != 0 {
		t.Errorf("another port: %s", codes(fs))
	}
	// Unknown parameters (handshake seen in the bytes only): not named.
	r := tlsReq("10.0.0.9:40002", t0+42*sec, tls.VersionTLS12, false, 8*ms, 3000)
	r.TLS = &correlate.TLS{}
	if fs := a.Analyze(r); len(fs) != 0 {
		t.Errorf("unknown version: %s", codes(fs))
	}
}

// TestTLSClientsBounded: the clients remembered stay under the bound;
// stale ones make room.
func TestTLSClientsBounded(t *testing.T) {
	var c tlsClients
	t0 := int64(1e18)
	r := tlsReq("10.0.0.2:1", t0, tls.VersionTLS12, false, 8*ms, 3000)
	for i := range maxTLSClients + 10 {
		r.Conn.Peer = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 1)
		c.seen(r)
	}
	if len(c.last) != maxTLSClients {
		t.Fatalf("%d clients remembered, bound %d", len(c.last), maxTLSClients)
	}
	r.StartUnixNano = t0 + tlsSessionWindow + 1
	r.Conn.Peer = netip.MustParseAddrPort("192.168.0.1:1")
	c.seen(r)
	if len(c.last) != 1 {
		t.Errorf("after the window: %d clients remembered, want 1", len(c.last))
	}
}

// An outbound call's handshake (the traced process the client) is not
// remembered: its key would be the call's ephemeral port.
func TestTLSClientsIgnoreCalls(t *testing.T) {
	a := New(DefaultConfig(), nil)
	r := tlsReq("10.0.0.9:443", int64(1e18), tls.VersionTLS12, false, 8*ms, 3000)
	r.Direction, r.TLS.Outbound = correlate.DirClient, true
	r.Conn.Local = netip.MustParseAddrPort("10.0.0.1:40000")
	a.Analyze(r)
	if n := len(a.tls.last); n != 0 {
		t.Errorf("%d handshakes remembered after a call's", n)
	}
}
