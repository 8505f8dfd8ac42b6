// Package tlswiretest runs real crypto/tls handshakes and records the
// server side's bytes, for tests of TLS wire parsing.
package tlswiretest

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
	mu      sync.Mutex
	in, out bytes.Buffer
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

// Certificate is a self-signed ECDSA certificate for cn (server and
// client use).
func Certificate(t testing.TB, cn string) tls.Certificate {
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

// Handshake runs one real crypto/tls handshake over loopback and
// returns the server's view: the bytes it read and wrote, and what Go
// says was negotiated (the truth the parser is checked against).
func Handshake(t testing.TB, srv, cli *tls.Config) (in, out []byte, st tls.ConnectionState) {
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
