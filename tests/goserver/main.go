// Command goserver is the Go-awareness test server: handlers that
// serialize large bodies (encoding/json, protobuf) and trigger GC on a
// big pointer-rich heap, each reporting its own timing (the truth) in a
// response header; and a gRPC service (grpc.go). It is a module of its
// own (go 1.22, grpc-go v1.70) so that older toolchains build it too;
// go.grpclatest.mod builds it with the newest grpc-go (another layout of
// grpc-go's stream).
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

type item struct {
	ID    int               `json:"id"`
	Name  string            `json:"name"`
	Tags  []string          `json:"tags"`
	Attrs map[string]string `json:"attrs"`
}

// heap keeps a big pointer-rich heap alive so GC has work to do.
var heap []*node

type node struct {
	next  *node
	value [4]*int
}

func grow(n int) {
	for i := 0; i < n; i++ {
		v := i
		heap = append(heap, &node{value: [4]*int{&v, &v, &v, &v}})
		if len(heap) > 1 {
			heap[len(heap)-1].next = heap[len(heap)-2]
		}
	}
}

func items(n int) []item {
	out := make([]item, n)
	for i := range out {
		out[i] = item{ID: i, Name: fmt.Sprintf("item-%d", i), Tags: []string{"a", "b", "c"},
			Attrs: map[string]string{"color": "blue", "size": strconv.Itoa(i)}}
	}
	return out
}

func size(r *http.Request, def int) int {
	if n, err := strconv.Atoi(r.URL.Query().Get("n")); err == nil && n > 0 {
		return n
	}
	return def
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	useTLS := flag.Bool("tls", false, "serve HTTPS (HTTP/2 by ALPN) with a self-signed certificate")
	askCert := flag.Bool("tls-client-cert", false, "with -tls: ask clients for a certificate (optional, not verified)")
	heapNodes := flag.Int("heap", 500_000, "pointer-rich heap nodes kept alive")
	grpcAddr := flag.String("grpc", "", "also serve the gRPC service tracerd.test.Lab on this address")
	flag.Parse()
	grow(*heapNodes)

	mux := http.NewServeMux()
	mux.HandleFunc("/json", func(w http.ResponseWriter, r *http.Request) {
		data := items(size(r, 20000))
		start := time.Now()
		body, err := json.Marshal(data)
		took := time.Since(start)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("X-Serialize-Ns", strconv.FormatInt(took.Nanoseconds(), 10))
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})
	mux.HandleFunc("/proto", func(w http.ResponseWriter, r *http.Request) {
		list := make([]any, size(r, 20000))
		for i := range list {
			list[i] = map[string]any{"id": float64(i), "name": fmt.Sprintf("item-%d", i), "ok": true}
		}
		msg, err := structpb.NewList(list)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		start := time.Now()
		body, err := proto.Marshal(msg)
		took := time.Since(start)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("X-Serialize-Ns", strconv.FormatInt(took.Nanoseconds(), 10))
		w.Write(body)
	})
	mux.HandleFunc("/gc", func(w http.ResponseWriter, r *http.Request) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		t0 := time.Now()
		for i := 0; i < size(r, 2); i++ {
			runtime.GC()
		}
		t1 := time.Now()
		runtime.ReadMemStats(&after)
		w.Header().Set("X-GC-Window", fmt.Sprintf("%d-%d", t0.UnixNano(), t1.UnixNano()))
		w.Header().Set("X-GC-Pause-Ns", strconv.FormatUint(after.PauseTotalNs-before.PauseTotalNs, 10))
		w.Header().Set("X-GC-Cycles", strconv.FormatUint(uint64(after.NumGC-before.NumGC), 10))
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintln(w, "collected")
	})
	// The whole answer goes out before the handler returns; the client's
	// next request then arrives while net/http's background read (which
	// watches for the client going away) is pending, and that goroutine,
	// not the one serving the connection, reads its first byte.
	mux.HandleFunc("/flushsleep", func(w http.ResponseWriter, r *http.Request) {
		body := []byte("flushed\n")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
		w.(http.Flusher).Flush()
		time.Sleep(time.Duration(size(r, 20)) * time.Millisecond)
	})
	mux.HandleFunc("/sleep", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Duration(size(r, 100)) * time.Millisecond)
		fmt.Fprintln(w, "slept")
	})
	// Answers, then replaces the process with the binary at ?to= (same
	// arguments): a traced process that execs into another name.
	mux.HandleFunc("/exec", func(w http.ResponseWriter, r *http.Request) {
		to := r.URL.Query().Get("to")
		fmt.Fprintln(w, "exec", to)
		w.(http.Flusher).Flush()
		go func() {
			time.Sleep(100 * time.Millisecond)
			log.Fatal(syscall.Exec(to, append([]string{to}, os.Args[1:]...), os.Environ()))
		}()
	})
	// A route with a wildcard (Go 1.22+ ServeMux patterns).
	mux.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "item", r.PathValue("id"))
	})
	mux.HandleFunc("/teapot", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
	})
	// /status/N: WriteHeader(N), then a body.
	mux.HandleFunc("/status/", func(w http.ResponseWriter, r *http.Request) {
		code, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/status/"))
		if err != nil || code < 200 || code > 999 {
			code = http.StatusBadRequest
		}
		w.WriteHeader(code)
		fmt.Fprintln(w, "status", code)
	})
	// Writes nothing: net/http answers 200 with an empty body.
	mux.HandleFunc("/empty", func(w http.ResponseWriter, r *http.Request) {})
	// Takes the HTTP/1 connection over and writes its own answer, 202
	// (no WriteHeader): what a WebSocket upgrade does.
	mux.HandleFunc("/hijack", func(w http.ResponseWriter, r *http.Request) {
		hj, ok := w.(http.Hijacker)
		if !ok {
			http.Error(w, "not HTTP/1", http.StatusHTTPVersionNotSupported)
			return
		}
		c, buf, err := hj.Hijack()
		if err != nil {
			return
		}
		buf.WriteString("HTTP/1.1 202 Accepted\r\nContent-Length: 9\r\nConnection: close\r\n\r\nhijacked\n")
		buf.Flush()
		// Closed once ServeHTTP has returned (over TLS the record, ended
		// by the close, is joined with a ServeHTTP that came before it).
		time.AfterFunc(50*time.Millisecond, func() { c.Close() })
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "hello", r.URL.Path)
	})

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	grpcListen := ""
	if *grpcAddr != "" {
		grpcListen = serveGRPC(*grpcAddr)
	}
	fmt.Printf("{\"listen\":%q,\"grpc\":%q,\"pid\":%d,\"go\":%q}\n", ln.Addr().String(), grpcListen, os.Getpid(), runtime.Version())
	if *useTLS {
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{selfSigned()}, NextProtos: []string{"h2", "http/1.1"}}
		if *askCert {
			srv.TLSConfig.ClientAuth = tls.RequestClientCert
		}
		log.Fatal(srv.ServeTLS(ln, "", ""))
	}
	log.Fatal(srv.Serve(ln))
}

func selfSigned() tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "goserver"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		log.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
