// Command server is the workload of tracerd's overhead benchmark: a
// plain net/http HTTP/1.1 keep-alive server answering every request
// with a small fixed body. It runs as its own process (GOMAXPROCS left
// at its default) so that the benchmark measures it, the load generator
// and tracerd as separate processes sharing the machine's cores.
//
// It listens on -addr (port 0 picks a free port) and prints
// "listening on HOST:PORT" on stdout once it accepts connections.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

var body = []byte("hello from the tracerd bench server\n")

func handler(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.Write(body)
}

// greeting is the small JSON answer of GET /json (the self-cost sweep:
// a service doing encoding/json, so that Go awareness has calls to time).
type greeting struct {
	Message string `json:"message"`
	Count   int    `json:"count"`
}

func jsonHandler(w http.ResponseWriter, r *http.Request) {
	b, _ := json.Marshal(greeting{Message: "hello from the tracerd bench server", Count: 42})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.Write(b)
}

// callURL, when set, is fetched by GET /call before it answers (the
// outbound arm: one downstream call per request, on pooled connections).
var (
	callURL    string
	callClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
)

func callHandler(w http.ResponseWriter, r *http.Request) {
	resp, err := callClient.Get(callURL)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	handler(w, r)
}

func route(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/json":
		jsonHandler(w, r)
	case r.URL.Path == "/call" && callURL != "":
		callHandler(w, r)
	default:
		handler(w, r)
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address (port 0: pick a free one)")
	flag.StringVar(&callURL, "call", "", "GET /call fetches this URL before answering")
	flag.Parse()

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("server: %v", err)
	}
	srv := &http.Server{
		Handler:     http.HandlerFunc(route),
		IdleTimeout: 2 * time.Minute,
		ErrorLog:    log.New(io.Discard, "", 0),
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	os.Stdout.Sync()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		log.Fatalf("server: %v", err)
	}
}
