package tlswire

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"
)

// recorder keeps what the server's side of a connection read and wrote.
type recorder struct {
	net.Conn
	mu        sync.Mutex
	in, out   bytes.Buffer
	recording bool
}

func (r *recorder) Read(b []byte) (int, error) {
	n, err := r.Conn.Read(b)
	r.mu.Lock()
	r.in.Write(b[:n])
	r.mu.Unlock()
	return n, err
}

func (r *recorder) Write(b []byte) (int, error) {
	r.mu.Lock()
	r.out.Write(b)
	r.mu.Unlock()
	return r.Conn.Write(b)
}

func certificate(t testing.TB, cn string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, DNSNames: []string{cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// handshake runs one real crypto/tls handshake over loopback and
// returns the server's view: the bytes it read and wrote, and what Go
// says was negotiated (the truth the parser is checked against).
func handshake(t testing.TB, srv, cli *tls.Config) (in, out []byte, st tls.ConnectionState) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	b, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	a.SetDeadline(deadline)
	b.SetDeadline(deadline)
	rec := &recorder{Conn: a}
	server := tls.Server(rec, srv)
	client := tls.Client(b, cli)
	errc := make(chan error, 1)
	go func() {
		err := client.Handshake()
		if err == nil {
			// Read the server's session tickets (TLS 1.3: after the handshake).
			_, _ = client.Write([]byte("x"))
			one := make([]byte, 1)
			_, err = io.ReadFull(client, one)
		}
		errc <- err
	}()
	if err := server.Handshake(); err != nil {
		b.Close()
		t.Fatal(err)
	}
	one := make([]byte, 1)
	if _, err := io.ReadFull(server, one); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Write(one); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	st = server.ConnectionState()
	server.Close()
	client.Close()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return bytes.Clone(rec.in.Bytes()), bytes.Clone(rec.out.Bytes()), st
}

type scenario struct {
	name     string
	srv, cli func() (*tls.Config, *tls.Config)
	twice    bool // the second handshake (resumption) is the one checked
	certReq  Tri  // TLS 1.2: the server's CertificateRequest
	retry    bool
}

func scenarios(t testing.TB) []scenario {
	srvCert, cliCert := certificate(t, "server.test"), certificate(t, "client")
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
			in, out, st := handshake(t, s, c)
			if sc.twice {
				s, c = sc.srv()
				in, out, st = handshake(t, s, c)
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
		in, out, _ := handshake(f, s, c)
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
