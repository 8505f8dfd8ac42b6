//go:build e2e

package tests

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tracerd/tracerd/internal/export"
)

// tlsTruth is one request as the test's HTTPS server saw it.
type tlsTruth struct {
	method, target string
	status         int
	peerPort       string // the client's port: its connection
}

// truthDelay: the truth server's time per request, which each call's
// wait phase must hold.
const truthDelay = 20 * time.Millisecond

// truthServer serves HTTPS (HTTP/1.1 only: no h2 by ALPN) on a free
// loopback port from this process (never traced) and records what it
// was asked: a target beginning /created is answered 201, /missing 404,
// others 200, each after truthDelay. A TLS 1.3 connection gets its
// session tickets after the handshake's flight (crypto/tls sends them
// then), which an OpenSSL client reads only with its first answer.
type truthServer struct {
	addr string
	port int
	mu   sync.Mutex
	seen []tlsTruth
}

func startTruthServer(t *testing.T, certPath, keyPath string) *truthServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &truthServer{addr: ln.Addr().String(), port: ln.Addr().(*net.TCPAddr).Port}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			status := http.StatusOK
			switch {
			case strings.HasPrefix(r.URL.Path, "/created"), strings.HasPrefix(r.URL.Path, "/v1/created"):
				status = http.StatusCreated
			case strings.HasPrefix(r.URL.Path, "/missing"), strings.HasPrefix(r.URL.Path, "/v1/missing"):
				status = http.StatusNotFound
			}
			time.Sleep(truthDelay)
			_, port, _ := net.SplitHostPort(r.RemoteAddr)
			s.mu.Lock()
			s.seen = append(s.seen, tlsTruth{r.Method, r.RequestURI, status, port})
			s.mu.Unlock()
			w.WriteHeader(status)
			_, _ = w.Write([]byte("answered over TLS\n"))
		}),
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	go func() {
		if err := srv.ServeTLS(ln, certPath, keyPath); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("TLS server: %v", err)
		}
	}()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

func (s *truthServer) truths() []tlsTruth {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.seen)
}

// gate is a plaintext server whose one request (/gate) is answered once
// open is closed: a client's first URL, holding it until tracerd runs.
func startGate(t *testing.T) (addr string, arrived <-chan struct{}, open chan<- struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	in, release := make(chan struct{}, 1), make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in <- struct{}{}
		<-release
		_, _ = w.Write([]byte("go\n"))
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String(), in, release
}

// callsTo are the client records of calls to port, by start.
func callsTo(recs []export.JSONRecord, port int) []export.JSONRecord {
	var out []export.JSONRecord
	suffix := ":" + strconv.Itoa(port)
	for _, r := range recs {
		if r.Direction == "client" && strings.HasSuffix(r.Conn.Peer, suffix) {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b export.JSONRecord) int { return int(a.StartUnixNano - b.StartUnixNano) })
	return out
}

// checkCalls: one call record per request the server saw, in order, on
// the connection the server saw it on, with its method, target and
// status; each connection's first call carries its handshake, and the
// TLS version version(i) gives (read from the handshake's bytes) with a
// cipher.
func checkCalls(t *testing.T, who string, calls []export.JSONRecord, truths []tlsTruth, version func(i int) string) {
	t.Helper()
	if len(calls) != len(truths) {
		for _, r := range calls {
			t.Logf("%s call: local %s index %d http %+v phases %v", who, r.Conn.Local, r.Conn.RequestIndex, r.HTTP, r.Phases)
		}
		t.Fatalf("%s: %d call records, the server saw %d requests %+v", who, len(calls), len(truths), truths)
	}
	seenConn := map[string]bool{}
	for i, r := range calls {
		w := truths[i]
		_, port, _ := net.SplitHostPort(r.Conn.Local)
		if port != w.peerPort {
			t.Errorf("%s call %d: from port %s, the server saw port %s", who, i, port, w.peerPort)
		}
		// As JSON lines show it: query values redacted (keys kept).
		target := export.ShownTarget(w.target, false)
		if r.HTTP == nil || r.HTTP.Method != w.method || r.HTTP.Target != target || r.HTTP.Status != w.status {
			t.Errorf("%s call %d: http %+v, want %s %s %d (from libssl's plaintext)", who, i, r.HTTP, w.method, target, w.status)
		} else {
			t.Logf("%s call %d (port %s, index %d): %s %s %d", who, i, port, r.Conn.RequestIndex, r.HTTP.Method, r.HTTP.Target, r.HTTP.Status)
		}
		// Not the session tickets read first (bpf/client.h).
		if wait := r.Phases["wait"]; wait < truthDelay.Nanoseconds() {
			t.Errorf("%s call %d: wait %s, the server took %s", who, i, time.Duration(wait), truthDelay)
		}
		_, hs := r.Phases["tls_handshake"]
		first := !seenConn[port]
		if first != hs {
			t.Errorf("%s call %d: tls_handshake %v, want it on a connection's first call only (first: %v)", who, i, hs, first)
		}
		if first && (r.TLS == nil || r.TLS.Version != version(i) || r.TLS.Cipher == "") {
			t.Errorf("%s call %d: tls %+v, want version %s and a cipher", who, i, r.TLS, version(i))
		} else if first {
			t.Logf("%s call %d: tls %s", who, i, fmtTLS(*r.TLS))
		}
		seenConn[port] = true
	}
}

// TestSSLClientHTTP: curl (Debian's, linked with OpenSSL's libssl3),
// selected by pid (a pure client: followed from its first connect),
// makes HTTPS calls — different methods, targets with queries, statuses
// 200/201/404, TLS 1.3 and 1.2 — to a local TLS server, over a
// kept-alive connection and over new ones; each call's record carries
// the method and target SSL_write was given and the status SSL_read
// returned, as the server saw them.
func TestSSLClientHTTP(t *testing.T) {
	needRoot(t)
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is not installed: run tests/tools/install-deps.sh test")
	}
	certPath, keyPath := writeSelfSigned(t, t.TempDir(), "server")
	srv := startTruthServer(t, certPath, keyPath)
	gateAddr, arrived, open := startGate(t)
	// Hosts a and b are the server under two names: two connections.
	common := []string{"-sk", "--http1.1", "-o", "/dev/null", "-w", "%{local_port} %{http_code}\\n",
		"--resolve", fmt.Sprintf("a.test:%d:127.0.0.1", srv.port), "--resolve", fmt.Sprintf("b.test:%d:127.0.0.1", srv.port)}
	type call struct {
		args []string
		url  string
	}
	a, b := fmt.Sprintf("https://a.test:%d", srv.port), fmt.Sprintf("https://b.test:%d", srv.port)
	calls := []call{
		{[]string{"-X", "POST", "-d", "name=x"}, a + "/created/items?x=1"},
		{nil, a + "/items/7?fields=a,b"},
		{[]string{"-X", "DELETE"}, a + "/missing/3?force=true"},
		{[]string{"--tls-max", "1.2"}, b + "/tls12?v=2"},
		{[]string{"--tls-max", "1.2", "-X", "PUT", "-d", "v=1"}, b + "/created/put"},
		{[]string{"--tls-max", "1.2", "-H", "Connection: close"}, b + "/close?then=new"},
		{[]string{"-I"}, b + "/head?after=close"},
		{nil, a + "/missing?last=1"},
	}
	args := append(slices.Clone(common), "http://"+gateAddr+"/gate")
	for _, c := range calls {
		args = append(append(append(append(args, "--next"), common...), c.args...), c.url)
	}
	curl := exec.Command("curl", args...)
	out := &syncBuffer{}
	curl.Stdout, curl.Stderr = out, out
	if err := curl.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- curl.Wait() }()
	t.Cleanup(func() { _ = curl.Process.Kill(); <-done })
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatalf("curl did not reach the gate: %s", out)
	}
	// Running when tracerd starts: its libssl is probed before tracing
	// is announced.
	tr := startTracer(t, "--pid", strconv.Itoa(curl.Process.Pid), "--log-level", "info")
	tr.waitLog(t, fmt.Sprintf("msg=\"libssl probes attached\" pid=%d", curl.Process.Pid), 1, 5*time.Second)
	close(open)
	select {
	case err := <-done:
		done <- err // for the cleanup
		if err != nil {
			t.Fatalf("curl: %v %s", err, out)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("curl did not finish: %s", out)
	}
	time.Sleep(time.Second) // past the idle timeout
	truths := srv.truths()
	if len(truths) != len(calls) {
		t.Fatalf("the server saw %d requests, want %d: %+v (curl: %s)", len(truths), len(calls), truths, out)
	}
	conns := map[string]bool{}
	for _, w := range truths {
		conns[w.peerPort] = true
	}
	if len(conns) != 3 {
		t.Errorf("curl used %d connections, want 3 (a kept alive; b closed by its server, then a new one): %+v", len(conns), truths)
	}
	checkCalls(t, "curl", callsTo(tr.Stop(t), srv.port), truths, func(i int) string {
		if len(calls[i].args) > 0 && calls[i].args[0] == "--tls-max" {
			return "1.2"
		}
		return "1.3"
	})
}

// TestSSLClientHTTPReverseProxy: Debian's nginx (libssl3) serves HTTPS
// and proxies each request over HTTPS (HTTP/1.1) to a local TLS server,
// rewriting the target (/api/ → /v1/) and turning the upstream's 404
// into 410; its upstream connections are kept alive for two requests
// each (then closed: the next call opens a new one). Each call record
// carries the method and target nginx gave SSL_write and the status
// SSL_read returned, as the upstream saw them, and a connection's first
// call its handshake. One nginx worker thread does both sides: its
// served records carry what its client asked and was answered — neither
// side takes the other's lines.
func TestSSLClientHTTPReverseProxy(t *testing.T) {
	needRoot(t)
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		t.Fatal("nginx is not installed: run tests/tools/install-deps.sh test")
	}
	dir := t.TempDir()
	_ = os.Chmod(filepath.Dir(dir), 0o755)
	_ = os.Chmod(dir, 0o755)
	cert, key := writeSelfSigned(t, dir, "server")
	up := startTruthServer(t, cert, key)
	port := freePort(t)
	runNginx(t, nginx, dir, port, fmt.Sprintf(`  upstream up {
    server 127.0.0.1:%d;
    keepalive 4;
    keepalive_requests 2;
  }
`, up.port), fmt.Sprintf(`    listen 127.0.0.1:%d ssl;
    ssl_certificate %s;
    ssl_certificate_key %s;
    ssl_protocols TLSv1.2 TLSv1.3;
    location /api/ {
      proxy_pass https://up/v1/;
      proxy_ssl_protocols TLSv1.2 TLSv1.3;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_ssl_session_reuse on;
      proxy_intercept_errors on;
      error_page 404 = @gone;
    }
    location @gone {
      return 410;
    }
`, port, cert, key))
	tr := startTracer(t, "--comm", "nginx", "--log-level", "info")
	tr.waitLog(t, "msg=\"libssl probes attached\"", 1, 5*time.Second)
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1, ForceAttemptHTTP2: false,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}}
	type sent struct {
		method, target string
		status         int
		local          string
	}
	var front []sent
	for _, s := range []struct{ method, target string }{
		{"GET", "/api/items?x=1"}, {"POST", "/api/created/a?b=2"}, {"GET", "/api/missing/z?q=3"},
		{"DELETE", "/api/created/d"}, {"PUT", "/api/items/9?v=4"}, {"HEAD", "/api/items?h=1"},
	} {
		var body io.Reader
		if s.method == "POST" || s.method == "PUT" {
			body = strings.NewReader("payload")
		}
		req, _ := http.NewRequest(s.method, fmt.Sprintf("https://127.0.0.1:%d%s", port, s.target), body)
		var local string
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) { local = info.Conn.LocalAddr().String() },
		}))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		front = append(front, sent{s.method, s.target, resp.StatusCode, local})
		time.Sleep(20 * time.Millisecond)
	}
	client.CloseIdleConnections()
	time.Sleep(time.Second) // past the idle timeout
	recs := tr.Stop(t)
	truths := up.truths()
	if len(truths) != len(front) {
		t.Fatalf("the upstream saw %d requests, want %d: %+v", len(truths), len(front), truths)
	}
	// Two requests a connection at most; nginx closes one whose error it
	// intercepted (the 404) at once.
	perConn := map[string]int{}
	for _, w := range truths {
		perConn[w.peerPort]++
	}
	if len(perConn) < 3 || !slices.Contains(slices.Collect(maps.Values(perConn)), 2) {
		t.Errorf("nginx's upstream connections: %v requests each, want new ones and kept-alive ones: %+v", perConn, truths)
	}
	checkCalls(t, "nginx", callsTo(recs, up.port), truths, func(int) string { return "1.3" })
	var served []export.JSONRecord
	for _, r := range recordsOn(recs, port) {
		if r.Direction != "server" {
			continue
		}
		if _, ok := r.Phases["app"]; ok || r.EndReason != "close" {
			served = append(served, r) // else the client's close_notify, read at the close
		}
	}
	slices.SortFunc(served, func(a, b export.JSONRecord) int { return int(a.StartUnixNano - b.StartUnixNano) })
	if len(served) != len(front) {
		for _, r := range served {
			t.Logf("served: %+v", r)
		}
		t.Fatalf("%d served records, want %d", len(served), len(front))
	}
	for i, r := range served {
		w := front[i]
		target := export.ShownTarget(w.target, false)
		if r.HTTP == nil || r.HTTP.Method != w.method || r.HTTP.Target != target || r.HTTP.Status != w.status || r.Conn.Peer != w.local {
			t.Errorf("served %d: http %+v from %s, want %s %s %d from %s", i, r.HTTP, r.Conn.Peer, w.method, target, w.status, w.local)
		} else {
			t.Logf("served %d: %s %s %d", i, r.HTTP.Method, r.HTTP.Target, r.HTTP.Status)
		}
	}
}
