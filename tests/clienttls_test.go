//go:build e2e

package tests

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tracerd/tracerd/internal/export"
)

// startTLSDownstream serves HTTPS (HTTP/1.1) on a free loopback port
// from this process (not traced: the tracer follows the front's pid),
// with the certificate given; each request is answered after
// downstreamDelay (its body read first): 201 to a POST, 404 to
// /missing, else 200.
func startTLSDownstream(t *testing.T, certPath, keyPath string) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			time.Sleep(downstreamDelay)
			switch {
			case r.Method == http.MethodPost:
				w.WriteHeader(http.StatusCreated)
			case r.URL.Path == "/missing":
				w.WriteHeader(http.StatusNotFound)
			}
			_, _ = w.Write([]byte("ok"))
		}),
		// HTTP/1.1 only (no h2 by ALPN).
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	go func() {
		if err := srv.ServeTLS(ln, certPath, keyPath); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("downstream: %v", err)
		}
	}()
	t.Cleanup(func() { _ = srv.Close() })
	return &Server{Addr: ln.Addr().String(), Port: ln.Addr().(*net.TCPAddr).Port}
}

// TestOutboundTLS: a traced Go service (testserver) calls a local Go
// HTTPS downstream (its self-signed certificate made here) for each
// request, with keep-alive, with a new connection per call, and with a
// TLS session cache (new connections, resumed handshakes; TLS 1.3 and
// 1.2). Each call on
// a new connection shows connect and tls_handshake within ±5 % / ±1 ms
// of the client's own httptrace (ConnectStart → ConnectDone,
// TLSHandshakeStart → TLSHandshakeDone), and the version, cipher and
// resumption the client negotiated; pooled calls show neither; the
// handshake's flights are no calls of their own (one call record per
// call).
func TestOutboundTLS(t *testing.T) {
	needRoot(t)
	for _, c := range []struct {
		name                    string
		keepAlive, cache, tls12 bool
	}{
		{"keepalive", true, false, false},
		{"new_connections", false, false, false},
		{"session_cache", false, true, false},
		// Two client flights, the second (key exchange) a handshake
		// record too; resumed: the abbreviated handshake.
		{"tls1.2_session_cache", false, true, true},
	} {
		t.Run(c.name, func(t *testing.T) { outboundTLS(t, c.keepAlive, c.cache, c.tls12) })
	}
}

func outboundTLS(t *testing.T, keepAlive, cache, tls12 bool) {
	certPath, keyPath := writeSelfSigned(t, t.TempDir(), "downstream")
	down := startTLSDownstream(t, certPath, keyPath)
	args := []string{"--call", "https://" + down.Addr + "/down", "--call-keepalive=" + strconv.FormatBool(keepAlive),
		"--call-ca", certPath}
	if cache {
		args = append(args, "--call-tls-cache")
	}
	if tls12 {
		args = append(args, "--call-tls12")
	}
	front := startServer(t, nil, args...)
	tr := startTracer(t, "--pid", strconv.Itoa(front.PID), "--log-level", "info")
	tr.waitLog(t, fmt.Sprintf("msg=\"Go probes attached\" pid=%d", front.PID), 1, 5*time.Second)
	if !strings.Contains(tr.stderr.String(), "tls=true") {
		t.Fatalf("the front's crypto/tls handshakes are not probed:\n%s", tr.stderr)
	}
	const n = 5
	c := dial(t, front.Addr)
	for i := range n {
		if _, err := request(c, fmt.Sprintf("/front/%d", i), 0); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.Close()
	truths := front.Truths(t, n)
	time.Sleep(time.Second) // the last pooled call ends at the idle sweep
	served, calls := splitDirections(t, tr.Stop(t), front, down)
	if len(served) != n || len(calls) != n {
		for _, r := range calls {
			t.Logf("call: index %d phases %v tls %+v", r.Conn.RequestIndex, r.Phases, r.TLS)
		}
		t.Fatalf("%d served and %d calls recorded, want %d of each (the handshakes' flights are no calls)",
			len(served), len(calls), n)
	}
	resumed := 0
	for i, call := range calls {
		truth := truths[i].Call
		if truth == nil || truth.Error != "" || truth.Status != 200 {
			t.Fatalf("call %d failed: %+v", i, truth)
		}
		if call.Conn.Local != truth.Local {
			t.Errorf("call %d: conn.local %s, the client's socket is %s", i, call.Conn.Local, truth.Local)
		}
		if srv := served[i]; call.TraceID != srv.TraceID || call.ParentSpanID != srv.SpanID {
			t.Errorf("call %d: trace %s parent %s; the request that made it is trace %s span %s",
				i, call.TraceID, call.ParentSpanID, srv.TraceID, srv.SpanID)
		}
		_, hasConnect := call.Phases["connect"]
		_, hasTLS := call.Phases["tls_handshake"]
		if truth.Reused {
			if hasConnect || hasTLS || call.TLS != nil || call.Conn.RequestIndex == 0 {
				t.Errorf("call %d on a pooled connection: phases %v tls %+v request_index %d, want neither connect nor tls_handshake",
					i, call.Phases, call.TLS, call.Conn.RequestIndex)
			}
		} else {
			if truth.TLSStart == 0 || truth.TLSDone == 0 {
				t.Fatalf("call %d: a new connection without the client's handshake timing: %+v", i, truth)
			}
			if call.Conn.RequestIndex != 0 {
				t.Errorf("call %d on a new connection: request_index %d", i, call.Conn.RequestIndex)
			}
			// ±5 % / ±1 ms (slack(): 12 ms under emulation, where the
			// client's own share — goroutine switches, socket() — grows
			// with the CPU's slowness).
			withinPct(t, fmt.Sprintf("call %d connect", i), phase(t, call, "connect"),
				truth.ConnectDone-truth.ConnectStart, 5, time.Duration(slack()))
			withinPct(t, fmt.Sprintf("call %d tls_handshake", i), phase(t, call, "tls_handshake"),
				truth.TLSDone-truth.TLSStart, 5, time.Duration(slack()))
			checkOutboundTLS(t, i, call, truth)
			if truth.TLSResumed {
				resumed++
			}
		}
		for _, p := range []string{"send", "wait", "receive"} {
			if _, ok := call.Phases[p]; !ok {
				t.Errorf("call %d: no %s phase (%v)", i, p, call.Phases)
			}
		}
		if wait := call.Phases["wait"]; wait < downstreamDelay.Nanoseconds() {
			t.Errorf("call %d: wait %s; the downstream slept %s", i, time.Duration(wait), downstreamDelay)
		}
		if call.DurationNs > truth.EndUnixNano-truth.StartUnixNano+slack() {
			t.Errorf("call %d: %s long, the client's call took %s", i, time.Duration(call.DurationNs),
				time.Duration(truth.EndUnixNano-truth.StartUnixNano))
		}
	}
	if tls12 && truths[0].Call.TLSVersion != tls.VersionTLS12 {
		t.Errorf("the client negotiated %x, want TLS 1.2", truths[0].Call.TLSVersion)
	}
	if cache && resumed == 0 {
		t.Error("the client resumed no session with a session cache")
	}
	if keepAlive && !truths[n-1].Call.Reused {
		t.Error("the client reused no connection with keep-alive")
	}
}

// checkOutboundTLS: the call's tls object says what the client negotiated.
func checkOutboundTLS(t *testing.T, i int, call export.JSONRecord, truth *Call) {
	t.Helper()
	if call.TLS == nil {
		t.Errorf("call %d on a new connection: no tls object", i)
		return
	}
	j := *call.TLS
	want := map[uint16]string{tls.VersionTLS12: "1.2", tls.VersionTLS13: "1.3"}[truth.TLSVersion]
	switch {
	case j.Version != want || j.Cipher != tls.CipherSuiteName(truth.TLSCipher):
		t.Errorf("call %d: tls %s; the client negotiated %s %s", i, fmtTLS(j), want, tls.CipherSuiteName(truth.TLSCipher))
	case j.Resumed == nil || *j.Resumed != truth.TLSResumed:
		t.Errorf("call %d: tls %s; the client's resumed: %v", i, fmtTLS(j), truth.TLSResumed)
	case j.ClientCert != nil || j.Failed:
		t.Errorf("call %d: tls %s: no client_cert on a call, not failed", i, fmtTLS(j))
	default:
		t.Logf("call %d: tls %s", i, fmtTLS(j))
	}
}

// TestOutboundTLSHTTP: the traced Go service's calls over TLS (HTTP/1.1)
// carry the method, target (query included) and status the client used
// and got, read by the Go client's probes (the bytes are encrypted):
// a mix of GET /a?x=1 → 200, POST /b → 201, GET /missing → 404 and PUT
// /c?y=2&z=3 → 200, on pooled connections and on new ones, and made from
// several inbound connections at once (the transport then keeps several
// connections to the downstream in use: each call keeps its own).
func TestOutboundTLSHTTP(t *testing.T) {
	needRoot(t)
	for _, c := range []struct {
		name        string
		keepAlive   bool
		parallel, n int
	}{
		{"keepalive", true, 1, 8},
		{"new_connections", false, 1, 8},
		{"concurrent", true, 4, 8},
	} {
		t.Run(c.name, func(t *testing.T) { outboundTLSHTTP(t, c.keepAlive, c.parallel, c.n) })
	}
}

func outboundTLSHTTP(t *testing.T, keepAlive bool, parallel, n int) {
	certPath, keyPath := writeSelfSigned(t, t.TempDir(), "downstream")
	down := startTLSDownstream(t, certPath, keyPath)
	front := startServer(t, nil, "--call", "https://"+down.Addr, "--call-route",
		"--call-keepalive="+strconv.FormatBool(keepAlive), "--call-ca", certPath)
	tr := startTracer(t, "--pid", strconv.Itoa(front.PID), "--log-level", "info")
	tr.waitLog(t, fmt.Sprintf("msg=\"Go probes attached\" pid=%d", front.PID), 1, 5*time.Second)
	if !strings.Contains(tr.stderr.String(), "http_client=true http_client_status=true") {
		t.Fatalf("the front's net/http client is not probed:\n%s", tr.stderr)
	}
	plan := []string{"/GET/a?x=1", "/POST/b", "/GET/missing", "/PUT/c?y=2&z=3"}
	errs := make(chan error, parallel)
	for p := range parallel {
		c := dial(t, front.Addr)
		go func() {
			for i := range n {
				if _, err := request(c, plan[(i+p)%len(plan)], 0); err != nil {
					errs <- err
					return
				}
				if parallel == 1 {
					time.Sleep(20 * time.Millisecond)
				}
			}
			errs <- nil
		}()
	}
	for range parallel {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	truths := front.Truths(t, parallel*n)
	time.Sleep(time.Second) // the last pooled calls end at the idle sweep
	_, recs := splitDirections(t, tr.Stop(t), front, down)
	// A connection the transport dialed for a call that then got
	// another one (freed first) idles in the pool unused: its handshake
	// is a record of its own, with no request (docs/records.md).
	var calls []export.JSONRecord
	for _, r := range recs {
		if _, sent := r.Phases["send"]; !sent && r.TLS != nil && r.HTTP == nil {
			t.Logf("a connection's handshake without a call: %s, phases %v", r.Conn.Local, r.Phases)
			continue
		}
		calls = append(calls, r)
	}
	if len(calls) != len(truths) {
		for _, r := range calls {
			t.Logf("call record: %s #%d start %d end %d http %+v tls %v phases %v", r.Conn.Local, r.Conn.RequestIndex,
				r.StartUnixNano, r.EndUnixNano, r.HTTP, r.TLS != nil, r.Phases)
		}
		for _, tr := range truths {
			if c := tr.Call; c != nil {
				t.Logf("client call: %s %s %s → %d wrote %d end %d", c.Local, c.Method, c.Target, c.Status, c.WroteRequest, c.EndUnixNano)
			}
		}
		t.Fatalf("%d calls recorded, the front made %d", len(calls), len(truths))
	}
	locals := map[string]bool{}
	for _, call := range calls {
		// The client's own call on that connection whose answer the
		// record read: its end between the call's request written and
		// its body read (a call's start is no key: one that waited for
		// a connection may get one dialed before it began, or after
		// another call dialed it).
		var truth *Call
		for _, tr := range truths {
			c := tr.Call
			if c != nil && c.Local == call.Conn.Local && call.EndUnixNano >= c.WroteRequest &&
				call.EndUnixNano <= c.EndUnixNano+slack() {
				truth = c
				break
			}
		}
		if truth == nil {
			t.Errorf("call on %s ending at %d: no call of the client's matches", call.Conn.Local, call.EndUnixNano)
			continue
		}
		locals[truth.Local] = true
		if truth.Error != "" {
			t.Fatalf("the client's call failed: %+v", truth)
		}
		// The query's values are REDACTED in the outputs (keys kept).
		want := export.JSONHTTP{Method: truth.Method, Target: export.ShownTarget(truth.Target, false), Status: truth.Status}
		if call.HTTP == nil || *call.HTTP != want {
			t.Errorf("call on %s (request_index %d): http %+v, the client called %+v", call.Conn.Local,
				call.Conn.RequestIndex, call.HTTP, want)
		}
	}
	t.Logf("%d calls on %d connections; the first: %+v", len(calls), len(locals), calls[0].HTTP)
	if parallel > 1 && len(locals) < 2 {
		t.Errorf("the concurrent calls used %d connection(s): not a test of several", len(locals))
	}
}
