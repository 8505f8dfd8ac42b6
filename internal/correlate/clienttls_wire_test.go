package correlate

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/tracerd/tracerd/internal/goprobe"
	"github.com/tracerd/tracerd/internal/loader"
	"github.com/tracerd/tracerd/internal/tlswire/tlswiretest"
)

// An OpenSSL client (curl; libssl probed, no handshake facts from it):
// version, cipher and resumption of its outbound connection read from
// the handshake's bytes it wrote and read, crypto/tls's own
// ConnectionState the truth.
func TestClientTLSWire(t *testing.T) {
	srvCert := tlswiretest.Certificate(t, "server.test")
	for _, tc := range []struct {
		name  string
		v     uint16
		twice bool
	}{
		{"1.2 full", tls.VersionTLS12, false},
		{"1.2 resumed", tls.VersionTLS12, true},
		{"1.3 full", tls.VersionTLS13, false},
		{"1.3 resumed", tls.VersionTLS13, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := &tls.Config{Certificates: []tls.Certificate{srvCert}, MinVersion: tc.v, MaxVersion: tc.v}
			cli := &tls.Config{InsecureSkipVerify: true, ServerName: "server.test", MinVersion: tc.v, MaxVersion: tc.v,
				ClientSessionCache: tls.NewLRUClientSessionCache(2)}
			sent, got, st := tlswiretest.Handshake(t, srv, cli) // the server's reads: what the client sent
			if tc.twice {
				sent, got, st = tlswiretest.Handshake(t, srv, cli)
			}
			c, o := newCorrelator(time.Minute)
			c.SetGoProbes(7, goprobe.Probes{TLS: true, OpenSSL: true}, true)
			wirePieces(c, 4, uint8(loader.TracerdTlsWireDirTLS_WIRE_WRITE), sent, false, 0)
			wirePieces(c, 4, uint8(loader.TracerdTlsWireDirTLS_WIRE_READ), got, true, 0)
			hello := tlsCall(0, 1000, 1000, 3000, 3100, clientHello, serverHello, EndNextRequest)
			c.AddRecord(&hello)
			index := uint32(1)
			if tc.v == tls.VersionTLS12 && !tc.twice {
				kex := tlsCall(1, 3500, 3500, 4000, 4100, []byte{22, 3, 3, 0, 70, 16}, ccs, EndNextRequest)
				c.AddRecord(&kex)
				index = 2
			}
			call := tlsCall(index, 4500, 4600, 9000, 9100, appData, appData, EndIdle)
			c.AddRecord(&call)
			c.Flush(0)
			r := o.one(t)
			want := TLS{Outbound: true, Known: true, FromWire: true, Version: st.Version, CipherSuite: st.CipherSuite, Resumed: st.DidResume}
			if r.TLS == nil || *r.TLS != want {
				t.Errorf("tls %+v, want %+v", r.TLS, want)
			}
			if len(c.tlsWire) != 0 {
				t.Errorf("wire state left: %d", len(c.tlsWire))
			}
		})
	}
}

// A pure client (curl: no served request, its calls wait for a parent
// until the horizon): a connection's socket reused by the next one
// before the first one's calls went out. Each first call folds its own
// connection's handshake, with its own facts from the bytes.
func TestClientTLSSocketReused(t *testing.T) {
	srvCert := tlswiretest.Certificate(t, "server.test")
	c, o := newCorrelator(time.Minute)
	c.SetGoProbes(7, goprobe.Probes{TLS: true, OpenSSL: true}, true)
	var want []uint16
	for i, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		srv := &tls.Config{Certificates: []tls.Certificate{srvCert}, MinVersion: v, MaxVersion: v}
		cli := &tls.Config{InsecureSkipVerify: true, ServerName: "server.test", MinVersion: v, MaxVersion: v}
		sent, got, st := tlswiretest.Handshake(t, srv, cli)
		want = append(want, st.Version)
		base := uint64(i) * 100000
		wirePieces(c, 4, uint8(loader.TracerdTlsWireDirTLS_WIRE_WRITE), sent, false, 0)
		wirePieces(c, 4, uint8(loader.TracerdTlsWireDirTLS_WIRE_READ), got, true, 0)
		hello := tlsCall(0, base+1000, base+1000, base+3000, base+3100, clientHello, serverHello, EndNextRequest)
		hello.T_syn, hello.T_est = base+100, base+200
		c.AddRecord(&hello)
		call := tlsCall(1, base+4500, base+4600, base+9000, base+9100, appData, appData, EndClose)
		c.AddRecord(&call)
	}
	c.Flush(0)
	got := o.take()
	if len(got) != 2 {
		t.Fatalf("%d calls, want 2", len(got))
	}
	for i, r := range got {
		base := int64(i) * 100000
		if r.TLS == nil || r.TLS.Version != want[i] || !r.TLS.FromWire {
			t.Errorf("call %d: tls %+v, want version %#x from the wire", i, r.TLS, want[i])
		}
		if v, _ := r.Phases.Get(TLSHandshake); v != 4500-1000 || r.StartUnixNano != base+100 {
			t.Errorf("call %d: tls_handshake %d start %d, want its own connection's (3500 from %d)", i, v, r.StartUnixNano, base+100)
		}
	}
}
