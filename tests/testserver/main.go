// Command testserver is a minimal HTTP/1.1 keep-alive server for
// tracerd's end-to-end tests. It injects delays on purpose and prints,
// per request, the truth it measured itself as one JSON line on stdout.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Truth is what the server measured for one request.
type Truth struct {
	Conn           int    `json:"conn"`
	Index          int    `json:"index"`
	TID            int    `json:"tid"`
	AcceptUnixNano int64  `json:"accept_unix_nano,omitempty"`
	ReadUnixNano   int64  `json:"read_unix_nano"` // the request's first read returned
	WriteStartNano int64  `json:"write_start_unix_nano"`
	WriteEndNano   int64  `json:"write_end_unix_nano"` // the last write returned
	RunDelayNs     int64  `json:"run_delay_ns"`        // schedstat run_delay of this thread, read → write
	CPUNs          int64  `json:"cpu_ns"`              // thread CPU time spent on the work
	RetransAtRead  uint32 `json:"retrans_at_read"`     // TCP_INFO total_retrans when the request was read
	// -dial: the downstream connect's error, and whether it was
	// EADDRNOTAVAIL (503 answered then).
	DialError     string `json:"dial_error,omitempty"`
	EAddrNotAvail bool   `json:"eaddrnotavail,omitempty"`
	Call          *Call  `json:"call,omitempty"` // the downstream call made for the request (-call)
}

// Call is the client's own view of one downstream call (net/http's
// httptrace): wall-clock ns, 0 when the event did not happen.
type Call struct {
	StartUnixNano int64  `json:"start_unix_nano"`
	ConnectStart  int64  `json:"connect_start_unix_nano,omitempty"`
	ConnectDone   int64  `json:"connect_done_unix_nano,omitempty"`
	WroteRequest  int64  `json:"wrote_request_unix_nano"`
	FirstByte     int64  `json:"first_byte_unix_nano"`
	EndUnixNano   int64  `json:"end_unix_nano"` // the body read
	Reused        bool   `json:"reused"`
	Local         string `json:"local"` // the connection's local address
	Status        int    `json:"status"`
	Error         string `json:"error,omitempty"`
	HandlerTID    int    `json:"handler_tid"` // the thread that called (Go may write on another)
	Method        string `json:"method"`      // the call's method and target (path and query)
	Target        string `json:"target"`
	// https:// (-call-ca): the client's handshake (TLSHandshakeStart →
	// TLSHandshakeDone) and what it negotiated, on new connections.
	TLSStart   int64  `json:"tls_start_unix_nano,omitempty"`
	TLSDone    int64  `json:"tls_done_unix_nano,omitempty"`
	TLSVersion uint16 `json:"tls_version,omitempty"`
	TLSCipher  uint16 `json:"tls_cipher,omitempty"`
	TLSResumed bool   `json:"tls_resumed,omitempty"`
}

var (
	addr        = flag.String("addr", "127.0.0.1:0", "listen address")
	backlog     = flag.Int("backlog", 0, "listen backlog (0: kernel default)")
	acceptDelay = flag.Duration("accept-delay", 0, "sleep before each accept()")
	readDelay   = flag.Duration("read-delay", 0, "sleep before reading each request")
	work        = flag.Duration("work", 0, "CPU time to burn per request")
	lockThread  = flag.Bool("lock-thread", false, "serve each connection on one OS thread")
	chunks      = flag.Int("chunks", 1, "write the answer in this many write() calls")
	chunkGap    = flag.Duration("chunk-gap", 0, "sleep between chunks")
	noDelay     = flag.Bool("nodelay", true, "set TCP_NODELAY (false: Nagle on)")
	respSize    = flag.Int("resp-size", 2, "body bytes")
	sndbuf      = flag.Int("sndbuf", 0, "SO_SNDBUFFORCE bytes (0: kernel autotuning)")
	dialAddr    = flag.String("dial", "", "per request, connect to this address and close the connection first (it stays in TIME_WAIT here); 503 when the connect fails")
	bodyDelay   = flag.Duration("body-delay", 0, "sleep between a request's head and reading its body (Content-Length)")
	handleDelay = flag.Duration("handle-delay", 0, "sleep after reading each request, before answering")
	callURL     = flag.String("call", "", "GET this URL (net/http client) for each request before answering")
	callReuse   = flag.Bool("call-keepalive", true, "reuse the downstream connections (false: one per call)")
	callCA      = flag.String("call-ca", "", "PEM file: the CA (self-signed certificate) an https:// -call URL is verified with")
	callResume  = flag.Bool("call-tls-cache", false, "with -call-ca: a TLS client session cache (resumed handshakes)")
	callTLS12   = flag.Bool("call-tls12", false, "with -call-ca: TLS 1.2 at most")
	callRoute   = flag.Bool("call-route", false, "with -call: a request for /METHOD/rest calls METHOD -call's URL + /rest (POST and PUT with a small body)")
)

var out = struct {
	sync.Mutex
	enc *json.Encoder
}{enc: json.NewEncoder(os.Stdout)}

func emit(v any) {
	out.Lock()
	defer out.Unlock()
	_ = out.enc.Encode(v)
}

func main() {
	flag.Parse()
	ln, err := listen()
	if err != nil {
		fmt.Fprintln(os.Stderr, "testserver:", err)
		os.Exit(1)
	}
	emit(map[string]any{"listen": ln.Addr().String(), "pid": os.Getpid()})
	for n := 0; ; n++ {
		if *acceptDelay > 0 {
			time.Sleep(*acceptDelay)
		}
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "testserver: accept:", err)
			os.Exit(1)
		}
		go serve(c.(*net.TCPConn), n, time.Now().UnixNano())
	}
}

func listen() (net.Listener, error) {
	if *backlog == 0 {
		return net.Listen("tcp", *addr)
	}
	// net.Listen has no backlog option: build the socket by hand.
	ap, err := net.ResolveTCPAddr("tcp4", *addr)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	sa := &unix.SockaddrInet4{Port: ap.Port}
	copy(sa.Addr[:], ap.IP.To4())
	if err := unix.Bind(fd, sa); err != nil {
		return nil, err
	}
	if err := unix.Listen(fd, *backlog); err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "listener")
	defer f.Close()
	return net.FileListener(f)
}

func serve(c *net.TCPConn, n int, acceptNano int64) {
	defer c.Close()
	if *lockThread {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
	}
	_ = c.SetNoDelay(*noDelay)
	if *sndbuf > 0 {
		// FORCE: past net.core.wmem_max, so a big answer fits at once.
		if raw, err := c.SyscallConn(); err == nil {
			_ = raw.Control(func(fd uintptr) {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, *sndbuf)
			})
		}
	}
	r := bufio.NewReader(c)
	body := bytes.Repeat([]byte("x"), *respSize)
	for i := 0; ; i++ {
		if *readDelay > 0 {
			time.Sleep(*readDelay)
		}
		t := Truth{Conn: n, Index: i}
		if i == 0 {
			t.AcceptUnixNano = acceptNano
		}
		if _, err := r.Peek(1); err != nil {
			return
		}
		t.ReadUnixNano = time.Now().UnixNano()
		t.TID = unix.Gettid()
		t.RetransAtRead = totalRetrans(c)
		delay0 := runDelay()
		bodyLen, target, err := readHead(r)
		if err != nil {
			return
		}
		if bodyLen > 0 {
			time.Sleep(*bodyDelay)
			if _, err := r.Discard(bodyLen); err != nil {
				return
			}
		}
		if *callURL != "" {
			method, url := "GET", *callURL
			if *callRoute {
				m, rest, _ := strings.Cut(strings.TrimPrefix(target, "/"), "/")
				method, url = m, strings.TrimSuffix(*callURL, "/")+"/"+rest
			}
			t.Call = call(method, url)
		}
		if *handleDelay > 0 {
			time.Sleep(*handleDelay)
		}
		cpu0 := threadCPU()
		for *work > 0 && threadCPU()-cpu0 < work.Nanoseconds() {
		}
		t.CPUNs = threadCPU() - cpu0
		status := "200 OK"
		if *dialAddr != "" {
			if err := dialAndClose(*dialAddr); err != nil {
				t.DialError, t.EAddrNotAvail = err.Error(), errors.Is(err, unix.EADDRNOTAVAIL)
				status = "503 Service Unavailable"
			}
		}
		head := "HTTP/1.1 " + status + "\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
		resp := append([]byte(head), body...)
		t.RunDelayNs = runDelay() - delay0
		t.WriteStartNano = time.Now().UnixNano()
		if err := writeChunks(c, resp); err != nil {
			return
		}
		t.WriteEndNano = time.Now().UnixNano()
		emit(t)
	}
}

var callClient = sync.OnceValue(func() *http.Client {
	tr := &http.Transport{DisableKeepAlives: !*callReuse, MaxIdleConnsPerHost: 16}
	if *callCA != "" {
		pem, err := os.ReadFile(*callCA)
		if err != nil {
			fmt.Fprintln(os.Stderr, "testserver:", err)
			os.Exit(1)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			fmt.Fprintln(os.Stderr, "testserver: no certificate in", *callCA)
			os.Exit(1)
		}
		// A TLSClientConfig of its own: the transport speaks HTTP/1.1.
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
		if *callResume {
			tr.TLSClientConfig.ClientSessionCache = tls.NewLRUClientSessionCache(16)
		}
		if *callTLS12 {
			tr.TLSClientConfig.MaxVersion = tls.VersionTLS12
		}
	}
	return &http.Client{Transport: tr}
})

// call makes one downstream call and times it as the client sees it.
func call(method, url string) *Call {
	c := &Call{StartUnixNano: time.Now().UnixNano(), HandlerTID: unix.Gettid(), Method: method}
	now := func() int64 { return time.Now().UnixNano() }
	trace := &httptrace.ClientTrace{
		ConnectStart: func(string, string) { c.ConnectStart = now() },
		ConnectDone:  func(string, string, error) { c.ConnectDone = now() },
		GotConn: func(info httptrace.GotConnInfo) {
			c.Reused = info.Reused
			c.Local = info.Conn.LocalAddr().String()
		},
		WroteRequest:         func(httptrace.WroteRequestInfo) { c.WroteRequest = now() },
		GotFirstResponseByte: func() { c.FirstByte = now() },
		TLSHandshakeStart:    func() { c.TLSStart = now() },
		TLSHandshakeDone: func(cs tls.ConnectionState, err error) {
			c.TLSDone = now()
			if err == nil {
				c.TLSVersion, c.TLSCipher, c.TLSResumed = cs.Version, cs.CipherSuite, cs.DidResume
			}
		},
	}
	var body io.Reader
	if method == http.MethodPost || method == http.MethodPut {
		body = strings.NewReader("a small body")
	}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), method, url, body)
	if err != nil {
		c.Error = err.Error()
		return c
	}
	c.Target = req.URL.RequestURI()
	resp, err := callClient().Do(req)
	if err != nil {
		c.Error = err.Error()
		return c
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	c.Status = resp.StatusCode
	c.EndUnixNano = now()
	return c
}

// dialAndClose connects to addr (an IPv4 address:port) with one
// non-blocking connect() call — net.Dial would call connect() up to
// three times on EADDRNOTAVAIL (it retries a "spurious" one twice) —
// and closes at once: the client side closes first.
func dialAndClose(addr string) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Is4() {
		return fmt.Errorf("-dial %q: want an IPv4 address:port", addr)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	err = unix.Connect(fd, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()})
	if err == unix.EINPROGRESS {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		if _, err := unix.Poll(pfd, 5000); err != nil {
			return err
		}
		soErr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err != nil {
			return err
		}
		if soErr != 0 {
			return unix.Errno(soErr)
		}
		return nil
	}
	return err
}

// readHead consumes one request head (through the blank line) and
// returns its Content-Length (0 when none).
func readHead(r *bufio.Reader) (int, string, error) {
	n := 0
	target := ""
	for first := true; ; first = false {
		line, err := r.ReadString('\n')
		if err != nil {
			return 0, "", err
		}
		line = strings.TrimRight(line, "\r\n")
		if first {
			if f := strings.Fields(line); len(f) >= 2 {
				target = f[1]
			}
		}
		if line == "" {
			return n, target, nil
		}
		if v, ok := strings.CutPrefix(strings.ToLower(line), "content-length: "); ok {
			n, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
}

func writeChunks(c *net.TCPConn, b []byte) error {
	n := max(*chunks, 1)
	size := (len(b) + n - 1) / n
	for off := 0; off < len(b); off += size {
		if off > 0 && *chunkGap > 0 {
			time.Sleep(*chunkGap)
		}
		if _, err := c.Write(b[off:min(off+size, len(b))]); err != nil {
			return err
		}
	}
	return nil
}

func threadCPU() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	return ts.Nano()
}

// runDelay is this thread's cumulative run-queue wait (schedstat field 2).
func runDelay() int64 {
	b, err := os.ReadFile("/proc/thread-self/schedstat")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	v, _ := strconv.ParseInt(f[1], 10, 64)
	return v
}

func totalRetrans(c *net.TCPConn) uint32 {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	var info *unix.TCPInfo
	_ = raw.Control(func(fd uintptr) { info, _ = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) })
	if info == nil {
		return 0
	}
	return info.Total_retrans
}
