package tlswire

import (
	"crypto/tls"
	"testing"

	"github.com/tracerd/tracerd/internal/tlswire/tlswiretest"
)

type scenario struct {
	name    string
	srv     func() (*tls.Config, *tls.Config) // server and client configurations
	twice   bool                              // the second handshake (resumption) is the one checked
	certReq Tri                               // TLS 1.2: the server's CertificateRequest
	retry   bool
}

func scenarios(t testing.TB) []scenario {
	srvCert, cliCert := tlswiretest.Certificate(t, "server.test"), tlswiretest.Certificate(t, "client")
	base := func(v uint16) (*tls.Config, *tls.Config) {
		return &tls.Config{Certificates: []tls.Certificate{srvCert}, MinVersion: v, MaxVersion: v},
			&tls.Config{InsecureSkipVerify: true, ServerName: "server.test", MinVersion: v, MaxVersion: v}
	}
	withCache := func(v uint16) func() (*tls.Config, *tls.Config) {
		// One server (its session ticket keys) and one client cache.
		s, c := base(v)
		c.ClientSessionCache = tls.NewLRUClientSessionCache(4)
		return func() (*tls.Config, *tls.Config) { return s, c }
	}
	mtls := func(v uint16, auth tls.ClientAuthType, send bool) func() (*tls.Config, *tls.Config) {
		return func() (*tls.Config, *tls.Config) {
			s, c := base(v)
			s.ClientAuth = auth
			if send {
				c.Certificates = []tls.Certificate{cliCert}
			}
			return s, c
		}
	}
	plain := func(v uint16) func() (*tls.Config, *tls.Config) {
		return func() (*tls.Config, *tls.Config) { return base(v) }
	}
	return []scenario{
		{name: "1.2 full", srv: plain(tls.VersionTLS12), certReq: No},
		{name: "1.2 resumed", srv: withCache(tls.VersionTLS12), twice: true, certReq: No},
		{name: "1.2 client cert", srv: mtls(tls.VersionTLS12, tls.RequireAnyClientCert, true), certReq: Yes},
		{name: "1.2 cert requested, none sent", srv: mtls(tls.VersionTLS12, tls.RequestClientCert, false), certReq: Yes},
		{name: "1.3 full", srv: plain(tls.VersionTLS13)},
		{name: "1.3 resumed", srv: withCache(tls.VersionTLS13), twice: true},
		{name: "1.3 client cert", srv: mtls(tls.VersionTLS13, tls.RequireAnyClientCert, true)},
		{name: "1.3 hello retry", srv: func() (*tls.Config, *tls.Config) {
			s, c := base(tls.VersionTLS13)
			s.CurvePreferences = []tls.CurveID{tls.CurveP384}
			c.CurvePreferences = []tls.CurveID{tls.X25519, tls.CurveP384}
			return s, c
		}, retry: true},
	}
}

// TestRealHandshakes checks the parser against crypto/tls's own account
// of handshakes it ran (TLS 1.2 and 1.3, full and resumed, with and
// without client certificates, a HelloRetryRequest).
func TestRealHandshakes(t *testing.T) {
	for _, sc := range scenarios(t) {
		t.Run(sc.name, func(t *testing.T) {
			s, c := sc.srv()
			in, out, st := tlswiretest.Handshake(t, s, c)
			if sc.twice {
				s, c = sc.srv()
				in, out, st = tlswiretest.Handshake(t, s, c)
				if !st.DidResume {
					t.Fatal("crypto/tls did not resume")
				}
			}
			srv := ParseServer(out)
			if !srv.OK || srv.Hello.Version != st.Version || srv.Hello.CipherSuite != st.CipherSuite {
				t.Fatalf("server: %+v; crypto/tls: version %#x cipher %#x", srv, st.Version, st.CipherSuite)
			}
			if srv.Resumed != tri(st.DidResume) {
				t.Errorf("resumed %v, crypto/tls %v", srv.Resumed, st.DidResume)
			}
			if srv.CertRequested != sc.certReq {
				t.Errorf("cert requested %v, want %v", srv.CertRequested, sc.certReq)
			}
			cli := ParseClient(in)
			if !cli.Hello {
				t.Fatalf("client: %+v", cli)
			}
			want := Unknown
			if st.Version == tls.VersionTLS12 {
				want = tri(len(st.PeerCertificates) > 0)
			}
			if got := ClientCert(srv, cli); got != want {
				t.Errorf("client cert %v, want %v (peer certs %d)", got, want, len(st.PeerCertificates))
			}
			// Every prefix: never a wrong answer, only less known.
			for n := 0; n <= len(out); n++ {
				p := ParseServer(out[:n])
				if p.OK && (p.Hello.Version != st.Version || p.Hello.CipherSuite != st.CipherSuite) {
					t.Fatalf("prefix %d: %+v", n, p)
				}
				if p.Resumed != Unknown && p.Resumed != srv.Resumed || p.CertRequested != Unknown && p.CertRequested != srv.CertRequested {
					t.Fatalf("prefix %d: %+v, whole %+v", n, p, srv)
				}
			}
			for n := 0; n <= len(in); n++ {
				if p := ParseClient(in[:n]); p.Cert != Unknown && p.Cert != cli.Cert {
					t.Fatalf("client prefix %d: %+v", n, p)
				}
			}
		})
	}
}

// FuzzParse: any bytes, no panic, and the facts stay self-consistent.
func FuzzParse(f *testing.F) {
	for _, sc := range scenarios(f) {
		s, c := sc.srv()
		in, out, _ := tlswiretest.Handshake(f, s, c)
		f.Add(in)
		f.Add(out)
	}
	f.Add([]byte{22, 3, 3, 0, 4, 2, 0, 0, 0})
	f.Add([]byte{22, 3, 3, 0xff, 0xff})
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		srv := ParseServer(b)
		if !srv.OK && (srv.Resumed != Unknown || srv.CertRequested != Unknown) {
			t.Fatalf("facts without a ServerHello: %+v", srv)
		}
		if len(srv.Hello.SessionID) > 32 {
			t.Fatalf("session id of %d bytes", len(srv.Hello.SessionID))
		}
		cli := ParseClient(b)
		if len(cli.SessionID) > 32 {
			t.Fatalf("client session id of %d bytes", len(cli.SessionID))
		}
		s := Split(b)
		if len(s.Messages) > maxMessages {
			t.Fatalf("%d messages", len(s.Messages))
		}
	})
}
